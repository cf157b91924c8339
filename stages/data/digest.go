package data

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"unicode/utf8"
)

// The magics start the canonical forms, so that one form can never collide
// with another.
const (
	digestMagic   = "modelci.dev/dataset/v1\n"
	digestMagicV2 = "modelci.dev/dataset/v2\n"
)

// Cell tags of the v2 canonical form.
const (
	tagNumber = 'n'
	tagEmpty  = 'e'
	tagText   = 't'
)

// Digest returns "sha256:<hex>" of the dataset's canonical form, which
// depends only on names, numbers and text, never on how a CSV spelled them
// ("1.50" and "1.5" digest alike; the column position of the target does
// not matter; File and Lines do not count). All integers are unsigned
// 64-bit little-endian.
//
// When every feature cell is a number (Numeric), the form is v1, as it
// always was:
//
//	"modelci.dev/dataset/v1\n"
//	len(Features), then for each feature name: len(name), name bytes
//	len(Target), Target bytes
//	Rows()
//	for each row in order: its features' IEEE-754 bits (math.Float64bits),
//	    then the target's bits
//
// Otherwise (an empty or text cell somewhere) it is v2, the same but for
// the magic "modelci.dev/dataset/v2\n" and the feature cells, each a tag
// byte then its content:
//
//	'n', the IEEE-754 bits           a number
//	'e'                              an empty cell
//	't', len(text), text bytes       a text cell
//
// Values are hashed bit for bit, so -0 and +0 differ. Digest panics if the
// dataset is malformed (see Validate), as Row does for a bad index.
func (d *Dataset) Digest() string {
	if err := d.Validate(); err != nil {
		panic(fmt.Sprintf("data: digest of %v", err))
	}
	v2 := !d.Numeric()
	h := sha256.New()
	buf := make([]byte, 0, 64<<10)
	putString := func(s string) {
		buf = binary.LittleEndian.AppendUint64(buf, uint64(len(s)))
		h.Write(buf)
		h.Write([]byte(s))
		buf = buf[:0]
	}
	if v2 {
		h.Write([]byte(digestMagicV2))
	} else {
		h.Write([]byte(digestMagic))
	}
	buf = binary.LittleEndian.AppendUint64(buf, uint64(len(d.Features)))
	for _, f := range d.Features {
		putString(f)
	}
	putString(d.Target)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(d.Rows()))
	p := len(d.Features)
	for i, y := range d.Y {
		if len(buf)+9*(p+1) > cap(buf) {
			h.Write(buf)
			buf = buf[:0]
		}
		if !v2 {
			for _, v := range d.X[i*p : (i+1)*p] {
				buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(v))
			}
		} else {
			for j := range p {
				switch kind, v, text := d.Cell(i, j); kind {
				case Number:
					buf = append(buf, tagNumber)
					buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(v))
				case Empty:
					buf = append(buf, tagEmpty)
				case Text:
					buf = append(buf, tagText)
					putString(text)
				}
			}
		}
		buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(y))
	}
	h.Write(buf)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// Validate reports ErrShape when X does not hold Rows()·len(Features)
// values, or Text or Lines disagree with them: Text with other than one
// entry per feature, a text column without one string per row, text on a
// cell that is a number in X, text that is not valid UTF-8. Datasets from
// Load, Read and Split are always valid.
func (d *Dataset) Validate() error {
	n, p := len(d.Y), len(d.Features)
	if want := n * p; len(d.X) != want {
		return fmt.Errorf("dataset with %d rows and %d features has %d feature values, want %d: %w",
			n, p, len(d.X), want, ErrShape)
	}
	if d.Lines != nil && len(d.Lines) != n {
		return fmt.Errorf("dataset with %d rows has %d line numbers: %w", n, len(d.Lines), ErrShape)
	}
	if d.Text == nil {
		return nil
	}
	if len(d.Text) != p {
		return fmt.Errorf("dataset with %d features has text for %d columns: %w", p, len(d.Text), ErrShape)
	}
	for j, col := range d.Text {
		if col == nil {
			continue
		}
		if len(col) != n {
			return fmt.Errorf("dataset with %d rows has %d text cells in column %q: %w", n, len(col), d.Features[j], ErrShape)
		}
		for i, s := range col {
			if s == "" {
				continue
			}
			if v := d.X[i*p+j]; !math.IsNaN(v) {
				return fmt.Errorf("row %d, column %q is both the number %v and the text %q: %w", i+1, d.Features[j], v, s, ErrShape)
			}
			if !utf8.ValidString(s) {
				return fmt.Errorf("row %d, column %q: text %q is not valid UTF-8: %w", i+1, d.Features[j], s, ErrShape)
			}
		}
	}
	return nil
}
