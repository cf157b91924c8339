package strictyaml_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/modelci/modelci/internal/strictyaml"
)

type inner struct {
	Rate  float64 `yaml:"rate"`
	Steps []int   `yaml:"steps"`
}

type doc struct {
	Name  string            `yaml:"name" required:"true"`
	Count *int              `yaml:"count"`
	On    bool              `yaml:"on"`
	In    inner             `yaml:"in"`
	Tags  map[string]string `yaml:"tags"`
	Any   map[string]any    `yaml:"any"`
}

func TestDecodeOK(t *testing.T) {
	src := "name: x\ncount: 3\non: true\nin: {rate: 0.5, steps: [1, 2]}\ntags: {a: b}\nany: {k: [1, two]}\n"
	var d doc
	if err := strictyaml.Decode("f.yaml", []byte(src), &d); err != nil {
		t.Fatal(err)
	}
	if d.Name != "x" || d.Count == nil || *d.Count != 3 || !d.On || d.In.Rate != 0.5 || len(d.In.Steps) != 2 || d.Tags["a"] != "b" {
		t.Fatalf("decoded %+v", d)
	}
	if l, ok := d.Any["k"].([]any); !ok || len(l) != 2 {
		t.Fatalf("any = %#v", d.Any)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, src string
		want      error
		msg       string // substring of the error
	}{
		{"unknown key", "name: x\nin:\n  rte: 1\n", strictyaml.ErrUnknownKey, "f.yaml:3:3: in.rte: unknown key (known keys: rate, steps)"},
		{"wrong type", "name: x\ncount: many\n", strictyaml.ErrType, "f.yaml:2:8: count: want an integer, got the string \"many\""},
		{"float for int", "name: x\nin: {steps: [1, 2.5]}\n", strictyaml.ErrType, "in.steps[1]: want an integer"},
		{"mapping for list", "name: x\nin: {steps: {a: 1}}\n", strictyaml.ErrType, "in.steps: want a list, got a mapping"},
		{"scalar for mapping", "name: x\nin: 3\n", strictyaml.ErrType, "in: want a mapping, got the number 3"},
		{"missing required", "count: 1\n", strictyaml.ErrMissing, "f.yaml:1:1: name: missing required field"},
		{"empty required", "name:\n", strictyaml.ErrMissing, "name: required, but empty"},
		{"empty document", "", strictyaml.ErrMissing, "name: missing required field"},
		{"duplicate", "name: x\nname: y\n", strictyaml.ErrDuplicate, "f.yaml:2:1: name: duplicate key"},
		{"syntax", "name: [x\n", strictyaml.ErrSyntax, "f.yaml:"},
		{"bool type", "name: x\non: maybe\n", strictyaml.ErrType, "on: want a boolean"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d doc
			err := strictyaml.Decode("f.yaml", []byte(tt.src), &d)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %q, want it to contain %q", err, tt.msg)
			}
		})
	}
}

func TestDecodeReportsEveryProblem(t *testing.T) {
	var d doc
	err := strictyaml.Decode("f.yaml", []byte("bogus: 1\ncount: x\n"), &d)
	for _, want := range []error{strictyaml.ErrUnknownKey, strictyaml.ErrType, strictyaml.ErrMissing} {
		if !errors.Is(err, want) {
			t.Errorf("err = %v, want it to include %v", err, want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add("name: x\ncount: 3\nin: {rate: 0.5, steps: [1, 2]}\n")
	f.Add("a: &x {b: 1}\nc: *x\n")
	f.Add("- 1\n- 2\n")
	f.Fuzz(func(t *testing.T, src string) {
		var d doc
		err := strictyaml.Decode("f.yaml", []byte(src), &d)
		if err == nil && d.Name == "" {
			t.Fatalf("decoded without the required name: %q", src)
		}
	})
}

func TestInline(t *testing.T) {
	type Inner struct {
		A int    `yaml:"a" required:"true"`
		B string `yaml:"b"`
	}
	var w struct {
		Inner `yaml:",inline"`
		B     []string `yaml:"b"` // the outer key wins
	}
	if err := strictyaml.Decode("f.yaml", []byte("a: 1\nb: [x]\n"), &w); err != nil {
		t.Fatal(err)
	}
	if w.A != 1 || len(w.B) != 1 || w.Inner.B != "" {
		t.Errorf("decoded %+v", w)
	}
	if err := strictyaml.Decode("f.yaml", []byte("b: [x]\n"), &w); !errors.Is(err, strictyaml.ErrMissing) || !strings.Contains(err.Error(), "a: missing") {
		t.Errorf("missing inline field: %v", err)
	}
	if err := strictyaml.Decode("f.yaml", []byte("a: 1\nc: 2\n"), &w); !errors.Is(err, strictyaml.ErrUnknownKey) {
		t.Errorf("unknown key: %v", err)
	}
}
