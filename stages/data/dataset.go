// Package data loads numeric CSV data sets, digests them over canonical
// content and splits them deterministically into train and test rows.
package data

// Dataset is a numeric table held row-major: row i's features are
// X[i*len(Features) : (i+1)*len(Features)] and its target is Y[i].
type Dataset struct {
	Features []string
	Target   string
	X        []float64
	Y        []float64
}

// Rows is the number of rows.
func (d *Dataset) Rows() int { return len(d.Y) }

// Row returns row i's features (a view, not a copy).
func (d *Dataset) Row(i int) []float64 {
	p := len(d.Features)
	return d.X[i*p : (i+1)*p : (i+1)*p]
}
