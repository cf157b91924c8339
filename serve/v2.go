package serve

import (
	"encoding/json"
	"net/http"
	"runtime/debug"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/modelci/modelci/model"
)

// version is modelci's version, which GET /v2 names; releases set it with
// -ldflags "-X github.com/modelci/modelci/serve.version=v1.2.3".
var version = ""

// serverVersion is the linker's version, else the module's, else "(devel)".
func serverVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// Platforms the V2 model metadata names.
const (
	platformLinear = "modelci-linear"
	platformONNX   = "onnx"
)

// The built-in model's tensor names; an ONNX model's are its graph's.
const (
	linearInput  = "input"
	linearOutput = "prediction"
)

// v2Model is what the V2 routes say of the model, worked out once.
type v2Model struct {
	sig      v2Sig
	platform string
	inType   string // the [rows, features] input's datatype
	outType  string // FP64, or FP32 for ONNX
	head     []byte // {"model_name":…,"model_version":…
	outHead  []byte // ,"outputs":[{"name":…,"shape":[
	dataHead []byte // ],"datatype":…,"data":[
}

func newV2Model(name, ver string, m *model.Linear, om *onnxModel) *v2Model {
	v := &v2Model{platform: platformLinear, outType: dtFP64, inType: dtFP64}
	switch {
	case om != nil:
		in, _ := om.m.Input()
		v.sig = v2Sig{features: om.info.Features, input: in, output: om.m.Output()}
		v.platform, v.inType, v.outType = platformONNX, dtFP32, dtFP32
	case m != nil:
		v.sig = v2Sig{features: m.Features, input: linearInput, output: linearOutput}
		for _, c := range m.Columns {
			if c.Kind == model.KindCategory {
				v.inType = dtBYTES
			}
		}
	default:
		return v
	}
	v.head = append(append(append([]byte(`{"model_name":`), quote(name)...), `,"model_version":`...), quote(ver)...)
	v.outHead = append(append([]byte(`,"outputs":[{"name":`), quote(v.sig.output)...), `,"shape":[`...)
	v.dataHead = []byte(`],"datatype":"` + v.outType + `","data":[`)
	return v
}

func quote(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}

// encodeV2 writes the inference response for predictions y.
func (v *v2Model) encode(b, id []byte, y []float64) []byte {
	b = append(b, v.head...)
	if id != nil {
		b = append(b, `,"id":`...)
		b = append(b, id...)
	}
	b = append(b, v.outHead...)
	b = strconv.AppendInt(b, int64(len(y)), 10)
	b = append(b, v.dataHead...)
	for i, f := range y {
		if i > 0 {
			b = append(b, ',')
		}
		if v.outType == dtFP32 {
			b = appendFloat32(b, float32(f))
		} else {
			b = appendFloat(b, f)
		}
	}
	return append(b, "]}]}\n"...)
}

// checkTarget answers 404 unless the path names the served model (and,
// when it names a version, the model's version).
func (s *Server) checkTarget(ctx *fasthttp.RequestCtx, t target) (int, bool) {
	if string(t.name) != s.name {
		return s.writeError(ctx, http.StatusNotFound, "no model "+strconv.Quote(string(t.name))+"; this server serves "+strconv.Quote(s.name)), false
	}
	if t.version != nil && string(t.version) != s.version {
		return s.writeError(ctx, http.StatusNotFound, "model "+strconv.Quote(s.name)+" has no version "+strconv.Quote(string(t.version))+"; it is version "+strconv.Quote(s.version)), false
	}
	return 0, true
}

// handleV2Infer serves POST /v2/models/{name}[/versions/{v}]/infer.
func (s *Server) handleV2Infer(ctx *fasthttp.RequestCtx, t target) int {
	var code int
	if !s.checkModelRequest(ctx, &code) {
		return code
	}
	if code, ok := s.checkTarget(ctx, t); !ok {
		return code
	}
	buf := bufPool.Get().(*buffers)
	defer putBuffers(buf)
	d, err := decodeV2(ctx.PostBody(), &s.v2.sig, &buf.v2, buf.x[:0], buf.text[:0])
	if cap(d.req.x) > cap(buf.x) {
		buf.x = d.req.x
	}
	if cap(d.req.text) > cap(buf.text) {
		buf.text = d.req.text
	}
	if err != nil {
		return s.writeError(ctx, http.StatusBadRequest, err.Error())
	}
	if code, msg := s.predictRows(d.req, buf); code != http.StatusOK {
		return s.writeError(ctx, code, msg)
	}
	buf.out = s.v2.encode(buf.out[:0], d.id, buf.y[:d.req.rows])
	s.metrics.predicted(buf.y[:d.req.rows])
	return writeOK(ctx, buf.out)
}

// getModel checks a GET of a model route: the method, a loaded model, the
// name and version.
func (s *Server) getModel(ctx *fasthttp.RequestCtx, t target) (int, bool) {
	if !allowed(ctx, http.MethodGet, http.MethodHead) {
		return s.methodNotAllowed(ctx), false
	}
	if s.name == "" {
		return s.writeError(ctx, http.StatusServiceUnavailable, "model not loaded"), false
	}
	return s.checkTarget(ctx, t)
}

// handleModelReady serves GET /v2/models/{name}[/versions/{v}]/ready and
// KServe V1's GET /v1/models/{name}: {"name": …, "ready": true}, or 503
// with "ready": false while the server is not ready.
func (s *Server) handleModelReady(ctx *fasthttp.RequestCtx, t target) int {
	if code, ok := s.getModel(ctx, t); !ok {
		return code
	}
	ready := s.ready.Load()
	b, _ := json.Marshal(struct {
		Name  string `json:"name"`
		Ready bool   `json:"ready"`
	}{s.name, ready})
	ctx.Response.Header.SetContentType(contentTypeJSON[0])
	code := http.StatusOK
	if !ready {
		code = http.StatusServiceUnavailable
	}
	ctx.SetStatusCode(code)
	ctx.SetBody(append(b, '\n'))
	return code
}

// handleV2Server serves GET /v2, the server metadata.
func (s *Server) handleV2Server(ctx *fasthttp.RequestCtx) int {
	if !allowed(ctx, http.MethodGet, http.MethodHead) {
		return s.methodNotAllowed(ctx)
	}
	b, _ := json.Marshal(struct {
		Name       string   `json:"name"`
		Version    string   `json:"version"`
		Extensions []string `json:"extensions"`
	}{"modelci", serverVersion(), []string{}})
	return writeOK(ctx, append(b, '\n'))
}

// Model metadata documents.
type (
	v2Tensor struct {
		Name     string `json:"name"`
		Datatype string `json:"datatype"`
		Shape    []int  `json:"shape"`
	}
	v2Feature struct {
		Name       string   `json:"name"`
		Type       string   `json:"type"` // number or category
		Datatype   string   `json:"datatype"`
		Shape      []int    `json:"shape"`
		Categories []string `json:"categories,omitempty"`
	}
	v2Metadata struct {
		Name     string      `json:"name"`
		Versions []string    `json:"versions"`
		Platform string      `json:"platform"`
		Inputs   []v2Tensor  `json:"inputs"`
		Outputs  []v2Tensor  `json:"outputs"`
		Version  string      `json:"version"`
		Digest   string      `json:"digest,omitempty"`
		Features []v2Feature `json:"features"`
	}
)

// metadata is the model metadata: the protocol's fields, then modelci's:
// the version, the digest of the model's files (modelDigest) and the
// features, each with its kind and the per-feature input it takes.
func (s *Server) metadata() v2Metadata {
	v := s.v2
	md := v2Metadata{
		Name:     s.name,
		Versions: []string{s.version},
		Platform: v.platform,
		Inputs:   []v2Tensor{{Name: v.sig.input, Datatype: v.inType, Shape: []int{-1, len(v.sig.features)}}},
		Outputs:  []v2Tensor{{Name: v.sig.output, Datatype: v.outType, Shape: []int{-1}}},
		Version:  s.version,
		Digest:   s.digest,
	}
	for j, f := range v.sig.features {
		ft := v2Feature{Name: f, Type: model.KindNumber, Datatype: v.outType, Shape: []int{-1}}
		if s.model != nil && s.model.Columns != nil && s.model.Columns[j].Kind == model.KindCategory {
			ft.Type, ft.Datatype, ft.Categories = model.KindCategory, dtBYTES, s.model.Columns[j].Categories
		}
		md.Features = append(md.Features, ft)
	}
	return md
}

// handleV2Metadata serves GET /v2/models/{name}[/versions/{v}].
func (s *Server) handleV2Metadata(ctx *fasthttp.RequestCtx, t target) int {
	if code, ok := s.getModel(ctx, t); !ok {
		return code
	}
	b, _ := json.Marshal(s.metadata())
	return writeOK(ctx, append(b, '\n'))
}
