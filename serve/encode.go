package serve

import (
	"encoding/json"
	"math"
	"strconv"

	"github.com/modelci/modelci/model"
)

// appendFloat writes f as encoding/json does (shortest form that reads back
// to the same float64, exponent only for very small or large values).
// f is finite.
func appendFloat(b []byte, f float64) []byte {
	// Most floats (1e-6 <= |f| < 1e21) take the faster path, which
	// writes the same bytes as strconv.
	if b, ok := appendShortest(b, f); ok {
		return b
	}
	return appendFloatStrconv(b, f)
}

// appendFloatStrconv is appendFloat with strconv for every float: the
// other floats' path, and the tests' reference for the fast one.
func appendFloatStrconv(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 → e-9, as encoding/json writes it.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

func appendFloats(b []byte, fs []float64) []byte {
	b = append(b, '[')
	for i, f := range fs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendFloat(b, f)
	}
	return append(b, ']')
}

// encodePredictions answers in the request's shape: {"predictions": […]}
// for instances, the seed's {"prediction": y} for one input row and
// {"prediction": […]} for many.
func encodePredictions(b []byte, r request, y []float64) []byte {
	switch {
	case r.shape == shapeInstances:
		b = append(b, `{"predictions":`...)
		b = appendFloats(b, y[:r.rows])
	case r.single():
		b = append(b, `{"prediction":`...)
		b = appendFloat(b, y[0])
	default:
		b = append(b, `{"prediction":`...)
		b = appendFloats(b, y[:r.rows])
	}
	return append(b, "}\n"...)
}

// encodeProcessed answers {"processed_data": …} with the standardised rows
// z, in the request's shape: one row or many, arrays or objects keyed by
// feature name (in the model's order).
func encodeProcessed(b []byte, r request, features []string, z []float64) []byte {
	p := len(features)
	b = append(b, `{"processed_data":`...)
	if !r.single() {
		b = append(b, '[')
	}
	for i := range r.rows {
		if i > 0 {
			b = append(b, ',')
		}
		row := z[i*p : (i+1)*p]
		if r.shape == shapeObject || r.shape == shapeObjects {
			b = append(b, '{')
			for j, f := range features {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendString(b, f)
				b = append(b, ':')
				b = appendFloat(b, row[j])
			}
			b = append(b, '}')
		} else {
			b = appendFloats(b, row)
		}
	}
	if !r.single() {
		b = append(b, ']')
	}
	return append(b, "}\n"...)
}

// encodeProcessedCells answers {"processed_data": …} for a linear/v2
// model with the processed rows z (model.NumInputs() values each), in the
// request's shape: arrays of the inputs in the model's order; or objects
// keyed by feature name whose value is the feature's input, or for a
// category feature an object keyed by category (in the model's order).
func encodeProcessedCells(b []byte, r request, m *model.Linear, z []float64) []byte {
	q := m.NumInputs()
	b = append(b, `{"processed_data":`...)
	if !r.single() {
		b = append(b, '[')
	}
	for i := range r.rows {
		if i > 0 {
			b = append(b, ',')
		}
		row := z[i*q : (i+1)*q]
		if r.shape != shapeObject && r.shape != shapeObjects {
			b = appendFloats(b, row)
			continue
		}
		b = append(b, '{')
		k := 0
		for j, f := range m.Features {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendString(b, f)
			b = append(b, ':')
			c := m.Columns[j]
			if c.Kind != model.KindCategory {
				b = appendFloat(b, row[k])
				k++
				continue
			}
			b = append(b, '{')
			for n, cat := range c.Categories {
				if n > 0 {
					b = append(b, ',')
				}
				b = appendString(b, cat)
				b = append(b, ':')
				b = appendFloat(b, row[k])
				k++
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	if !r.single() {
		b = append(b, ']')
	}
	return append(b, "}\n"...)
}

// appendString writes s as a JSON string: feature names and categories.
func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}

// appendFloat32 writes f as appendFloat does, in the shortest form that
// reads back to the same float32: an FP32 tensor's element.
func appendFloat32(b []byte, f float32) []byte {
	abs := math.Abs(float64(f))
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, float64(f), format, -1, 32)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
