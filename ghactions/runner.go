package ghactions

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
)

// Environment variables the runner sets for every step.
const (
	EnvActions = "GITHUB_ACTIONS"
	EnvSummary = "GITHUB_STEP_SUMMARY"
	EnvOutput  = "GITHUB_OUTPUT"
)

var (
	// ErrNotSet: the runner file's variable is unset, as off a runner or
	// inside a container; callers that may run there skip the write.
	ErrNotSet = errors.New("not set: not on a github actions runner")
	// ErrOutputName: a step output name GitHub would not accept.
	ErrOutputName = errors.New("invalid output name")
	// ErrDelimiter: no heredoc delimiter absent from the value was found.
	ErrDelimiter = errors.New("no usable heredoc delimiter")
)

// Enabled reports whether the process runs as a GitHub Actions step.
func Enabled() bool { return os.Getenv(EnvActions) == "true" }

// WriteSummary appends markdown to the job summary, ending it with a blank
// line so that the next section starts a new block.
func WriteSummary(markdown string) error {
	if !strings.HasSuffix(markdown, "\n") {
		markdown += "\n"
	}
	return appendTo(EnvSummary, []byte(markdown+"\n"))
}

// SetOutputs appends outputs to the step's outputs, sorted by name.
// Multi-line values use the heredoc form with a random delimiter, so a
// value cannot end its own entry and set another output.
func SetOutputs(outputs map[string]string) error {
	b, err := FormatOutputs(outputs)
	if err != nil {
		return err
	}
	return appendTo(EnvOutput, b)
}

// outputName is what the runner accepts as an output name.
var outputName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// newDelimiter is swapped by tests to force collisions.
var newDelimiter = func() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return "ghadelimiter_" + hex.EncodeToString(b[:])
}

// FormatOutputs is the $GITHUB_OUTPUT text for outputs: `name=value` for
// a single-line value, the heredoc form otherwise.
func FormatOutputs(outputs map[string]string) ([]byte, error) {
	names := make([]string, 0, len(outputs))
	for n := range outputs {
		if !outputName.MatchString(n) {
			return nil, fmt.Errorf("output %q: %w", n, ErrOutputName)
		}
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		v := outputs[n]
		if !strings.ContainsAny(v, "\r\n") {
			fmt.Fprintf(&b, "%s=%s\n", n, v)
			continue
		}
		d, err := delimiterFor(v)
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", n, err)
		}
		fmt.Fprintf(&b, "%s<<%s\n%s\n%s\n", n, d, v, d)
	}
	return []byte(b.String()), nil
}

// delimiterFor returns a random delimiter that v does not contain.
func delimiterFor(v string) (string, error) {
	for range 3 {
		d := newDelimiter()
		if !strings.Contains(v, d) {
			return d, nil
		}
	}
	return "", ErrDelimiter
}

func appendTo(env string, b []byte) error {
	path := os.Getenv(env)
	if path == "" {
		return fmt.Errorf("%s %w", env, ErrNotSet)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open %s %s: %w", env, path, err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s %s: %w", env, path, err)
	}
	return nil
}

// Level is an annotation's level.
type Level string

// The annotation levels.
const (
	Error   Level = "error"
	Warning Level = "warning"
	Notice  Level = "notice"
)

// ErrLevel: an annotation level GitHub does not know.
var ErrLevel = errors.New("invalid annotation level")

// Annotation is a message GitHub shows on the run and, with a file in the
// repository, on that file's line in the pull request.
type Annotation struct {
	Level   Level
	Title   string
	File    string
	Line    int // 0: none
	Message string
}

// String is the workflow command, escaped per GitHub's rules: a message
// cannot start a second command on a new line, a property cannot end the
// property list.
func (a Annotation) String() string {
	var props []string
	if a.File != "" {
		props = append(props, "file="+escapeProperty(a.File))
	}
	if a.Line > 0 {
		props = append(props, fmt.Sprintf("line=%d", a.Line))
	}
	if a.Title != "" {
		props = append(props, "title="+escapeProperty(a.Title))
	}
	cmd := "::" + string(a.Level)
	if len(props) > 0 {
		cmd += " " + strings.Join(props, ",")
	}
	return cmd + "::" + escapeData(a.Message)
}

var (
	dataEscaper     = strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A")
	propertyEscaper = strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C")
)

func escapeData(s string) string     { return dataEscaper.Replace(s) }
func escapeProperty(s string) string { return propertyEscaper.Replace(s) }

// commands is where workflow commands go. The runner reads them from
// stderr as from stdout, and modelci's stdout carries only results.
var commands io.Writer = os.Stderr

// Annotate raises an annotation (file and line are optional: "" and 0).
func Annotate(level Level, msg, file string, line int) error {
	return WriteAnnotations(commands, Annotation{Level: level, Message: msg, File: file, Line: line})
}

// WriteAnnotations writes each annotation's workflow command to w, one a line.
func WriteAnnotations(w io.Writer, as ...Annotation) error {
	var b strings.Builder
	for _, a := range as {
		switch a.Level {
		case Error, Warning, Notice:
		default:
			return fmt.Errorf("annotation %q: level %q: %w", a.Message, a.Level, ErrLevel)
		}
		b.WriteString(a.String())
		b.WriteByte('\n')
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write annotations: %w", err)
	}
	return nil
}
