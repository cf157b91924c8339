package data_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelci/modelci/stages/data"
)

func mustRead(t *testing.T, in, target string) *data.Dataset {
	t.Helper()
	d, err := data.Read(strings.NewReader(in), "in.csv", target)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDigestIgnoresFormatting(t *testing.T) {
	want := mustRead(t, "a,b,y\n1.5,-2,10\n0.25,3e10,20\n", "y").Digest()
	for _, in := range []string{
		"a,b,y\n1.50,-2.0,1e1\n.25,30000000000,+20\n",
		"\xef\xbb\xbf a , b , y \r\n 1.5 , -2 , 10 \r\n\r\n0.25,3E+10,20",
		"\"a\",\"b\",\"y\"\n\"1.5\",-2,10\n0.25,3e10,20.000\n",
		"y,a,b\n10,1.5,-2\n20,0.25,3e10\n",
		"a,y,b\n1.5,10,-2\n0.25,20,3e10\n",
		"a,b,y\n0x1.8p0,-2,10\n0.25,3e10,20\n",
	} {
		if got := mustRead(t, in, "y").Digest(); got != want {
			t.Errorf("digest of %q = %s, want %s", in, got, want)
		}
	}
}

func TestDigestSeesEveryChange(t *testing.T) {
	base := &data.Dataset{Features: []string{"a", "b"}, Target: "y", X: []float64{1, 2, 3, 4}, Y: []float64{5, 6}}
	clone := func() *data.Dataset {
		return &data.Dataset{Features: append([]string{}, base.Features...), Target: base.Target,
			X: append([]float64{}, base.X...), Y: append([]float64{}, base.Y...)}
	}
	seen := map[string]string{base.Digest(): "base"}
	check := func(what string, d *data.Dataset) {
		t.Helper()
		dg := d.Digest()
		if prev, ok := seen[dg]; ok {
			t.Errorf("%s digests like %s: %s", what, prev, dg)
		}
		seen[dg] = what
	}
	for i := range base.X {
		d := clone()
		d.X[i] = math.Nextafter(d.X[i], math.Inf(1))
		check(fmt.Sprintf("X[%d] one ulp up", i), d)
	}
	for i := range base.Y {
		d := clone()
		d.Y[i] = math.Nextafter(d.Y[i], math.Inf(-1))
		check(fmt.Sprintf("Y[%d] one ulp down", i), d)
	}
	d := clone()
	d.X[0], d.X[1], d.X[2], d.X[3], d.Y[0], d.Y[1] = 3, 4, 1, 2, 6, 5
	check("rows swapped", d)
	d = clone()
	d.Features[0] = "A"
	check("feature renamed", d)
	d = clone()
	d.Target = "z"
	check("target renamed", d)
	d = clone()
	d.Features = []string{"a", "by"}
	d.Target = ""
	check("names split differently", d)
	d = &data.Dataset{Features: []string{"a"}, Target: "y", X: []float64{1, 3}, Y: []float64{5, 6}}
	check("column dropped", d)
	d = clone()
	d.X[0] = 0
	check("0 for 1", d)
	e := clone()
	e.X[0] = math.Copysign(0, -1)
	check("-0 for 1", e)
}

// TestDigestCanonicalForm recomputes the digest from the form documented
// on Digest, so that the documentation and the code cannot drift apart.
func TestDigestCanonicalForm(t *testing.T) {
	d, err := data.Load(context.Background(), filepath.Join("testdata", "diabetes.csv"), "target")
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	u64 := func(v uint64) { b = binary.LittleEndian.AppendUint64(b, v) }
	str := func(s string) { u64(uint64(len(s))); b = append(b, s...) }
	b = append(b, "modelci.dev/dataset/v1\n"...)
	u64(uint64(len(d.Features)))
	for _, f := range d.Features {
		str(f)
	}
	str(d.Target)
	u64(uint64(d.Rows()))
	for i := range d.Rows() {
		for _, v := range d.Row(i) {
			u64(math.Float64bits(v))
		}
		u64(math.Float64bits(d.Y[i]))
	}
	sum := sha256.Sum256(b)
	want := "sha256:" + hex.EncodeToString(sum[:])
	if got := d.Digest(); got != want {
		t.Errorf("Digest() = %s, canonical form hashes to %s", got, want)
	}
	// Pinned: a change here changes every recorded dataset digest.
	const pinned = "sha256:2c4d518bafe30b1af5c6aaedfcdd76091b80092c35131ea4f0b85a1b7e72169c"
	if want != pinned {
		t.Errorf("diabetes digest %s, pinned %s", want, pinned)
	}
}

func TestDigestPanicsOnBadShape(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Digest of a malformed dataset did not panic")
		}
	}()
	(&data.Dataset{Features: []string{"a"}, Target: "y", X: []float64{1, 2}, Y: []float64{1}}).Digest()
}
