package proc_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/modelci/modelci/stages/internal/proc"
)

// FuzzDecodeFloats checks that DecodeFloats never panics and agrees with
// encoding/json on every document that encoding/json accepts.
func FuzzDecodeFloats(f *testing.F) {
	for _, s := range []string{
		`{"loss":[1,2.5,-3e4]}`, `{"loss":[NaN,Infinity,-Infinity]}`, `{"loss":[]}`,
		`{"a":"NaN","loss":[1]}`, `{"LOSS":[1]}`, `{"loss":"x"}`, `{"loss":[1e999]}`, `[1]`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := proc.DecodeFloats(b, "loss")
		// Keys match exactly, unlike encoding/json's struct fields.
		var doc map[string]json.RawMessage
		var want []float64
		if json.Unmarshal(b, &doc) != nil || json.Unmarshal(doc["loss"], &want) != nil || want == nil {
			return
		}
		if err != nil {
			t.Fatalf("DecodeFloats(%q): %v; encoding/json gives %v", b, err, want)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("DecodeFloats(%q) = %v; encoding/json gives %v", b, got, want)
		}
	})
}
