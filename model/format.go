package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Model formats that modelci's own runtime serves (train.format).
const (
	// FormatLinear is the built-in model document, FileName.
	FormatLinear = "linear"
	// FormatONNX is an ONNX model, ONNXFileName, run by model/onnx.
	FormatONNX = "onnx"
)

// ONNXFileName is an ONNX model's name inside a model directory.
const ONNXFileName = "model.onnx"

// Formats lists the formats in the order docs and errors name them.
var Formats = []string{FormatLinear, FormatONNX}

// ErrFormat means a format modelci's runtime does not serve.
var ErrFormat = errors.New("unknown model format")

// FormatFile is the file a model directory of format holds.
func FormatFile(format string) (string, error) {
	switch format {
	case FormatLinear:
		return FileName, nil
	case FormatONNX:
		return ONNXFileName, nil
	}
	return "", fmt.Errorf("%w %q (have: %s, %s)", ErrFormat, format, FormatLinear, FormatONNX)
}

// ONNXInfoFileName is the document modelci writes beside model.onnx: what
// the ONNX file does not say of the model.
const ONNXInfoFileName = "modelci.json"

// ONNXInfoSchema identifies ONNXInfo.
const ONNXInfoSchema = "modelci.dev/model/onnx-info/v1"

// ONNXInfo names an ONNX model and the features its one input takes, in
// order: the data set's columns but the target, as the trainer saw them.
type ONNXInfo struct {
	Schema   string   `json:"schema"`
	Name     string   `json:"name"`
	Version  string   `json:"version"`
	Features []string `json:"features"`
	Target   string   `json:"target"`
}

// ErrONNXInfo means a missing or invalid ONNXInfo document.
var ErrONNXInfo = errors.New("invalid onnx info")

// DecodeONNXInfo decodes and checks an ONNXInfo document.
func DecodeONNXInfo(b []byte) (*ONNXInfo, error) {
	var in ONNXInfo
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrONNXInfo, err)
	}
	switch {
	case in.Schema != ONNXInfoSchema:
		return nil, fmt.Errorf("%w: schema %q, want %s", ErrONNXInfo, in.Schema, ONNXInfoSchema)
	case in.Name == "" || in.Version == "":
		return nil, fmt.Errorf("%w: no name or version", ErrONNXInfo)
	case len(in.Features) == 0:
		return nil, fmt.Errorf("%w: no features", ErrONNXInfo)
	}
	seen := map[string]bool{}
	for _, f := range in.Features {
		if f == "" || seen[f] {
			return nil, fmt.Errorf("%w: feature %q is empty or repeated", ErrONNXInfo, f)
		}
		seen[f] = true
	}
	return &in, nil
}

// Encode returns the document as indented JSON, newline-terminated.
func (in *ONNXInfo) Encode() ([]byte, error) {
	c := *in
	c.Schema = ONNXInfoSchema
	b, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
