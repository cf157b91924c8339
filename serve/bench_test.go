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

// benchHandler measures the handler as the fasthttp server runs it, the
// body already read: routing, decode, predict, encode, metrics.
func benchHandler(b *testing.B, path, payload string) {
	m := testModel(b)
	s, err := serve.New(m, serve.WithRegistry(prometheus.NewRegistry()))
	if err != nil {
		b.Fatal(err)
	}
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(http.MethodPost)
	ctx.Request.SetRequestURI(path)
	ctx.Request.Header.SetContentType("application/json")
	body := []byte(payload)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		ctx.Request.SetBody(body)
		ctx.Response.Reset()
		s.HandleFastHTTP(&ctx)
		if ctx.Response.StatusCode() != http.StatusOK {
			b.Fatalf("code %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

// instances is {"instances": [n rows]} of the first test row.
func instances(b *testing.B, n int) string {
	row := mustJSON(b, rows[0])
	return `{"instances":[` + strings.Repeat(row+",", n-1) + row + `]}`
}

// v2Body is an inference request of n rows: one [n, 10] FP64 input,
// nested by row, as numpy's tolist() writes it.
func v2Body(b *testing.B, n int) string {
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
