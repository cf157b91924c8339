package onnx

import "errors"

// Sentinel errors. Every error returned by this package wraps exactly one of
// them (test with errors.Is); the message around it names the offending item:
// the node, operator, attribute, value or opset.
var (
	// ErrMalformed means the bytes are not a well-formed ONNX model: a
	// protobuf field cannot be decoded, has an unexpected wire type, or a
	// tensor's data does not match its dims.
	ErrMalformed = errors.New("malformed model")

	// ErrOpset means the model's default-domain ("" or "ai.onnx") opset is
	// missing or outside MinOpset..MaxOpset. The message names the version.
	ErrOpset = errors.New("unsupported opset")

	// ErrUnsupportedOp means a node's operator is not implemented at the
	// model's opset, or belongs to another domain. The message names the
	// operator type, the node and the opset; the image build shows it to
	// the user when it refuses a model.
	ErrUnsupportedOp = errors.New("unsupported operator")

	// ErrUnsupportedAttribute means a node carries an attribute this
	// interpreter does not understand, of the wrong type, or with a value it
	// does not implement (for example Reshape allowzero=1).
	ErrUnsupportedAttribute = errors.New("unsupported attribute")

	// ErrExternalData means a tensor keeps its data outside the model file
	// (external_data or data_location=EXTERNAL); only self-contained models
	// are served.
	ErrExternalData = errors.New("external data")

	// ErrDataType means a tensor or a graph value has an element type other
	// than FLOAT and INT64 (the only two this interpreter computes with), or
	// a Cast targets another type.
	ErrDataType = errors.New("unsupported data type")

	// ErrInvalidNode means a node is not well formed: wrong number of inputs
	// or outputs, an omitted required input, or an output name that is
	// already defined.
	ErrInvalidNode = errors.New("invalid node")

	// ErrUndefined means a node or the graph output uses a value that no
	// graph input, initializer or earlier node defines.
	ErrUndefined = errors.New("undefined value")

	// ErrSignature means the graph is not what the model server serves:
	// exactly one non-initializer input, a FLOAT tensor of rank 2
	// [batch, features], and exactly one FLOAT output.
	ErrSignature = errors.New("unsupported graph signature")

	// ErrInput means the arguments to Run do not fit the model's input:
	// len(x) != rows*features, a non-positive row count, or a feature count
	// (or fixed batch size) other than the model's.
	ErrInput = errors.New("invalid model input")

	// ErrEval means a node could not be evaluated on the values it was
	// given at run time: shapes or element types that do not fit, an index
	// out of range, an integer division by zero, or a tensor larger than
	// MaxElements or of rank above 32.
	ErrEval = errors.New("evaluation failed")
)
