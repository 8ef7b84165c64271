package decode

import (
	"encoding/base64"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	yaml "go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// The protobuf walker checks a YAML tree against a message descriptor with
// the rules of protojson (DiscardUnknown off). Istio's generated
// UnmarshalJSON allows unknown fields, so it is never used; the walker gives
// precise errors and protojson then does the real decoding.

// msgNames caches the field names of each message, for suggestions.
var msgNames sync.Map // protoreflect.FullName -> []string

func fieldNames(md protoreflect.MessageDescriptor) []string {
	if v, ok := msgNames.Load(md.FullName()); ok {
		return v.([]string)
	}
	fields := md.Fields()
	names := make([]string, 0, fields.Len())
	for i := 0; i < fields.Len(); i++ {
		names = append(names, fields.Get(i).JSONName())
	}
	msgNames.Store(md.FullName(), names)
	return names
}

// walkMessage checks n against message md.
func (w *walker) walkMessage(n *yaml.Node, md protoreflect.MessageDescriptor) *Error {
	if strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
		return w.checkWellKnown(n, md)
	}
	if n.Kind != yaml.MappingNode {
		return w.fail(n, "expected a mapping, got %s", describe(n))
	}
	set := fieldsSet{md: md}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		w.path.pushKey(k.Value)
		if err := w.walkEntry(k, v, &set); err != nil {
			return err
		}
		w.path.pop()
	}
	return nil
}

// fieldsSet records which key set each field and oneof of a message, so
// the second spelling of a field (JSON and proto name) or a second member
// of a oneof is reported with both lines.
type fieldsSet struct {
	md             protoreflect.MessageDescriptor
	fields, oneofs []*yaml.Node
}

// walkEntry checks one key/value of a message.
func (w *walker) walkEntry(k, v *yaml.Node, set *fieldsSet) *Error {
	fields := set.md.Fields()
	fd := fields.ByJSONName(k.Value)
	if fd == nil {
		fd = fields.ByTextName(k.Value)
	}
	if fd == nil {
		return w.fail(k, "unknown field %q%s", clip(k.Value), suggest(k.Value, fieldNames(set.md)))
	}
	if set.fields == nil {
		set.fields = make([]*yaml.Node, fields.Len())
	}
	if prev := set.fields[fd.Index()]; prev != nil {
		return w.fail(k, "field %q is set twice (also as %q at line %d)", clip(k.Value), clip(prev.Value), prev.Line)
	}
	set.fields[fd.Index()] = k
	if isNull(v) && !acceptsNull(fd) {
		return nil // protojson treats null as "not set"
	}
	if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
		if set.oneofs == nil {
			set.oneofs = make([]*yaml.Node, set.md.Oneofs().Len())
		}
		if prev := set.oneofs[od.Index()]; prev != nil {
			return w.fail(k, "only one of the fields of oneof %q may be set (%q already set at line %d)", od.Name(), clip(prev.Value), prev.Line)
		}
		set.oneofs[od.Index()] = k
	}
	return w.walkField(v, fd)
}

// acceptsNull reports whether null is a value (not "unset") for fd.
func acceptsNull(fd protoreflect.FieldDescriptor) bool {
	if md := fd.Message(); md != nil && md.FullName() == "google.protobuf.Value" {
		return true
	}
	ed := fd.Enum()
	return ed != nil && ed.FullName() == "google.protobuf.NullValue"
}

func (w *walker) walkField(n *yaml.Node, fd protoreflect.FieldDescriptor) *Error {
	switch {
	case fd.IsList():
		if n.Kind != yaml.SequenceNode {
			return w.fail(n, "expected a list, got %s", describe(n))
		}
		for i, c := range n.Content {
			w.path.pushIdx(i)
			if err := w.walkSingular(c, fd); err != nil {
				return err
			}
			w.path.pop()
		}
		return nil
	case fd.IsMap():
		if n.Kind != yaml.MappingNode {
			return w.fail(n, "expected a mapping, got %s", describe(n))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			w.path.pushKey(k.Value)
			if err := w.checkProtoMapKey(k, fd.MapKey()); err != nil {
				return err
			}
			if err := w.walkSingular(v, fd.MapValue()); err != nil {
				return err
			}
			w.path.pop()
		}
		return nil
	}
	return w.walkSingular(n, fd)
}

func (w *walker) checkProtoMapKey(k *yaml.Node, fd protoreflect.FieldDescriptor) *Error {
	var err error
	switch fd.Kind() {
	case protoreflect.StringKind:
		return nil
	case protoreflect.BoolKind:
		if k.Value != "true" && k.Value != "false" {
			return w.fail(k, "invalid map key %q: expected true or false", clip(k.Value))
		}
		return nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		_, err = strconv.ParseInt(k.Value, 10, 32)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		_, err = strconv.ParseInt(k.Value, 10, 64)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		_, err = strconv.ParseUint(k.Value, 10, 32)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		_, err = strconv.ParseUint(k.Value, 10, 64)
	}
	if err != nil {
		return w.fail(k, "invalid map key %q: expected a %s", clip(k.Value), fd.Kind())
	}
	return nil
}

// walkSingular checks one value (a field, list element or map value).
// Unlike a field, a list element or map value may not be null.
func (w *walker) walkSingular(n *yaml.Node, fd protoreflect.FieldDescriptor) *Error {
	if isNull(n) && !acceptsNull(fd) {
		return w.fail(n, "null is not allowed here")
	}
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return w.walkMessage(n, fd.Message())
	case protoreflect.EnumKind:
		return w.checkEnum(n, fd.Enum())
	case protoreflect.BoolKind:
		if n.Kind != yaml.ScalarNode || n.Tag != tagBool {
			return w.fail(n, "expected a boolean, got %s", describe(n))
		}
	case protoreflect.StringKind:
		if !isString(n) {
			return w.fail(n, "expected a string, got %s", describe(n))
		}
	case protoreflect.BytesKind:
		if !isString(n) || !validProtoBase64(n.Value) {
			return w.fail(n, "expected a base64 string, got %s", describe(n))
		}
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return w.checkProtoFloat(n, fd.Kind() == protoreflect.FloatKind)
	default:
		return w.checkProtoInt(n, fd.Kind())
	}
	return nil
}

func (w *walker) checkEnum(n *yaml.Node, ed protoreflect.EnumDescriptor) *Error {
	if n.Kind == yaml.ScalarNode {
		switch {
		case isNull(n): // only reached for google.protobuf.NullValue
			return nil
		case isString(n):
			if ed.Values().ByName(protoreflect.Name(n.Value)) != nil {
				return nil
			}
			return w.fail(n, "unknown value %q for enum %s (valid: %s)", clip(n.Value), ed.Name(), enumNames(ed))
		case n.Tag == tagInt:
			i, err := strconv.ParseInt(mustInt(n), 10, 32)
			if err == nil && ed.Values().ByNumber(protoreflect.EnumNumber(i)) != nil {
				return nil
			}
			// protojson accepts any number for an open enum; an undefined
			// number has no meaning to Istio, so it is rejected here.
			return w.fail(n, "unknown value %s for enum %s (valid: %s)", clip(n.Value), ed.Name(), enumNames(ed))
		}
	}
	return w.fail(n, "expected an enum name, got %s", describe(n))
}

func enumNames(ed protoreflect.EnumDescriptor) string {
	vals := ed.Values()
	names := make([]string, vals.Len())
	for i := range names {
		names[i] = string(vals.Get(i).Name())
	}
	return strings.Join(names, ", ")
}

// protoNumberText returns the JSON number text protojson would parse for n:
// a number, or a string holding one (protojson accepts both).
func protoNumberText(n *yaml.Node) (text string, special, ok bool) {
	switch {
	case n.Kind != yaml.ScalarNode:
		return "", false, false
	case n.Tag == tagInt || n.Tag == tagFloat:
		text, special = numberText(n)
		return text, special, true
	case isString(n):
		switch n.Value {
		case "NaN", "Infinity", "-Infinity":
			return n.Value, true, true
		}
		return n.Value, false, isJSONNumber(n.Value)
	}
	return "", false, false
}

func (w *walker) checkProtoFloat(n *yaml.Node, is32 bool) *Error {
	text, special, ok := protoNumberText(n)
	if !ok {
		return w.fail(n, "expected a number, got %s", describe(n))
	}
	if special {
		return nil
	}
	bits := 64
	if is32 {
		bits = 32
	}
	if f, err := strconv.ParseFloat(text, bits); err != nil || math.IsInf(f, 0) {
		return w.fail(n, "number %s is out of range", clip(n.Value))
	}
	return nil
}

func (w *walker) checkProtoInt(n *yaml.Node, kind protoreflect.Kind) *Error {
	text, special, ok := protoNumberText(n)
	if !ok || special {
		return w.fail(n, "expected an integer, got %s", describe(n))
	}
	bits, signed := 64, true
	switch kind {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		bits = 32
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		bits, signed = 32, false
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		signed = false
	}
	if !intInRange(text, bits, signed) {
		return w.fail(n, "expected a %d-bit %s, got %s", bits, map[bool]string{true: "integer", false: "unsigned integer"}[signed], describe(n))
	}
	return nil
}

// intInRange reports whether JSON number text is an integral value that
// fits the given integer type. protojson accepts forms such as 1e2 and 1.0.
func intInRange(text string, bits int, signed bool) bool {
	if signed {
		if _, err := strconv.ParseInt(text, 10, bits); err == nil {
			return true
		}
	} else if _, err := strconv.ParseUint(text, 10, bits); err == nil {
		return true
	}
	if len(text) > 400 {
		return false // no integer in range needs that many characters
	}
	f, _, err := big.ParseFloat(text, 10, 256, big.ToNearestEven)
	if err != nil || !f.IsInt() {
		return false
	}
	i, _ := f.Int(nil)
	if signed {
		limit := new(big.Int).Lsh(big.NewInt(1), uint(bits-1)) // 2^(bits-1)
		return i.Cmp(limit) < 0 && i.Cmp(new(big.Int).Neg(limit)) >= 0
	}
	return i.Sign() >= 0 && i.BitLen() <= bits
}

// validProtoBase64 mirrors protojson: standard or URL alphabet, padding
// optional.
func validProtoBase64(s string) bool {
	enc := base64.StdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	if len(s)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	_, err := enc.DecodeString(s)
	return err == nil
}

// checkWellKnown validates a google.protobuf.* value (Duration, wrappers,
// Struct, ...) by letting protojson decode just that value: their JSON forms
// are special and protojson is the reference.
func (w *walker) checkWellKnown(n *yaml.Node, md protoreflect.MessageDescriptor) *Error {
	switch md.FullName() {
	case "google.protobuf.Duration":
		return w.checkDuration(n)
	case "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue":
		if err := w.checkGeneric(n); err != nil {
			return err
		}
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
	if err != nil {
		return nil // not linked in; the final protojson decode decides
	}
	if err := protojson.Unmarshal(appendJSON(nil, n), mt.New().Interface()); err != nil {
		return w.fail(n, "invalid %s: %s", md.Name(), cleanProtoErr(err))
	}
	return nil
}

var protoErrPrefix = regexp.MustCompile(`^(proto:\s*)?(\(line \d+:\d+\):\s*)?`)

// cleanProtoErr strips protojson's prefix and its position in the
// intermediate JSON, which means nothing to the user.
func cleanProtoErr(err error) string {
	msg := strings.ReplaceAll(err.Error(), "\u00a0", " ")
	return protoErrPrefix.ReplaceAllString(msg, "")
}

// checkDuration accepts Go duration strings ("500ms", "1m", "1h30m"), as
// Istio does: its generated UnmarshalJSON (golang/protobuf jsonpb) and its
// CRD schemas use Go's duration syntax, while protojson only accepts
// seconds ("0.5s"). The node is rewritten to protojson's form so that the
// final protojson decode accepts it.
func (w *walker) checkDuration(n *yaml.Node) *Error {
	if !isString(n) {
		return w.fail(n, "expected a duration string such as \"5s\" or \"500ms\", got %s", describe(n))
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		return w.fail(n, "invalid duration %q: expected a duration such as \"5s\", \"500ms\" or \"1h30m\"", clip(n.Value))
	}
	n.Tag, n.Value = tagStr, protoDuration(d)
	return nil
}

// protoDuration formats d as protojson's Duration string.
func protoDuration(d time.Duration) string {
	sign, u := "", uint64(d)
	if d < 0 {
		sign, u = "-", uint64(-(d+1))+1 // no overflow for math.MinInt64
	}
	return fmt.Sprintf("%s%d.%09ds", sign, u/1e9, u%1e9)
}
