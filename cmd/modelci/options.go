package main

// The option groups several commands share, cosign-style: each owns its
// flags (AddFlags), their checks and what they turn into.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/oci"
	"github.com/modelci/modelci/stages/sign"
)

// registryOptions are the flags of every command that reads or writes a
// registry: credentials (default: MODELCI_REGISTRY_USERNAME/PASSWORD, then
// the Docker config), plain HTTP, the request timeout and the upload chunk
// size.
type registryOptions struct {
	username      string
	passwordStdin bool
	insecure      bool
	timeout       time.Duration
	chunkSize     string
}

// AddFlags registers the flags on cmd.
func (o *registryOptions) AddFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.username, "registry-username", "", "registry user name, with --registry-password-stdin (default: $"+oci.EnvUsername+" and $"+oci.EnvPassword+", else the Docker config)")
	f.BoolVar(&o.passwordStdin, "registry-password-stdin", false, "read the registry password from stdin")
	f.BoolVar(&o.insecure, "insecure-registry", false, "reach the registry over plain HTTP (loopback registries always are)")
	f.DurationVar(&o.timeout, "registry-timeout", oci.DefaultFirstByteTimeout, "how long a registry request may wait for an answer, or go without a byte of its body moving, per attempt (connecting: at most "+oci.DefaultConnectTimeout.String()+")")
	f.StringVar(&o.chunkSize, "registry-chunk-size", formatSize(oci.DefaultChunkSize), "the most bytes one request of a blob upload carries (e.g. 5MiB, 100MB); 0: one request per blob")
}

// Access is how the registry is reached, the password read from stdin
// when asked; a half-given credential, a timeout that is not positive and
// a chunk size that does not parse are usage errors.
func (o *registryOptions) Access(cmd *cobra.Command) (oci.Access, error) {
	a := oci.Access{Insecure: o.insecure}
	if o.timeout <= 0 {
		return a, usageError(fmt.Errorf("--registry-timeout %s: want a positive duration", o.timeout))
	}
	a = a.WithTimeout(o.timeout)
	chunk, err := parseSize(o.chunkSize)
	if err != nil {
		return a, usageError(fmt.Errorf("--registry-chunk-size: %w", err))
	}
	a.ChunkSize = chunk
	if chunk == 0 {
		a.ChunkSize = -1 // one request per blob
	}
	user, pass, err := o.credentials(cmd.InOrStdin())
	if err != nil || user == "" {
		return a, err
	}
	return a.WithCredentials(user, pass), nil
}

// sizeUnits are the suffixes parseSize reads, longest first.
var sizeUnits = []struct {
	suffix string
	n      int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
	{"kb", 1000}, {"mb", 1000 * 1000}, {"gb", 1000 * 1000 * 1000},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30},
	{"b", 1},
}

// parseSize reads a byte count: a whole number with an optional unit (B,
// KB, MB, GB in powers of 1000; KiB, MiB, GiB, or K, M, G, in powers of
// 1024), in any case.
func parseSize(s string) (int64, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	unit := int64(1)
	for _, u := range sizeUnits {
		if num, ok := strings.CutSuffix(v, u.suffix); ok {
			v, unit = strings.TrimSpace(num), u.n
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/unit {
		return 0, fmt.Errorf("%q is not a size (want e.g. 16MiB, 5MB, 1048576, or 0)", s)
	}
	return n * unit, nil
}

// formatSize writes n in the largest binary unit that divides it.
func formatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.n && n%u.n == 0 {
			return strconv.FormatInt(n/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// signOptions are stages/sign's options for the access, with warnings to
// stderr.
func (o *registryOptions) signOptions(cmd *cobra.Command) ([]sign.Option, error) {
	a, err := o.Access(cmd)
	if err != nil {
		return nil, err
	}
	return []sign.Option{sign.WithAccess(a), sign.WithLog(cmd.ErrOrStderr())}, nil
}

// credentials returns the user name and password the flags give (empty
// when none: the environment or the keychain then decide).
func (o *registryOptions) credentials(stdin io.Reader) (user, pass string, err error) {
	switch {
	case o.username == "" && !o.passwordStdin:
		return "", "", nil
	case o.username == "":
		return "", "", usageError(errors.New("--registry-password-stdin needs --registry-username"))
	case !o.passwordStdin:
		return "", "", usageError(errors.New("--registry-username needs --registry-password-stdin"))
	}
	b, err := io.ReadAll(io.LimitReader(stdin, 64<<10))
	if err != nil {
		return "", "", fmt.Errorf("read registry password from stdin: %w", err)
	}
	pass = strings.TrimRight(string(b), "\r\n")
	if pass == "" {
		return "", "", usageError(errors.New("--registry-password-stdin: stdin is empty"))
	}
	return o.username, pass, nil
}

// verifyOptions name the signer an image must be signed by: a public key,
// or a keyless identity and its OIDC issuer.
type verifyOptions struct {
	key, identity, issuer string
	allowInconclusive     bool
	// gatePolicy is the digest of the gate policy the gate attestation
	// must have been made under (a spec's gate: block); empty: any.
	gatePolicy string
}

// AddFlags registers the flags on cmd.
func (o *verifyOptions) AddFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.key, "key", "", "cosign public key (cosign.pub) the image must be signed with")
	f.StringVar(&o.identity, "certificate-identity", "", "keyless signer: the certificate's identity (e-mail or workflow URI)")
	f.StringVar(&o.issuer, "certificate-oidc-issuer", "", "keyless signer: the OIDC issuer of its identity")
	f.BoolVar(&o.allowInconclusive, "allow-inconclusive", false, "accept an INCONCLUSIVE gate verdict (approved by a person)")
}

// named says whether a signer was given.
func (o *verifyOptions) named() bool { return o.key != "" || o.identity != "" || o.issuer != "" }

// check refuses a key with an identity, and an identity without its
// issuer or the reverse; required refuses no signer at all.
func (o *verifyOptions) check(cmd string, required bool) error {
	hasID := o.identity != "" || o.issuer != ""
	switch {
	case o.key != "" && hasID:
		return usageError(fmt.Errorf("%s: --key and --certificate-identity/--certificate-oidc-issuer are mutually exclusive", cmd))
	case hasID && (o.identity == "" || o.issuer == ""):
		return usageError(fmt.Errorf("%s: --certificate-identity and --certificate-oidc-issuer go together", cmd))
	case required && !o.named():
		return usageError(fmt.Errorf("%s: --key, or --certificate-identity with --certificate-oidc-issuer, is required", cmd))
	}
	return nil
}

// orSpec takes the signer from the spec's verify: block when no flag named
// one; the spec's key is the spec directory's.
func (o *verifyOptions) orSpec(v spec.VerifySpec) {
	if o.named() {
		return
	}
	p := v.Policy()
	o.key, o.identity, o.issuer = p.KeyPath, p.CertificateIdentity, p.CertificateOIDCIssuer
}

// requireGatePolicy requires the gate attestation to be made under p.
func (o *verifyOptions) requireGatePolicy(p modelgate.Policy) { o.gatePolicy = p.Digest() }

// policy is the verification the flags ask for.
func (o *verifyOptions) policy() sign.VerifyPolicy {
	return sign.VerifyPolicy{KeyPath: o.key, CertificateIdentity: o.identity, CertificateOIDCIssuer: o.issuer, AllowInconclusive: o.allowInconclusive, GatePolicyDigest: o.gatePolicy}
}

// signerOptions name who signs: a private key, or keyless.
type signerOptions struct {
	key                 string
	keyless             bool
	fulcioURL, rekorURL string
}

// AddFlags registers the flags on cmd; keyUsage says what the key signs.
func (o *signerOptions) AddFlags(cmd *cobra.Command, keyUsage string) {
	f := cmd.Flags()
	f.StringVar(&o.key, "key", "", keyUsage)
	f.BoolVar(&o.keyless, "keyless", false, "sign with a short-lived certificate for the OIDC identity (Fulcio, Rekor)")
	f.StringVar(&o.fulcioURL, "fulcio-url", sign.DefaultFulcioURL, "Fulcio for --keyless")
	f.StringVar(&o.rekorURL, "rekor-url", sign.DefaultRekorURL, "Rekor for --keyless")
}

// check refuses --key with --keyless.
func (o *signerOptions) check(cmd string) error {
	if o.key != "" && o.keyless {
		return usageError(fmt.Errorf("%s: --key and --keyless are mutually exclusive", cmd))
	}
	return nil
}

// signer is the signer the flags name or, with neither, the spec's sign:
// block (sp may be nil). A key's password comes from the environment or a
// terminal prompt.
func (o *signerOptions) signer(cmd *cobra.Command, sp *spec.Spec) (sign.SignerSource, error) {
	c := pipeline.SignerConfig{
		Key: o.key, Keyless: o.keyless,
		KeylessOptions: sign.KeylessOptions{FulcioURL: o.fulcioURL, RekorURL: o.rekorURL},
	}.OrSpec(sp)
	if c.Key != "" {
		pw, err := keyPassword(cmd, false)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cmd.Name(), err)
		}
		c.Password = pw
	}
	return pipeline.Signer(c)
}

// outputOptions is -o/--output, the format of what a command reports on
// stdout: text (the default), json (one JSON document with a schema
// field), and for gate markdown. Where a command also takes an output
// directory (--output-dir, AddDirFlag), a value of --output that is no
// format is still taken as that directory, with a warning: modelci run, gc,
// rebuild and runs once took --output DIR.
type outputOptions struct {
	format string
	// formats are the accepted values, the first the default (text, json
	// unless set before AddFlags).
	formats []string
	// legacyFormat is --output-format, rebuild's and runs' old name of -o.
	legacyFormat string
	// dir is the command's --output-dir (AddDirFlag); dirMustExist: a
	// directory given as --output must exist (commands that read one).
	dir          *string
	dirMustExist bool
	cmd          *cobra.Command
}

// formatsText and formatsGate are the formats -o takes.
var (
	formatsText = []string{"text", "json"}
	formatsGate = []string{"text", "json", "markdown"}
)

// AddFlags registers -o/--output on cmd, with shell completion of its values.
func (o *outputOptions) AddFlags(cmd *cobra.Command, usage string) {
	if o.formats == nil {
		o.formats = formatsText
	}
	o.cmd, o.format = cmd, o.formats[0]
	cmd.Flags().VarP((*formatValue)(o), "output", "o", usage)
	must(cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(o.formats, cobra.ShellCompDirectiveNoFileComp)))
}

// formatValue is -o's flag value: a format, refused when the flag is
// parsed (exit 2, before anything else is checked), except where the
// command takes --output DIR for --output-dir (check sorts that out).
type formatValue outputOptions

func (v *formatValue) String() string { return v.format }

// Type is the word the usage shows after -o, --output.
func (v *formatValue) Type() string { return "format" }

func (v *formatValue) Set(s string) error {
	if v.dir == nil && !slices.Contains(v.formats, s) {
		return fmt.Errorf("want %s", orList(v.formats))
	}
	v.format = s
	return nil
}

// AddDirFlag registers --output-dir DIR (relative to -C DIR) on cmd, after
// AddFlags, and takes --output DIR as a deprecated spelling of it
// (mustExist: the directory must exist, for commands that read one). With
// legacyFormat, --output-format (hidden) is a deprecated spelling of -o.
func (o *outputOptions) AddDirFlag(cmd *cobra.Command, dir *string, usage string, mustExist, legacyFormat bool) {
	o.dir, o.dirMustExist = dir, mustExist
	cmd.Flags().StringVar(dir, "output-dir", "", usage)
	must(cmd.MarkFlagDirname("output-dir"))
	if legacyFormat {
		cmd.Flags().StringVar(&o.legacyFormat, "output-format", "", "deprecated: -o/--output")
		must(cmd.Flags().MarkHidden("output-format"))
	}
}

// orList is "a, b or c".
func orList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// check accepts a format, or, where the command takes --output-dir, a
// directory given as --output (with one warning on stderr); anything else
// is a usage error.
func (o *outputOptions) check() error {
	name := o.cmd.Name()
	warn := func(format string, a ...any) {
		fmt.Fprintf(o.cmd.ErrOrStderr(), "modelci %s: warning: "+format+"\n", append([]any{name}, a...)...)
	}
	want := orList(o.formats)
	if !slices.Contains(o.formats, o.format) {
		switch {
		case o.dir == nil:
			return usageError(fmt.Errorf("%s: -o %q: want %s", name, o.format, want))
		case o.cmd.Flags().Changed("output-dir"):
			return usageError(fmt.Errorf("%s: -o %q: want %s (the output directory is --output-dir %s)", name, o.format, want, *o.dir))
		}
		if o.dirMustExist {
			if fi, err := os.Stat(o.path(o.format)); err != nil || !fi.IsDir() {
				return usageError(fmt.Errorf("%s: -o %q: want %s (or, deprecated, an existing output directory)", name, o.format, want))
			}
		}
		warn("--output %s is taken as the output directory; this is deprecated: use --output-dir %s (-o/--output is the format: %s)", o.format, o.format, want)
		*o.dir, o.format = o.format, o.formats[0]
	} else if o.legacyFormat != "" && o.cmd.Flags().Changed("output") {
		return usageError(fmt.Errorf("%s: -o/--output %s and --output-format %s: give -o only", name, o.format, o.legacyFormat))
	}
	if o.legacyFormat != "" {
		if !slices.Contains(o.formats, o.legacyFormat) {
			return usageError(fmt.Errorf("%s: --output-format %q: want %s", name, o.legacyFormat, want))
		}
		warn("--output-format is deprecated: use -o/--output %s", o.legacyFormat)
		o.format = o.legacyFormat
	}
	return nil
}

// path resolves an output directory against -C DIR, as make -C does.
func (o *outputOptions) path(dir string) string {
	if f := o.cmd.Flags().Lookup("dir"); f != nil {
		return inDir(f.Value.String(), dir)
	}
	return dir
}

func (o *outputOptions) json() bool { return o.format == "json" }

// print writes v to stdout as one indented JSON document (<, > and & as
// they are: an error quoting a shell command stays readable).
func (o *outputOptions) print(cmd *cobra.Command, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := cmd.OutOrStdout().Write(b.Bytes())
	return err
}
