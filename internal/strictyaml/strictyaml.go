// Package strictyaml decodes YAML into Go structs strictly: an unknown key,
// a value of the wrong type, a duplicate key or a missing required field is
// an error that names the key's path and its line. Struct fields are matched
// by their `yaml` tag; a field tagged `required:"true"` must be present.
package strictyaml

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Sentinel errors, wrapped by *Error, for callers that act on the kind.
var (
	ErrSyntax     = errors.New("syntax error")
	ErrUnknownKey = errors.New("unknown key")
	ErrType       = errors.New("wrong type")
	ErrMissing    = errors.New("missing required field")
	ErrDuplicate  = errors.New("duplicate key")
)

// Error is one problem at one place in a document.
type Error struct {
	File   string // the document's name, as given to Decode
	Path   string // dotted key path, e.g. "gate.baseline.max_regression"
	Line   int    // 1-based; 0 when unknown
	Column int
	Msg    string
	Err    error // one of the sentinels
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:%d:", e.Line, e.Column)
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Decode decodes the YAML document b into v, a pointer to a struct.
// name labels errors (usually the file name). All problems found are
// returned together (errors.Join), in document order.
func Decode(name string, b []byte, v any) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return &Error{File: name, Msg: strings.TrimPrefix(err.Error(), "yaml: "), Err: ErrSyntax, Line: syntaxLine(err)}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		// An empty document still has to satisfy required fields.
		return DecodeNode(name, &yaml.Node{Kind: yaml.MappingNode, Line: 1, Column: 1}, v)
	}
	return DecodeNode(name, doc.Content[0], v)
}

// DecodeNode decodes one node (e.g. a section of a larger document) into v.
func DecodeNode(name string, n *yaml.Node, v any) error {
	return DecodeNodeAt(name, "", n, v)
}

// DecodeNodeAt is DecodeNode for a node found at the dotted key path, which
// prefixes the paths in its errors.
func DecodeNodeAt(name, path string, n *yaml.Node, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("strictyaml: decode target must be a non-nil pointer, got %T", v)
	}
	d := &decoder{file: name}
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if isNull(n) && rv.Elem().Kind() == reflect.Struct {
		// A null document still has to satisfy required fields.
		n = &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
	}
	d.value(n, rv.Elem(), path)
	if len(d.errs) == 0 {
		return nil
	}
	sort.SliceStable(d.errs, func(i, j int) bool { return d.errs[i].Line < d.errs[j].Line })
	errs := make([]error, len(d.errs))
	for i, e := range d.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

type decoder struct {
	file string
	errs []*Error
}

func (d *decoder) fail(n *yaml.Node, path string, sentinel error, format string, args ...any) {
	e := &Error{File: d.file, Path: path, Msg: fmt.Sprintf(format, args...), Err: sentinel}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
}

var nodeType = reflect.TypeFor[yaml.Node]()

func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if v.Type() == nodeType {
		v.Set(reflect.ValueOf(*n))
		return
	}
	if isNull(n) {
		v.SetZero()
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		d.value(n, p.Elem(), path)
		v.Set(p)
	case reflect.Struct:
		d.structValue(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, ErrType, "want a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.value(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, ErrType, "want a mapping, got %s", describe(n))
			return
		}
		if v.Type().Key().Kind() != reflect.String {
			d.scalar(n, v, path)
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			kp := join(path, k.Value)
			if seen[k.Value] {
				d.fail(k, kp, ErrDuplicate, "duplicate key")
				continue
			}
			seen[k.Value] = true
			e := reflect.New(v.Type().Elem()).Elem()
			d.value(val, e, kp)
			m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), e)
		}
		v.Set(m)
	default:
		d.scalar(n, v, path)
	}
}

func (d *decoder) structValue(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, ErrType, "want a mapping, got %s", describe(n))
		return
	}
	fields := structFields(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		kp := join(path, k.Value)
		f, ok := fields.byName[k.Value]
		if !ok {
			d.fail(k, kp, ErrUnknownKey, "unknown key (known keys: %s)", strings.Join(fields.names, ", "))
			continue
		}
		if seen[k.Value] {
			d.fail(k, kp, ErrDuplicate, "duplicate key")
			continue
		}
		seen[k.Value] = true
		d.value(val, v.FieldByIndex(f.index), kp)
		if f.required && isNull(val) {
			d.fail(val, kp, ErrMissing, "required, but empty")
		}
	}
	for _, name := range fields.names {
		if f := fields.byName[name]; f.required && !seen[name] {
			d.fail(n, join(path, name), ErrMissing, "missing required field")
		}
	}
}

func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode && v.Kind() != reflect.Interface {
		d.fail(n, path, ErrType, "want %s, got %s", kindName(v.Type()), describe(n))
		return
	}
	p := reflect.New(v.Type())
	if !tagFits(n, v.Kind()) {
		d.fail(n, path, ErrType, "want %s, got %s", kindName(v.Type()), describe(n))
		return
	}
	if err := n.Decode(p.Interface()); err != nil {
		d.fail(n, path, ErrType, "want %s, got %s", kindName(v.Type()), describe(n))
		return
	}
	v.Set(p.Elem())
}

// tagFits refuses what yaml.v3 would convert silently, such as 2.5 into an
// integer field. Any scalar fits a string field (version: 1.0 is a fine string).
func tagFits(n *yaml.Node, k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return n.ShortTag() == "!!int"
	case reflect.Float32, reflect.Float64:
		return n.ShortTag() == "!!int" || n.ShortTag() == "!!float"
	case reflect.Bool:
		return n.ShortTag() == "!!bool"
	}
	return true
}

type field struct {
	index    []int
	required bool
}

type fieldSet struct {
	byName map[string]field
	names  []string
}

// structFields lists t's keys in field order. The fields of an embedded
// struct tagged `yaml:",inline"` are t's own, unless t names the same key.
func structFields(t reflect.Type) fieldSet {
	fs := fieldSet{byName: map[string]field{}}
	add := func(name string, f field) {
		if _, dup := fs.byName[name]; !dup {
			fs.byName[name] = f
			fs.names = append(fs.names, name)
		}
	}
	for pass := 0; pass < 2; pass++ { // own keys first, so that they win
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			name, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
			if !sf.IsExported() || name == "-" {
				continue
			}
			inline := opts == "inline" && sf.Anonymous && sf.Type.Kind() == reflect.Struct
			switch {
			case inline && pass == 1:
				sub := structFields(sf.Type)
				for _, n := range sub.names {
					f := sub.byName[n]
					add(n, field{index: append([]int{i}, f.index...), required: f.required})
				}
			case !inline && pass == 0:
				if name == "" {
					name = strings.ToLower(sf.Name)
				}
				add(name, field{index: []int{i}, required: sf.Tag.Get("required") == "true"})
			}
		}
	}
	return fs
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch n.Tag {
	case "!!str":
		return fmt.Sprintf("the string %q", n.Value)
	case "!!int", "!!float":
		return "the number " + n.Value
	case "!!bool":
		return "the boolean " + n.Value
	}
	return fmt.Sprintf("%q", n.Value)
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean (true or false)"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return t.String()
}

// syntaxLine pulls "line N" out of a yaml.v3 syntax error.
func syntaxLine(err error) int {
	var line int
	s := err.Error()
	if i := strings.Index(s, "line "); i >= 0 {
		fmt.Sscanf(s[i:], "line %d", &line)
	}
	return line
}
