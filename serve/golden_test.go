package serve_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelci/modelci/serve"
)

// TestGoldenV1Responses replays requests against testdata/model.json (a
// linear/v1 document) over HTTP and compares every status and body byte for byte
// with what the server at commit 2e4f2ec answered (the golden file was
// written by that commit's code): numeric models serve as before.
func TestGoldenV1Responses(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "v1-responses.golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var golden []struct {
		Route, Body string
		Code        int
		Response    string
	}
	if err := json.Unmarshal(b, &golden); err != nil {
		t.Fatal(err)
	}
	s, err := serve.New(testModel(t), serve.WithRegistry(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	url := serveHTTP(t, s)
	for i, g := range golden {
		r := do(t, "POST", url+g.Route, "", strings.NewReader(g.Body))
		if r.code != g.Code || r.raw != g.Response {
			t.Errorf("%d: POST %s %.60s…: %d %.200s\nwant %d %.200s", i, g.Route, g.Body, r.code, r.raw, g.Code, g.Response)
		}
	}
}
