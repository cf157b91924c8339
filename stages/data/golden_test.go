package data_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"testing"

	"github.com/modelci/modelci/stages/data"
)

// TestWriteCSVDiabetesPinned: the train.csv and test.csv an external
// trainer and evaluator get for the example are byte for byte what the code
// at commit 2e4f2ec wrote (sizes and hashes taken from that commit's output).
func TestWriteCSVDiabetesPinned(t *testing.T) {
	d, err := data.Load(context.Background(), filepath.Join("testdata", "diabetes.csv"), "target")
	if err != nil {
		t.Fatal(err)
	}
	train, test, err := data.Split(d, 0.2, 42)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		d    *data.Dataset
		size int
		hash string
	}{
		{"train.csv", train, 14801, "627df3c1989426d834bbffd3c1ffa18e9c1efba9ed019a00722acbbbcbd6be1f"},
		{"test.csv", test, 3740, "e76bfe3054bfecbd2a1273417918055f8e065a2bcfcedaf05ea3f6e1bf7203a5"},
	} {
		var b bytes.Buffer
		if err := data.WriteCSV(&b, c.d); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b.Bytes())
		if got := hex.EncodeToString(sum[:]); b.Len() != c.size || got != c.hash {
			t.Errorf("%s: %d bytes sha256 %s, pinned %d bytes %s", c.name, b.Len(), got, c.size, c.hash)
		}
	}
}
