package registry

import (
	"fmt"
	"io"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// report renders go-containerregistry's progress updates to w until the
// channel closes, as a bar when w is a terminal.
func report(w io.Writer, label string, total int64, updates <-chan v1.Update) {
	render(w, isTerminal(w), label, total, updates)
}

// render draws a bar redrawn in place ("\r") when tty, else prints a line
// per tenth; both say bytes done of the total.
func render(w io.Writer, tty bool, label string, total int64, updates <-chan v1.Update) {
	last := int64(-1)
	var final v1.Update
	for u := range updates {
		if u.Error != nil {
			final.Error = u.Error
			continue
		}
		final = u
		t := total
		if t <= 0 || u.Total > t {
			t = u.Total
		}
		if t <= 0 {
			continue
		}
		done := min(u.Complete, t)
		if tty {
			// Redraw at most once per thousandth.
			if step := done * 1000 / t; step != last {
				last = step
				fmt.Fprintf(w, "\r%s %s %s of %s", label, bar(done, t, 30), mb(done), mb(t))
			}
			continue
		}
		if step := done * 10 / t; step != last {
			last = step
			fmt.Fprintf(w, "push %s: %d%% (%s of %s)\n", label, step*10, mb(done), mb(t))
		}
	}
	if tty && last >= 0 {
		fmt.Fprintln(w)
	}
	if final.Error != nil {
		fmt.Fprintf(w, "push %s: failed: %v\n", label, final.Error)
	}
}

func bar(done, total int64, width int) string {
	n := int(done * int64(width) / total)
	return "[" + strings.Repeat("=", n) + strings.Repeat(" ", width-n) + "]"
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// totalSize is the number of bytes a push of t moves if the registry has
// none of it: manifests, configs and layers; 0 when unknown.
func totalSize(t remote.Taggable) int64 {
	raw, err := t.RawManifest()
	if err != nil {
		return 0
	}
	n := int64(len(raw))
	switch t := t.(type) {
	case v1.ImageIndex:
		children, err := partial.Manifests(t)
		if err != nil {
			return 0
		}
		for _, c := range children {
			switch c := c.(type) {
			case v1.ImageIndex:
				n += totalSize(c)
			case v1.Image:
				n += totalSize(c)
			case v1.Layer:
				if s, err := c.Size(); err == nil {
					n += s
				}
			}
		}
	case v1.Image:
		m, err := t.Manifest()
		if err != nil {
			return 0
		}
		n += m.Config.Size
		for _, l := range m.Layers {
			if l.MediaType.IsDistributable() {
				n += l.Size
			}
		}
	}
	return n
}
