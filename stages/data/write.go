package data

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// WriteCSV writes d as CSV: a header of the features then the target, and
// one line per row with numbers in strconv's shortest 'g' form, which
// parses back to the same bits. Reading the output gives the same Digest.
// Names are quoted when they need it; names with line breaks and values
// that are not finite cannot be read back, so they are refused.
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
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("write csv: row %d feature %q is %v: %w", i+1, d.Features[j], v, ErrNotFinite)
			}
			buf = strconv.AppendFloat(buf, v, 'g', -1, 64)
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
