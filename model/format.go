package model

import (
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
