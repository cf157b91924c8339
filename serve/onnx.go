package serve

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"os"
	"path/filepath"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/model/onnx"
)

// onnxModel is an ONNX model with what modelci recorded beside it.
type onnxModel struct {
	m    *onnx.Model
	info *model.ONNXInfo
}

// LoadONNX reads dir/model.onnx and dir/modelci.json and checks that they
// agree: an operator the interpreter lacks, or an input wider or narrower
// than the recorded features, is refused here, never at request time.
func LoadONNX(dir string) (*onnx.Model, *model.ONNXInfo, error) {
	b, err := os.ReadFile(filepath.Join(dir, model.ONNXFileName))
	if err != nil {
		return nil, nil, fmt.Errorf("load model: %w", err)
	}
	m, err := onnx.Load(b)
	if err != nil {
		return nil, nil, fmt.Errorf("load model %s: %w", filepath.Join(dir, model.ONNXFileName), err)
	}
	ib, err := os.ReadFile(filepath.Join(dir, model.ONNXInfoFileName))
	if err != nil {
		return nil, nil, fmt.Errorf("load model: %w (modelci writes it beside %s)", err, model.ONNXFileName)
	}
	info, err := model.DecodeONNXInfo(ib)
	if err != nil {
		return nil, nil, fmt.Errorf("load model %s: %w", filepath.Join(dir, model.ONNXInfoFileName), err)
	}
	if _, f := m.Input(); f != 0 && f != len(info.Features) {
		return nil, nil, fmt.Errorf("load model %s: its input takes %d features, %s names %d: %w", filepath.Join(dir, model.ONNXFileName), f, model.ONNXInfoFileName, len(info.Features), onnx.ErrSignature)
	}
	return m, info, nil
}

// NewONNX returns a server for an ONNX model: /predict takes rows of raw
// numbers in info.Features' order (preprocessing is inside the model, so
// there is no /process_data).
func NewONNX(m *onnx.Model, info *model.ONNXInfo, opts ...Option) (*Server, error) {
	c := config{role: RoleAll}
	for _, o := range opts {
		o(&c)
	}
	if c.role == RolePreprocess {
		return nil, fmt.Errorf("serve model %q: %w: an ONNX model has its preprocessing inside; serve it with --role predict", info.Name, ErrRole)
	}
	s, err := newServer(nil, info.Name, info.Version, append(opts, WithRole(RolePredict))...)
	if err != nil {
		return nil, err
	}
	s.onnx = &onnxModel{m: m, info: info}
	s.v2 = newV2Model(info.Name, info.Version, nil, s.onnx)
	s.ready.Store(true)
	return s, nil
}

// Open loads the model in dir, model.json or model.onnx, and returns its
// server; the V2 model metadata carries the digest of dir's files
// (modelDigest).
func Open(dir string, opts ...Option) (*Server, error) {
	s, err := open(dir, opts...)
	if err != nil {
		return nil, err
	}
	if s.digest, err = modelDigest(dir); err != nil {
		return nil, err
	}
	return s, nil
}

func open(dir string, opts ...Option) (*Server, error) {
	_, err := os.Stat(filepath.Join(dir, model.FileName))
	if errors.Is(err, fs.ErrNotExist) {
		if _, oerr := os.Stat(filepath.Join(dir, model.ONNXFileName)); oerr == nil {
			m, info, err := LoadONNX(dir)
			if err != nil {
				return nil, err
			}
			return NewONNX(m, info, opts...)
		}
	}
	m, err := LoadModel(dir)
	if err != nil {
		return nil, err
	}
	return New(m, opts...)
}

// predictONNX is predictRows for an ONNX model: rows of numbers, run in
// float32.
func (s *Server) predictONNX(req request, buf *buffers) (int, string) {
	om := s.onnx
	p := len(om.info.Features)
	if cap(buf.x32) < len(req.x) {
		buf.x32 = make([]float32, len(req.x))
	}
	x := buf.x32[:len(req.x)]
	for i, v := range req.x {
		if v != v {
			return http.StatusBadRequest, cellError(req, i/p, i%p, om.info.Features[i%p])
		}
		x[i] = float32(v)
	}
	y, _, err := om.m.Run(x, req.rows, p)
	if err != nil {
		return http.StatusInternalServerError, err.Error()
	}
	if len(y) != req.rows {
		return http.StatusInternalServerError, fmt.Sprintf("the model answered %d values for %d rows; modelci serves one value per row", len(y), req.rows)
	}
	for i, v := range y {
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return http.StatusBadRequest, nonFinite(req, i, "prediction is", f)
		}
		buf.y[i] = f
	}
	return http.StatusOK, ""
}
