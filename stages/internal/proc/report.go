package proc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// ErrNoKey means a report lacks the key asked for (optional keys are
// told from malformed ones by it).
var ErrNoKey = errors.New("no key")

// DecodeFloats returns the array of numbers under key in the JSON object b.
// Non-finite values are returned, not rejected, so that callers can tell a
// diverged run from a malformed report: Python's json module writes them as
// the bare tokens NaN, Infinity and -Infinity, and a number too large for a
// float64 (1e999) decodes as ±Inf.
func DecodeFloats(b []byte, key string) ([]float64, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		// Only retry with quoted tokens when the strict parse failed, so a
		// valid document is never rewritten.
		if err2 := json.Unmarshal(quoteNonFinite(b), &obj); err2 != nil {
			return nil, fmt.Errorf("decode report: %w", err)
		}
	}
	raw, ok := obj[key]
	if !ok {
		return nil, fmt.Errorf("decode report: %w %q", ErrNoKey, key)
	}
	d := json.NewDecoder(bytes.NewReader(quoteNonFinite(raw)))
	d.UseNumber()
	var items []any
	if err := d.Decode(&items); err != nil {
		return nil, fmt.Errorf("decode report: %q is not an array of numbers: %w", key, err)
	}
	if items == nil {
		return nil, fmt.Errorf("decode report: %q is null", key)
	}
	out := make([]float64, len(items))
	for i, it := range items {
		switch v := it.(type) {
		case json.Number:
			f, err := strconv.ParseFloat(string(v), 64)
			if err != nil && !errors.Is(err, strconv.ErrRange) {
				return nil, fmt.Errorf("decode report: %s[%d]: %w", key, i, err)
			}
			out[i] = f // ±Inf on overflow
		case string:
			switch v {
			case "NaN":
				out[i] = math.NaN()
			case "Infinity":
				out[i] = math.Inf(1)
			case "-Infinity":
				out[i] = math.Inf(-1)
			default:
				return nil, fmt.Errorf("decode report: %s[%d] is the string %q, not a number", key, i, v)
			}
		default:
			return nil, fmt.Errorf("decode report: %s[%d] is %v, not a number", key, i, it)
		}
	}
	return out, nil
}

// quoteNonFinite puts quotes around the bare tokens NaN, Infinity and
// -Infinity outside strings, turning Python's JSON dialect into JSON.
func quoteNonFinite(b []byte) []byte {
	var out []byte
	inString, escaped := false, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			out = append(out, c)
			continue
		}
		if c == '"' {
			inString = true
			out = append(out, c)
			continue
		}
		matched := false
		for _, tok := range []string{"NaN", "Infinity", "-Infinity"} {
			if bytes.HasPrefix(b[i:], []byte(tok)) {
				out = append(out, '"')
				out = append(out, tok...)
				out = append(out, '"')
				i += len(tok) - 1
				matched = true
				break
			}
		}
		if !matched {
			out = append(out, c)
		}
	}
	return out
}
