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
	"time"

	"github.com/modelci/modelci/model"
)

// Route labels for metrics; unknown paths share one label to bound cardinality.
const (
	routePredict = "/predict"
	routeProcess = "/process_data"
	routeHealthz = "/healthz"
	routeReadyz  = "/readyz"
	routeMetrics = "/metrics"
	routeOther   = "other"
)

// ServeHTTP routes a request. Each endpoint returns the status it wrote, so
// metrics need no wrapping ResponseWriter on the hot path.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	route := routeOther
	var code int
	switch r.URL.Path {
	case routePredict:
		if s.role.predicts() {
			route = routePredict
			code = s.handleModel(w, r, false)
		}
	case routeProcess:
		if s.role.preprocesses() {
			route = routeProcess
			code = s.handleModel(w, r, true)
		}
	case routeHealthz:
		route = routeHealthz
		code = s.handleProbe(w, r, true)
	case routeReadyz:
		route = routeReadyz
		code = s.handleProbe(w, r, s.ready.Load())
	case routeMetrics:
		route = routeMetrics
		code = s.handleMetrics(w, r)
	}
	if route == routeOther {
		code = s.writeError(w, r, http.StatusNotFound, "no route for "+r.URL.Path)
	}
	s.metrics.observe(route, code, time.Since(start))
}

func allowed(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	allow := methods[0]
	for _, m := range methods[1:] {
		allow += ", " + m
	}
	w.Header().Set("Allow", allow)
	return false
}

func (s *Server) handleProbe(w http.ResponseWriter, r *http.Request, ok bool) int {
	if !allowed(w, r, http.MethodGet, http.MethodHead) {
		return s.writeError(w, r, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
	}
	if !ok {
		return s.writeError(w, r, http.StatusServiceUnavailable, "not ready")
	}
	w.Header()["Content-Type"] = contentTypeJSON
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, `{"status":"ok"}`+"\n")
	return http.StatusOK
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) int {
	if !allowed(w, r, http.MethodGet, http.MethodHead) {
		return s.writeError(w, r, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
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
// allocates next to nothing.
type buffers struct {
	body []byte    // request body
	x    []float64 // rows of raw features, row-major
	text []string  // v2 models: the text of features that are not numbers
	y    []float64 // predictions or processed rows
	z    []float64 // v2 models: one processed row
	out  []byte    // response body
}

var bufPool = sync.Pool{New: func() any { return new(buffers) }}

// maxPooled keeps one huge request from pinning its buffers in the pool.
const maxPooled = 1 << 20

func putBuffers(b *buffers) {
	if cap(b.body) > maxPooled || cap(b.out) > maxPooled || cap(b.x) > maxPooled/8 || cap(b.y) > maxPooled/8 ||
		cap(b.text) > maxPooled/16 || cap(b.z) > maxPooled/8 {
		return
	}
	bufPool.Put(b)
}

var contentTypeJSON = []string{"application/json"}

// writeOK answers 200 with the JSON body out.
func writeOK(w http.ResponseWriter, out []byte) int {
	w.Header()["Content-Type"] = contentTypeJSON
	w.WriteHeader(http.StatusOK)
	w.Write(out)
	return http.StatusOK
}

// handleModel serves /predict (preprocess false) and /process_data.
func (s *Server) handleModel(w http.ResponseWriter, r *http.Request, preprocess bool) int {
	if !allowed(w, r, http.MethodPost) {
		return s.writeError(w, r, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
	}
	m := s.model
	if m == nil && s.onnx == nil {
		return s.writeError(w, r, http.StatusServiceUnavailable, "model not loaded")
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != "application/json" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return s.writeError(w, r, http.StatusUnsupportedMediaType, "content type "+strconv.Quote(ct)+": want application/json")
		}
	}
	if r.ContentLength > s.maxBody {
		w.Header().Set("Connection", "close")
		return s.writeError(w, r, http.StatusRequestEntityTooLarge, "request body of "+strconv.FormatInt(r.ContentLength, 10)+" bytes exceeds the limit of "+strconv.FormatInt(s.maxBody, 10))
	}

	buf := bufPool.Get().(*buffers)
	defer putBuffers(buf)
	var err error
	buf.body, err = readBody(buf.body[:0], r.Body, r.ContentLength, s.maxBody)
	if errors.Is(err, errTooLarge) {
		// Closing spares the server from draining the rest of the body.
		w.Header().Set("Connection", "close")
		return s.writeError(w, r, http.StatusRequestEntityTooLarge, "request body exceeds the limit of "+strconv.FormatInt(s.maxBody, 10)+" bytes")
	}
	if err != nil {
		return s.writeError(w, r, http.StatusBadRequest, "read request body: "+err.Error())
	}

	if s.onnx != nil {
		return s.handleONNX(w, r, buf)
	}
	if m.Columns != nil {
		return s.handleCells(w, r, m, buf, preprocess)
	}
	req, err := decodeRequest(buf.body, m.Features, buf.x[:0])
	buf.x = req.x
	if err != nil {
		return s.writeError(w, r, http.StatusBadRequest, err.Error())
	}
	p := len(m.Features)
	out := buf.out[:0]
	if preprocess {
		buf.y = growFloats(buf.y, len(req.x))
		for i := range req.rows {
			row := m.Standardize(buf.y[i*p:(i+1)*p], req.x[i*p:(i+1)*p])
			for j, v := range row {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					return s.writeError(w, r, http.StatusBadRequest, nonFinite(req, i, "feature "+m.Features[j]+" standardises to", v))
				}
			}
		}
		out = encodeProcessed(out, req, m.Features, buf.y)
	} else {
		buf.y = growFloats(buf.y, req.rows)
		for i := range req.rows {
			y := m.Predict(req.x[i*p : (i+1)*p])
			if math.IsNaN(y) || math.IsInf(y, 0) {
				return s.writeError(w, r, http.StatusBadRequest, nonFinite(req, i, "prediction is", y))
			}
			buf.y[i] = y
		}
		out = encodePredictions(out, req, buf.y)
		s.metrics.predictions.Add(float64(req.rows))
	}
	buf.out = out
	return writeOK(w, out)
}

// handleCells serves a linear/v2 model, whose requests carry raw cells
// (numbers, strings, nulls) and whose rows go through model.Process:
// /process_data answers the processed rows (imputed, one-hot encoded,
// standardised), /predict their scores.
func (s *Server) handleCells(w http.ResponseWriter, r *http.Request, m *model.Linear, buf *buffers, preprocess bool) int {
	req, err := decodeCellsRequest(buf.body, m.Features, buf.x[:0], buf.text[:0])
	buf.x, buf.text = req.x, req.text
	if err != nil {
		return s.writeError(w, r, http.StatusBadRequest, err.Error())
	}
	p, q := len(m.Features), m.NumInputs()
	rowText := func(i int) []string {
		if req.text == nil {
			return nil
		}
		return req.text[i*p : (i+1)*p]
	}
	out := buf.out[:0]
	if preprocess {
		buf.y = growFloats(buf.y, req.rows*q)
		for i := range req.rows {
			z, err := m.Process(buf.y[i*q:(i+1)*q], req.x[i*p:(i+1)*p], rowText(i))
			if err != nil {
				return s.writeError(w, r, http.StatusBadRequest, instanceName(req, i)+": "+err.Error())
			}
			for k, v := range z {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					return s.writeError(w, r, http.StatusBadRequest, nonFinite(req, i, "feature "+m.InputName(k)+" standardises to", v))
				}
			}
		}
		out = encodeProcessedCells(out, req, m, buf.y)
	} else {
		buf.y = growFloats(buf.y, req.rows)
		buf.z = growFloats(buf.z, q)
		for i := range req.rows {
			z, err := m.Process(buf.z, req.x[i*p:(i+1)*p], rowText(i))
			if err != nil {
				return s.writeError(w, r, http.StatusBadRequest, instanceName(req, i)+": "+err.Error())
			}
			y := m.Score(z)
			if math.IsNaN(y) || math.IsInf(y, 0) {
				return s.writeError(w, r, http.StatusBadRequest, nonFinite(req, i, "prediction is", y))
			}
			buf.y[i] = y
		}
		out = encodePredictions(out, req, buf.y)
		s.metrics.predictions.Add(float64(req.rows))
	}
	buf.out = out
	return writeOK(w, out)
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

// writeError answers {"error": msg} and logs client errors at debug level.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, code int, msg string) int {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	w.Header()["Content-Type"] = contentTypeJSON
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
	level := slog.LevelDebug
	if code >= 500 && code != http.StatusServiceUnavailable {
		level = slog.LevelError
	}
	if s.log.Enabled(context.Background(), level) {
		s.log.LogAttrs(r.Context(), level, "request failed",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("code", code), slog.String("error", msg))
	}
	return code
}
