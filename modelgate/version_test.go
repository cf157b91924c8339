package modelgate_test

import (
	"errors"
	"testing"

	"github.com/modelci/modelci/modelgate"
)

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		v  string
		ok bool
	}{
		{"1.0.0", true}, {"0.1.0", true}, {"10.20.30", true}, {"1.0.0-rc.1", true},
		{"1.0.0-alpha.beta", true}, {"1.0.0+build.5", true}, {"1.0.0-rc.1+sha.abc", true},
		{"v1.0.0", false}, {"1.0", false}, {"1", false}, {"1.0.0.0", false}, {"01.0.0", false},
		{"1.0.0-", false}, {"1.0.0-01", false}, {"", false}, {"latest", false}, {" 1.0.0", false}, {"1.0.0+", false},
	} {
		_, err := modelgate.ParseVersion(tc.v)
		if (err == nil) != tc.ok {
			t.Errorf("ParseVersion(%q): %v, want ok=%v", tc.v, err, tc.ok)
		}
		if err != nil && !errors.Is(err, modelgate.ErrInvalidVersion) {
			t.Errorf("ParseVersion(%q): %v, want ErrInvalidVersion", tc.v, err)
		}
	}
}

func TestTag(t *testing.T) {
	for v, want := range map[string]string{"1.0.0": "1.0.0", "1.0.0+build.5": "1.0.0_build.5", "2.1.0-rc.1+a.b": "2.1.0-rc.1_a.b"} {
		if got := modelgate.Tag(v); got != want {
			t.Errorf("Tag(%q) = %q, want %q", v, got, want)
		}
	}
}

// Precedence examples from semver.org §11.
func TestGreater(t *testing.T) {
	for _, tc := range []struct {
		cand, champ string
		want        bool
	}{
		{"1.0.1", "1.0.0", true}, {"1.0.0", "1.0.0", false}, {"1.0.0", "1.0.1", false},
		{"2.0.0", "1.99.99", true}, {"1.10.0", "1.9.0", true},
		{"1.0.0", "1.0.0-rc.1", true}, {"1.0.0-rc.1", "1.0.0", false},
		{"1.0.0-alpha.1", "1.0.0-alpha", true}, {"1.0.0-beta", "1.0.0-alpha.beta", true},
		{"1.0.0-rc.1", "1.0.0-beta.11", true}, {"1.0.0-beta.11", "1.0.0-beta.2", true},
		{"1.0.0+b", "1.0.0+a", false}, // build metadata does not count
		{"0.1.0", "", true},           // no champion yet
	} {
		got, err := modelgate.Greater(tc.cand, tc.champ)
		if err != nil || got != tc.want {
			t.Errorf("Greater(%q, %q) = %v, %v; want %v", tc.cand, tc.champ, got, err, tc.want)
		}
	}
	if _, err := modelgate.Greater("v2.0.0", "1.0.0"); !errors.Is(err, modelgate.ErrInvalidVersion) {
		t.Errorf("leading v: %v", err)
	}
	if _, err := modelgate.Greater("2.0.0", "one"); !errors.Is(err, modelgate.ErrInvalidVersion) {
		t.Errorf("bad champion: %v", err)
	}
}

func TestCheckConstraint(t *testing.T) {
	for _, tc := range []struct {
		v, c string
		ok   bool
	}{
		{"1.2.0", ">= 1.0, < 2.0", true},
		{"2.0.0", ">= 1.0, < 2.0", false},
		{"0.9.9", ">= 1.0, < 2.0", false},
		{"0.1.0", ">= 0.1.0", true},
		// go-version: a pre-release satisfies only constraints naming a
		// pre-release of the same version.
		{"1.5.0-rc.1", ">= 1.0, < 2.0", false},
		{"1.5.0-rc.1", ">= 1.5.0-rc.0", true},
		{"1.5.0-rc.1", ">= 1.4.0-rc.0", false},
		{"1.4.2", "~> 1.4.0", true},
		{"1.5.0", "~> 1.4.0", false},
	} {
		err := modelgate.CheckConstraint(tc.v, tc.c)
		if (err == nil) != tc.ok {
			t.Errorf("CheckConstraint(%q, %q) = %v, want ok=%v", tc.v, tc.c, err, tc.ok)
		}
		if err != nil && !errors.Is(err, modelgate.ErrConstraint) {
			t.Errorf("CheckConstraint(%q, %q) = %v, want ErrConstraint", tc.v, tc.c, err)
		}
	}
	if err := modelgate.CheckConstraint("1.0.0", ">= banana"); !errors.Is(err, modelgate.ErrInvalidConstraint) {
		t.Errorf("bad constraint: %v", err)
	}
	if err := modelgate.CheckConstraint("v1.0.0", ">= 1.0"); !errors.Is(err, modelgate.ErrInvalidVersion) {
		t.Errorf("bad version: %v", err)
	}
}
