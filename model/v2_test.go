package model_test

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/modelci/modelci/model"
)

func ptr(v float64) *float64 { return &v }

// linearV2 has a number column "a" (impute 3), a category column "c" over
// "", "east", "north", and a number column "b" (impute −1): inputs a, c=,
// c=east, c=north, b.
func linearV2() *model.Linear {
	return &model.Linear{
		Schema: model.SchemaV2, Name: "m", Version: "1.0.0",
		Features: []string{"a", "c", "b"}, Target: "y",
		Columns: []model.Column{
			{Kind: model.KindNumber, Impute: ptr(3)},
			{Kind: model.KindCategory, Categories: []string{"", "east", "north"}},
			{Kind: model.KindNumber, Impute: ptr(-1)},
		},
		Mean:    []float64{1, 0.25, 0.5, 0.25, 0},
		Scale:   []float64{2, 0.5, 0.5, 0.5, 1},
		Weights: []float64{3, 1, -2, 4, -1},
		Bias:    10,
	}
}

func TestV2EncodeDecode(t *testing.T) {
	b, err := linearV2().Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"schema": "modelci.dev/model/linear/v2"`, `"columns": [`, `"kind": "category"`, `"impute": 3`, `"categories": [`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("encoding lacks %s:\n%s", want, b)
		}
	}
	m, err := model.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	again, err := m.Encode()
	if err != nil || string(again) != string(b) {
		t.Fatalf("encoding is not canonical: %v\n%s\n%s", err, b, again)
	}
	// v1 documents carry no columns.
	b, err = linear().Encode()
	if err != nil || strings.Contains(string(b), "columns") {
		t.Errorf("v1 encoding %s (%v) mentions columns", b, err)
	}
	if got := []string{m.InputName(0), m.InputName(1), m.InputName(2), m.InputName(3), m.InputName(4)}; !slices.Equal(got, []string{"a", "c=", "c=east", "c=north", "b"}) {
		t.Errorf("input names %q", got)
	}
	if m.NumFeatures() != 3 || m.NumInputs() != 5 {
		t.Errorf("%d features, %d inputs", m.NumFeatures(), m.NumInputs())
	}
}

func TestProcess(t *testing.T) {
	m := linearV2()
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	nan := math.NaN()
	// z for a, the three categories of c, then b.
	std := func(a float64, cat int, b float64) []float64 {
		z := []float64{(a - 1) / 2, (0 - 0.25) / 0.5, (0 - 0.5) / 0.5, (0 - 0.25) / 0.5, b}
		z[1+cat] = (1 - []float64{0.25, 0.5, 0.25}[cat]) / []float64{0.5, 0.5, 0.5}[cat]
		return z
	}
	for _, tc := range []struct {
		name string
		x    []float64
		text []string
		want []float64
	}{
		{"numbers and a category", []float64{5, nan, 2}, []string{"", "north", ""}, std(5, 2, 2)},
		{"missing numbers imputed", []float64{nan, nan, nan}, []string{"", "east", ""}, std(3, 1, -1)},
		{"empty category", []float64{5, nan, 2}, []string{"", "", ""}, std(5, 0, 2)},
		{"no text: every NaN missing", []float64{nan, nan, 0}, nil, std(3, 0, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			z, err := m.Process(nil, tc.x, tc.text)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(z, tc.want) {
				t.Errorf("Process = %v, want %v", z, tc.want)
			}
			y, err := m.PredictRow(tc.x, tc.text)
			if err != nil || y != m.Score(z) {
				t.Errorf("PredictRow = %v, %v; want Score(z) = %v", y, err, m.Score(z))
			}
			want := m.Bias
			for k := range z {
				want += m.Weights[k] * z[k]
			}
			if y != want {
				t.Errorf("prediction %v, want bias + w·z = %v", y, want)
			}
		})
	}
}

// A number in a category column stands for its shortest spelling.
func TestProcessNumberAsCategory(t *testing.T) {
	m := linearV2()
	m.Columns[1].Categories = []string{"1", "2.5", "B"}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := m.Process(nil, []float64{0, 2.5, 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Process(nil, []float64{0, math.NaN(), 0}, []string{"", "2.5", ""})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a, b) || a[2] != 1 {
		t.Errorf("2.5 as a number %v, as text %v", a, b)
	}
	if model.CategoryKey(2139) != "2139" || model.CategoryKey(1e21) != "1e+21" || model.CategoryKey(-0.5) != "-0.5" {
		t.Errorf("CategoryKey spellings")
	}
}

func TestProcessErrors(t *testing.T) {
	v2 := linearV2()
	v1 := linear()
	nan := math.NaN()
	for _, tc := range []struct {
		name    string
		m       *model.Linear
		x       []float64
		text    []string
		wantErr error
		feature int
		msg     string
	}{
		{"unseen category", v2, []float64{1, nan, 1}, []string{"", "west", ""}, model.ErrUnseenCategory, 1,
			`feature "c": category "west" not seen in training (the model's categories are "", "east", "north")`},
		{"unseen number category", v2, []float64{1, 7, 1}, nil, model.ErrUnseenCategory, 1, `"7"`},
		{"text for a number", v2, []float64{1, nan, nan}, []string{"", "east", "many"}, model.ErrNotNumber, 2, `feature "b": "many": not a number`},
		{"v1 missing", v1, []float64{1, nan}, nil, model.ErrNoImputation, 1, `feature "b": missing value, and the model imputes none`},
		{"v1 text", v1, []float64{nan, 1}, []string{"x", ""}, model.ErrNotNumber, 0, `feature "a": "x": not a number`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.m.Process(nil, tc.x, tc.text)
			var ce *model.CellError
			if !errors.Is(err, tc.wantErr) || !errors.As(err, &ce) || ce.Feature != tc.feature {
				t.Fatalf("Process: %v, want %v on feature %d", err, tc.wantErr, tc.feature)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q lacks %q", err, tc.msg)
			}
			if _, err := tc.m.PredictRow(tc.x, tc.text); !errors.Is(err, tc.wantErr) {
				t.Errorf("PredictRow: %v", err)
			}
		})
	}
}

func TestValidateV2(t *testing.T) {
	tests := map[string]func(*model.Linear){
		"v1 with columns":          func(m *model.Linear) { m.Schema = model.Schema },
		"too few columns":          func(m *model.Linear) { m.Columns = m.Columns[:2] },
		"unknown kind":             func(m *model.Linear) { m.Columns[0].Kind = "text" },
		"number without impute":    func(m *model.Linear) { m.Columns[0].Impute = nil },
		"NaN impute":               func(m *model.Linear) { m.Columns[2].Impute = ptr(math.NaN()) },
		"number with categories":   func(m *model.Linear) { m.Columns[0].Categories = []string{"x"} },
		"category with impute":     func(m *model.Linear) { m.Columns[1].Impute = ptr(0) },
		"no categories":            func(m *model.Linear) { m.Columns[1].Categories = nil },
		"categories unsorted":      func(m *model.Linear) { m.Columns[1].Categories = []string{"", "north", "east"} },
		"categories repeated":      func(m *model.Linear) { m.Columns[1].Categories = []string{"", "east", "east"} },
		"category not UTF-8":       func(m *model.Linear) { m.Columns[1].Categories = []string{"", "east", "\xff"} },
		"weights per feature":      func(m *model.Linear) { m.Weights = m.Weights[:3] },
		"zero scale of a category": func(m *model.Linear) { m.Scale[2] = 0 },
		"duplicate feature":        func(m *model.Linear) { m.Features[2] = "a" },
	}
	for name, edit := range tests {
		t.Run(name, func(t *testing.T) {
			m := linearV2()
			edit(m)
			if err := m.Validate(); !errors.Is(err, model.ErrInvalid) {
				t.Fatalf("Validate = %v, want ErrInvalid", err)
			}
		})
	}
	m := linearV2()
	m.Scale[2] = 0
	if err := m.Validate(); err == nil || !strings.Contains(err.Error(), "scale[2] (c=east) is zero") {
		t.Errorf("Validate = %v, want it to name the input c=east", err)
	}
}

func TestParseCell(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		in      string
		v       float64
		text    string
		wantErr bool
	}{
		{"1.5", 1.5, "", false},
		{" 02139\t", 2139, "", false},
		{"-0", math.Copysign(0, -1), "", false},
		{"0x1p4", 16, "", false},
		{"", nan, "", false},
		{"  ", nan, "", false},
		{"north", nan, "north", false},
		{" north, hills ", nan, "north, hills", false},
		{"1 2", nan, "1 2", false},
		{"NaN", nan, "", true},
		{"-Inf", nan, "", true},
		{"1e999", nan, "", true},
	} {
		v, text, err := model.ParseCell(tc.in)
		if (err != nil) != tc.wantErr || text != tc.text || math.Float64bits(v) != math.Float64bits(tc.v) && !(math.IsNaN(v) && math.IsNaN(tc.v)) {
			t.Errorf("ParseCell(%q) = %v, %q, %v", tc.in, v, text, err)
		}
		if err != nil && !errors.Is(err, model.ErrNotFinite) {
			t.Errorf("ParseCell(%q): %v, want ErrNotFinite", tc.in, err)
		}
	}
}
