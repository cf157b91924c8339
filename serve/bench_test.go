package serve_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/modelci/modelci/serve"
)

// handler returns one request to the handler as the fasthttp server runs
// it, the body already read: routing, decode, predict, encode, metrics.
func handler(tb testing.TB, path, payload string) func() {
	m := testModel(tb)
	s, err := serve.New(m, serve.WithRegistry(prometheus.NewRegistry()))
	if err != nil {
		tb.Fatal(err)
	}
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(http.MethodPost)
	ctx.Request.SetRequestURI(path)
	ctx.Request.Header.SetContentType("application/json")
	body := []byte(payload)
	return func() {
		ctx.Request.SetBody(body)
		ctx.Response.Reset()
		s.HandleFastHTTP(&ctx)
		if ctx.Response.StatusCode() != http.StatusOK {
			tb.Fatalf("%s: code %d: %s", path, ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

func benchHandler(b *testing.B, path, payload string) {
	run := handler(b, path, payload)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		run()
	}
}

// The common shapes of every prediction route take the hand-written path
// and allocate nothing per request, once the pools are warm (docs/serving.md
// promises it; the benchmarks show it, this makes it fail).
func TestFastPathsAllocateNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector drops pooled buffers at random")
	}
	row := mustJSON(t, rows[0])
	for _, tc := range []struct{ path, body string }{
		{"/predict", instances(t, 1)},
		{"/predict", instances(t, 32)},
		{"/predict", `{"input":` + row + `}`},
		{"/predict", `{"input":[` + row + `,` + row + `]}`},
		{"/process_data", instances(t, 32)},
		{"/v1/models/diabetes:predict", instances(t, 32)},
		{"/v2/models/diabetes/infer", v2Body(t, 1)},
		{"/v2/models/diabetes/infer", v2Body(t, 32)},
		{"/v2/models/diabetes/versions/1.2.3/infer", v2Body(t, 32)},
		{"/v2/models/diabetes/infer", `{"inputs":[{"name":"input","shape":[1,10],"datatype":"FP64","data":` + row + `}]}`},
	} {
		run := handler(t, tc.path, tc.body)
		if n := testing.AllocsPerRun(50, run); n != 0 {
			t.Errorf("%s %.60s…: %v allocations per request, want 0", tc.path, tc.body, n)
		}
	}
}

// instances is {"instances": [n rows]} of the first test row.
func instances(b testing.TB, n int) string {
	row := mustJSON(b, rows[0])
	return `{"instances":[` + strings.Repeat(row+",", n-1) + row + `]}`
}

// v2Body is an inference request of n rows: one [n, 10] FP64 input,
// nested by row, as numpy's tolist() writes it.
func v2Body(b testing.TB, n int) string {
	row := mustJSON(b, rows[0])
	return `{"id":"bench","inputs":[{"name":"input","shape":[` + itoa(n) + `,10],"datatype":"FP64","data":[` +
		strings.Repeat(row+",", n-1) + row + `]}]}`
}

func itoa(n int) string { return strconv.Itoa(n) }

func BenchmarkPredict1(b *testing.B)      { benchHandler(b, "/predict", instances(b, 1)) }
func BenchmarkPredict32(b *testing.B)     { benchHandler(b, "/predict", instances(b, 32)) }
func BenchmarkProcessData32(b *testing.B) { benchHandler(b, "/process_data", instances(b, 32)) }
func BenchmarkV2Infer1(b *testing.B)      { benchHandler(b, "/v2/models/diabetes/infer", v2Body(b, 1)) }
func BenchmarkV2Infer32(b *testing.B)     { benchHandler(b, "/v2/models/diabetes/infer", v2Body(b, 32)) }
func BenchmarkV1Predict32(b *testing.B) {
	benchHandler(b, "/v1/models/diabetes:predict", instances(b, 32))
}
