package data

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

// WriteCSV writes d as CSV: a header of the features then the target, and
// one line per row with numbers in strconv's shortest 'g' form, which
// parses back to the same bits, empty cells empty and text cells as their
// text, quoted when it holds a comma or a quote. Reading the output gives
// the same Digest. Names are quoted when they need it; names with line
// breaks, infinite values, a target that is not a number and text that Read
// would not return as that text (empty, a number, spaces around it, a line
// break, not UTF-8) cannot be read back, so they are refused.
func WriteCSV(w io.Writer, d *Dataset) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	buf := make([]byte, 0, 256)
	names := append(append([]string{}, d.Features...), d.Target)
	for i, name := range names {
		if name == "" {
			return fmt.Errorf("write csv: column %d: %w", i+1, ErrEmptyColumn)
		}
		if strings.ContainsAny(name, "\r\n") {
			return fmt.Errorf("write csv: column %d name %q has a line break: %w", i+1, name, ErrSyntax)
		}
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendName(buf, name)
	}
	buf = append(buf, '\n')
	if _, err := bw.Write(buf); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	for i, y := range d.Y {
		buf = buf[:0]
		for j, v := range d.Row(i) {
			switch {
			case math.IsInf(v, 0):
				return fmt.Errorf("write csv: row %d feature %q is %v: %w", i+1, d.Features[j], v, ErrNotFinite)
			case !math.IsNaN(v):
				buf = strconv.AppendFloat(buf, v, 'g', -1, 64)
			case d.Text != nil && d.Text[j] != nil && d.Text[j][i] != "":
				text := d.Text[j][i]
				if err := checkText(text); err != nil {
					return fmt.Errorf("write csv: row %d feature %q: %w", i+1, d.Features[j], err)
				}
				buf = appendText(buf, text)
			}
			buf = append(buf, ',')
		}
		if math.IsNaN(y) || math.IsInf(y, 0) {
			return fmt.Errorf("write csv: row %d target %q is %v: %w", i+1, d.Target, y, ErrNotFinite)
		}
		buf = strconv.AppendFloat(buf, y, 'g', -1, 64)
		buf = append(buf, '\n')
		if _, err := bw.Write(buf); err != nil {
			return fmt.Errorf("write csv: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}

// appendName quotes a name that Read would otherwise split, trim or
// misread: one with a comma, a quote, surrounding spaces, or a leading
// byte order mark.
func appendName(buf []byte, name string) []byte {
	if !strings.ContainsAny(name, `,"`) && !strings.HasPrefix(name, "\ufeff") && strings.TrimLeft(name, " \t") == name && strings.TrimRight(name, " \t") == name {
		return append(buf, name...)
	}
	buf = append(buf, '"')
	buf = append(buf, strings.ReplaceAll(name, `"`, `""`)...)
	return append(buf, '"')
}

// checkText refuses text that Read would not give back as the same text cell.
func checkText(s string) error {
	switch {
	case strings.ContainsAny(s, "\r\n"):
		return fmt.Errorf("text %q has a line break: %w", s, ErrSyntax)
	case !utf8.ValidString(s):
		return fmt.Errorf("text %q is not valid UTF-8: %w", s, ErrSyntax)
	case strings.TrimLeft(s, " \t") != s || strings.TrimRight(s, " \t") != s:
		return fmt.Errorf("text %q has spaces around it, which reading drops: %w", s, ErrSyntax)
	}
	if _, err := parseNumber([]byte(s)); !errors.Is(err, ErrNotNumber) {
		return fmt.Errorf("text %q reads back as a number: %w", s, ErrSyntax)
	}
	return nil
}

// appendText writes a text cell, quoted when it holds a comma or a quote.
func appendText(buf []byte, s string) []byte {
	if !strings.ContainsAny(s, `,"`) {
		return append(buf, s...)
	}
	buf = append(buf, '"')
	buf = append(buf, strings.ReplaceAll(s, `"`, `""`)...)
	return append(buf, '"')
}

// WriteFile writes d to a new file at path in WriteCSV's form: the train.csv
// and test.csv of the trainer and evaluator contracts, wherever they run.
func WriteFile(path string, d *Dataset) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := WriteCSV(f, d); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
