package serve

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"strconv"
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/modelci/modelci/model"
)

// Each endpoint returns the status it wrote, so metrics need no wrapping
// of the response on the hot path.

func allowed(ctx *fasthttp.RequestCtx, methods ...string) bool {
	m := ctx.Method()
	for _, want := range methods {
		if string(m) == want {
			return true
		}
	}
	allow := methods[0]
	for _, want := range methods[1:] {
		allow += ", " + want
	}
	ctx.Response.Header.Set("Allow", allow)
	return false
}

func (s *Server) methodNotAllowed(ctx *fasthttp.RequestCtx) int {
	return s.writeError(ctx, http.StatusMethodNotAllowed, "method "+string(ctx.Method())+" not allowed")
}

// Probe answers: /healthz, /readyz and MLflow's /ping answer
// {"status":"ok"} or 503 {"error":"not ready"}; the V2 health routes
// {"live":true} and {"ready":true} or 503 {"ready":false}.
const (
	bodyOK       = `{"status":"ok"}` + "\n"
	bodyLive     = `{"live":true}` + "\n"
	bodyReady    = `{"ready":true}` + "\n"
	bodyNotReady = `{"ready":false}` + "\n"
)

func (s *Server) handleProbe(ctx *fasthttp.RequestCtx, rt route, ok bool) int {
	if !allowed(ctx, http.MethodGet, http.MethodHead) {
		return s.methodNotAllowed(ctx)
	}
	switch {
	case rt == routeV2Live:
		return writeOKString(ctx, bodyLive)
	case rt == routeV2Ready && ok:
		return writeOKString(ctx, bodyReady)
	case rt == routeV2Ready:
		ctx.Response.Header.SetContentType(contentTypeJSON[0])
		ctx.SetStatusCode(http.StatusServiceUnavailable)
		ctx.SetBodyString(bodyNotReady)
		return http.StatusServiceUnavailable
	case !ok:
		return s.writeError(ctx, http.StatusServiceUnavailable, "not ready")
	}
	return writeOKString(ctx, bodyOK)
}

func (s *Server) handleMetrics(ctx *fasthttp.RequestCtx) int {
	if !allowed(ctx, http.MethodGet, http.MethodHead) {
		return s.methodNotAllowed(ctx)
	}
	s.metricsF(ctx)
	return ctx.Response.StatusCode()
}

// serveMetricsHTTP is /metrics for ServeHTTP.
func (s *Server) serveMetricsHTTP(w http.ResponseWriter, r *http.Request) int {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		b, _ := errorJSON("method " + r.Method + " not allowed")
		w.Header()["Content-Type"] = contentTypeJSON
		w.WriteHeader(http.StatusMethodNotAllowed)
		w.Write(b)
		return http.StatusMethodNotAllowed
	}
	sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	s.metricsH.ServeHTTP(sw, r)
	return sw.code
}

// statusWriter records the status written by a handler we do not own.
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// buffers is the per-request scratch space, pooled so that the hot path
// allocates nothing.
type buffers struct {
	body []byte    // request body (ServeHTTP)
	x    []float64 // rows of raw features, row-major
	text []string  // v2 models: the text of features that are not numbers
	y    []float64 // predictions or processed rows
	z    []float64 // v2 models: one processed row
	x32  []float32 // ONNX models: x as float32
	out  []byte    // response body
	v2   v2Scratch // V2 inference requests
}

var bufPool = sync.Pool{New: func() any { return new(buffers) }}

// maxPooled keeps one huge request from pinning its buffers in the pool.
const maxPooled = 1 << 20

func putBuffers(b *buffers) {
	if cap(b.body) > maxPooled || cap(b.out) > maxPooled || cap(b.x) > maxPooled/8 || cap(b.y) > maxPooled/8 ||
		cap(b.text) > maxPooled/16 || cap(b.z) > maxPooled/8 || cap(b.x32) > maxPooled/4 || b.v2.large() {
		return
	}
	bufPool.Put(b)
}

var contentTypeJSON = []string{"application/json"}

// writeOK answers 200 with the JSON body out.
func writeOK(ctx *fasthttp.RequestCtx, out []byte) int {
	ctx.Response.Header.SetContentType(contentTypeJSON[0])
	ctx.SetBody(out)
	return http.StatusOK
}

func writeOKString(ctx *fasthttp.RequestCtx, out string) int {
	ctx.Response.Header.SetContentType(contentTypeJSON[0])
	ctx.SetBodyString(out)
	return http.StatusOK
}

// checkModelRequest checks what every model route (POST with a JSON body)
// needs before its body is decoded: the method, a loaded model, the
// content type and the body limit. It answers and returns false when one
// fails.
func (s *Server) checkModelRequest(ctx *fasthttp.RequestCtx, code *int) bool {
	if !allowed(ctx, http.MethodPost) {
		*code = s.methodNotAllowed(ctx)
		return false
	}
	if s.model == nil && s.onnx == nil {
		*code = s.writeError(ctx, http.StatusServiceUnavailable, "model not loaded")
		return false
	}
	if ct := ctx.Request.Header.ContentType(); len(ct) != 0 && string(ct) != "application/json" {
		if mt, _, err := mime.ParseMediaType(string(ct)); err != nil || mt != "application/json" {
			*code = s.writeError(ctx, http.StatusUnsupportedMediaType, "content type "+strconv.Quote(string(ct))+": want application/json")
			return false
		}
	}
	if n := len(ctx.PostBody()); int64(n) > s.maxBody {
		// Only for a server of the caller's: Serve's refuses it before.
		ctx.SetConnectionClose()
		*code = s.writeError(ctx, http.StatusRequestEntityTooLarge, "request body of "+strconv.Itoa(n)+" bytes exceeds the limit of "+strconv.FormatInt(s.maxBody, 10))
		return false
	}
	return true
}

// handleModel serves /predict (preprocess false) and /process_data.
func (s *Server) handleModel(ctx *fasthttp.RequestCtx, preprocess bool) int {
	var code int
	if !s.checkModelRequest(ctx, &code) {
		return code
	}
	buf := bufPool.Get().(*buffers)
	defer putBuffers(buf)
	body := ctx.PostBody()
	m := s.model
	var req request
	var err error
	switch {
	case s.onnx != nil:
		req, err = decodeRequest(body, s.onnx.info.Features, buf.x[:0])
		buf.x = req.x
	case m.Columns != nil:
		req, err = decodeCellsRequest(body, m.Features, buf.x[:0], buf.text[:0])
		buf.x, buf.text = req.x, req.text
	default:
		req, err = decodeRequest(body, m.Features, buf.x[:0])
		buf.x = req.x
	}
	if err != nil {
		return s.writeError(ctx, http.StatusBadRequest, err.Error())
	}
	if preprocess {
		return s.process(ctx, req, buf)
	}
	if code, msg := s.predictRows(req, buf); code != http.StatusOK {
		return s.writeError(ctx, code, msg)
	}
	buf.out = encodePredictions(buf.out[:0], req, buf.y)
	s.metrics.predicted(buf.y[:req.rows])
	return writeOK(ctx, buf.out)
}

// process answers /process_data: the rows the weights apply to.
func (s *Server) process(ctx *fasthttp.RequestCtx, req request, buf *buffers) int {
	m := s.model
	p := len(m.Features)
	if m.Columns == nil {
		buf.y = growFloats(buf.y, len(req.x))
		for i := range req.rows {
			row := m.Standardize(buf.y[i*p:(i+1)*p], req.x[i*p:(i+1)*p])
			for j, v := range row {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					return s.writeError(ctx, http.StatusBadRequest, nonFinite(req, i, "feature "+m.Features[j]+" standardises to", v))
				}
			}
		}
		buf.out = encodeProcessed(buf.out[:0], req, m.Features, buf.y)
		return writeOK(ctx, buf.out)
	}
	q := m.NumInputs()
	buf.y = growFloats(buf.y, req.rows*q)
	for i := range req.rows {
		z, err := m.Process(buf.y[i*q:(i+1)*q], req.x[i*p:(i+1)*p], rowText(req, i, p))
		if err != nil {
			return s.writeError(ctx, http.StatusBadRequest, instanceName(req, i)+": "+err.Error())
		}
		for k, v := range z {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return s.writeError(ctx, http.StatusBadRequest, nonFinite(req, i, "feature "+m.InputName(k)+" standardises to", v))
			}
		}
	}
	buf.out = encodeProcessedCells(buf.out[:0], req, m, buf.y)
	return writeOK(ctx, buf.out)
}

// rowText is row i's text cells, nil when the request had none.
func rowText(req request, i, p int) []string {
	if req.text == nil {
		return nil
	}
	return req.text[i*p : (i+1)*p]
}

func hasNaN(x []float64) bool {
	for _, v := range x {
		if v != v {
			return true
		}
	}
	return false
}

// predictRows writes one prediction per row of req into buf.y, the same
// way for every route, so that every protocol answers /predict's numbers.
// A row the model cannot take is a 400 with a message naming it; an ONNX
// model that fails is a 500.
func (s *Server) predictRows(req request, buf *buffers) (int, string) {
	buf.y = growFloats(buf.y, req.rows)
	if s.onnx != nil {
		return s.predictONNX(req, buf)
	}
	m := s.model
	p := len(m.Features)
	if m.Columns == nil && req.text == nil {
		// linear/v1 rows of numbers, as they always were: bit for bit.
		for i := range req.rows {
			y := m.Predict(req.x[i*p : (i+1)*p])
			if math.IsNaN(y) || math.IsInf(y, 0) {
				return http.StatusBadRequest, nonFinite(req, i, "prediction is", y)
			}
			buf.y[i] = y
		}
		return http.StatusOK, ""
	}
	buf.z = growFloats(buf.z, m.NumInputs())
	for i := range req.rows {
		row := req.x[i*p : (i+1)*p]
		var y float64
		if m.Columns == nil && !hasNaN(row) {
			y = m.Predict(row)
		} else {
			z, err := m.Process(buf.z, row, rowText(req, i, p))
			if err != nil {
				return http.StatusBadRequest, instanceName(req, i) + ": " + err.Error()
			}
			y = m.Score(z)
		}
		if math.IsNaN(y) || math.IsInf(y, 0) {
			return http.StatusBadRequest, nonFinite(req, i, "prediction is", y)
		}
		buf.y[i] = y
	}
	return http.StatusOK, ""
}

func nonFinite(req request, i int, what string, v float64) string {
	return instanceName(req, i) + ": " + what + " " + strconv.FormatFloat(v, 'g', -1, 64) + "; inputs out of range"
}

func growFloats(b []float64, n int) []float64 {
	if cap(b) < n {
		return make([]float64, n)
	}
	return b[:n]
}

var errTooLarge = errors.New("request body too large")

// readBody appends the body to dst, reading at most limit bytes, without the
// per-request allocation of http.MaxBytesReader.
func readBody(dst []byte, body io.Reader, contentLength, limit int64) ([]byte, error) {
	if contentLength > limit {
		return dst, errTooLarge
	}
	if contentLength > 0 && int64(cap(dst)) < contentLength+1 {
		// One byte more than announced, so that EOF is seen without growing.
		dst = make([]byte, 0, contentLength+1)
	} else if cap(dst) == 0 {
		dst = make([]byte, 0, 4096)
	}
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := body.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if int64(len(dst)) > limit {
			return dst, errTooLarge
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

func errorJSON(msg string) ([]byte, error) {
	b, err := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	return append(b, '\n'), err
}

// writeError answers {"error": msg} and logs client errors at debug level.
func (s *Server) writeError(ctx *fasthttp.RequestCtx, code int, msg string) int {
	b, _ := errorJSON(msg)
	ctx.Response.Header.SetContentType(contentTypeJSON[0])
	ctx.SetStatusCode(code)
	ctx.SetBody(b)
	level := slog.LevelDebug
	if code >= 500 && code != http.StatusServiceUnavailable {
		level = slog.LevelError
	}
	if s.log.Enabled(context.Background(), level) {
		s.log.LogAttrs(context.Background(), level, "request failed",
			slog.String("method", string(ctx.Method())), slog.String("path", string(ctx.Path())),
			slog.Int("code", code), slog.String("error", msg))
	}
	return code
}

// cellError words a cell a model without imputation cannot take.
func cellError(req request, i, j int, name string) string {
	p := len(req.x) / max(req.rows, 1)
	e := &model.CellError{Feature: j, Name: name, Err: model.ErrNoImputation}
	if t := rowText(req, i, p); t != nil && t[j] != "" {
		e.Value, e.Err = t[j], model.ErrNotNumber
	}
	return instanceName(req, i) + ": " + e.Error()
}
