package serve_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelci/modelci/serve"
)

// rewindBody replays one payload without allocating per request.
type rewindBody struct{ bytes.Reader }

func (*rewindBody) Close() error { return nil }

// benchHandler measures the handler alone: decode, predict, encode, metrics.
func benchHandler(b *testing.B, path string, instances int) {
	m := testModel(b)
	s, err := serve.New(m, serve.WithRegistry(prometheus.NewRegistry()))
	if err != nil {
		b.Fatal(err)
	}
	row := mustJSON(b, rows[0])
	payload := []byte(`{"instances":[` + strings.Repeat(row+",", instances-1) + row + `]}`)
	body := &rewindBody{}
	req := httptest.NewRequest(http.MethodPost, path, body)
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = int64(len(payload))
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		body.Reset(payload)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("code %d: %s", rec.Code, rec.Body)
		}
	}
}

func BenchmarkPredict1(b *testing.B)      { benchHandler(b, "/predict", 1) }
func BenchmarkPredict32(b *testing.B)     { benchHandler(b, "/predict", 32) }
func BenchmarkProcessData32(b *testing.B) { benchHandler(b, "/process_data", 32) }
