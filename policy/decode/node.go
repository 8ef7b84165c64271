package decode

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
)

// Limits that protect the decoder from hostile input.
const (
	// MaxDocumentSize caps one document: for YAML the text between "---"
	// markers, for JSON one value.
	MaxDocumentSize = 4 << 20
	// MaxStreamSize caps one input stream (file or stdin).
	MaxStreamSize = 256 << 20
	// MaxDepth caps the nesting of mappings and sequences in a document.
	MaxDepth = 100
)

// tooDeep is the error message for a document nested past MaxDepth, parsed or skipped.
var tooDeep = fmt.Sprintf("document nesting exceeds the maximum depth of %d", MaxDepth)

// YAML tags as resolved by go.yaml.in/yaml/v3 (short form).
const (
	tagNull      = "!!null"
	tagBool      = "!!bool"
	tagInt       = "!!int"
	tagFloat     = "!!float"
	tagStr       = "!!str"
	tagTimestamp = "!!timestamp"
	tagMerge     = "!!merge"
	tagMap       = "!!map"
	tagSeq       = "!!seq"
)

// walker carries the per-document state shared by all validation passes:
// the file for error messages and the current field path.
type walker struct {
	file string
	path fieldPath
	// generateName lets metadata.generateName stand in for the name: in admission, mutating
	// webhooks see a CREATE before the API server picks the name.
	generateName bool
}

// fail builds an *Error located at n with the current path.
func (w *walker) fail(n *yaml.Node, format string, args ...any) *Error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &Error{File: w.file, Line: line, Path: w.path.String(), Msg: fmt.Sprintf(format, args...)}
}

// prepare runs once over a freshly parsed document and rejects what no
// later pass should have to think about: aliases (billion laughs), merge keys,
// explicit tags, non-scalar or null keys, duplicate keys, malformed numbers
// and excessive nesting.
func (w *walker) prepare(n *yaml.Node, depth int) *Error {
	if depth > MaxDepth {
		return w.fail(n, "%s", tooDeep)
	}
	switch n.Kind {
	case yaml.AliasNode:
		return w.fail(n, "YAML aliases are not allowed (alias *%s)", clip(n.Value))
	case yaml.ScalarNode:
		return w.prepareScalar(n)
	case yaml.SequenceNode:
		if n.Style&yaml.TaggedStyle != 0 && n.Tag != tagSeq {
			return w.fail(n, "explicit YAML tag %s is not supported", n.Tag)
		}
		for i, c := range n.Content {
			w.path.pushIdx(i)
			if err := w.prepare(c, depth+1); err != nil {
				return err
			}
			w.path.pop()
		}
	case yaml.MappingNode:
		return w.prepareMapping(n, depth)
	default:
		return w.fail(n, "unexpected YAML node")
	}
	return nil
}

func (w *walker) prepareScalar(n *yaml.Node) *Error {
	if n.Style&yaml.TaggedStyle != 0 && n.Tag != tagStr {
		return w.fail(n, "explicit YAML tag %s is not supported", n.Tag)
	}
	switch n.Tag {
	case tagMerge:
		return w.fail(n, "YAML merge keys (<<) are not allowed")
	case tagInt:
		if _, ok := intText(n.Value); !ok {
			return w.fail(n, "integer %s is out of range", clip(n.Value))
		}
	case tagFloat:
		if _, _, ok := floatText(n.Value); !ok {
			return w.fail(n, "number %s is out of range", clip(n.Value))
		}
	case tagNull, tagBool, tagStr, tagTimestamp:
	default:
		return w.fail(n, "YAML tag %s is not supported", n.Tag)
	}
	return nil
}

func (w *walker) prepareMapping(n *yaml.Node, depth int) *Error {
	if n.Style&yaml.TaggedStyle != 0 && n.Tag != tagMap {
		return w.fail(n, "explicit YAML tag %s is not supported", n.Tag)
	}
	if len(n.Content)%2 != 0 {
		return w.fail(n, "malformed mapping")
	}
	var seen map[string]*yaml.Node // only for large mappings
	if len(n.Content) > 32 {
		seen = make(map[string]*yaml.Node, len(n.Content)/2)
	}
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if err := w.prepare(k, depth+1); err != nil {
			return err
		}
		if k.Kind != yaml.ScalarNode {
			return w.fail(k, "mapping keys must be strings, got %s", describe(k))
		}
		if k.Tag == tagNull {
			return w.fail(k, "mapping keys must be strings, got null")
		}
		w.path.pushKey(k.Value)
		if first := findDup(n.Content[:i], k.Value, seen); first != nil {
			return w.fail(k, "duplicate key %q (first defined at line %d)", clip(k.Value), first.Line)
		}
		if seen != nil {
			seen[k.Value] = k
		}
		if err := w.prepare(v, depth+1); err != nil {
			return err
		}
		w.path.pop()
	}
	return nil
}

// findDup returns the earlier key node equal to key, if any. Small mappings
// are scanned linearly, which beats allocating a map for each of them.
func findDup(prev []*yaml.Node, key string, seen map[string]*yaml.Node) *yaml.Node {
	if seen != nil {
		return seen[key]
	}
	for j := 0; j < len(prev); j += 2 {
		if prev[j].Value == key {
			return prev[j]
		}
	}
	return nil
}

// isNull reports whether n is a null scalar ("", "~", "null").
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == tagNull
}

// isString reports whether n is a scalar that decodes to a JSON string.
// Timestamps are kept as their text, as sigs.k8s.io/yaml does.
func isString(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && (n.Tag == tagStr || n.Tag == tagTimestamp)
}

// describe names the JSON type of n for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		v := clip(n.Value)
		switch n.Tag {
		case tagNull:
			return "null"
		case tagBool:
			return "a boolean (" + v + ")"
		case tagInt:
			return "an integer (" + v + ")"
		case tagFloat:
			return "a number (" + v + ")"
		}
		return "a string (" + strconv.Quote(v) + ")"
	}
	return "an unexpected node"
}

// intText returns the decimal JSON text of a YAML integer scalar, following
// go.yaml.in/yaml/v3's resolver (underscores, 0x/0o/0b prefixes, and legacy
// octal "0777").
func intText(v string) (string, bool) {
	if canonicalInt(v) {
		return v, true
	}
	plain := strings.ReplaceAll(v, "_", "")
	if i, err := strconv.ParseInt(plain, 0, 64); err == nil {
		return strconv.FormatInt(i, 10), true
	}
	if u, err := strconv.ParseUint(plain, 0, 64); err == nil {
		return strconv.FormatUint(u, 10), true
	}
	return "", false
}

// canonicalInt reports whether v is already a JSON integer that fits in 64
// bits (the common case, so no parsing is needed).
func canonicalInt(v string) bool {
	s := strings.TrimPrefix(v, "-")
	if s == "" || len(s) > 18 || (s[0] == '0' && len(s) > 1) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// floatText returns the JSON text of a YAML float scalar. Non-finite values
// have no JSON number form: special is set and text is the protojson
// spelling ("Infinity", "-Infinity", "NaN").
func floatText(v string) (text string, special, ok bool) {
	switch strings.ToLower(strings.TrimPrefix(v, "+")) {
	case ".inf":
		return "Infinity", true, true
	case "-.inf":
		return "-Infinity", true, true
	case ".nan":
		return "NaN", true, true
	}
	if isJSONNumber(v) {
		if f, err := strconv.ParseFloat(v, 64); err != nil || math.IsInf(f, 0) {
			return "", false, false
		}
		return v, false, true
	}
	f, err := strconv.ParseFloat(strings.ReplaceAll(v, "_", ""), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return "", false, false
	}
	return strconv.FormatFloat(f, 'g', -1, 64), false, true
}

// isJSONNumber reports whether s matches the JSON number grammar.
func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return false
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return false
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	return i == len(s)
}

// numberText returns the JSON number text of an int or float scalar;
// special is set for non-finite floats.
func numberText(n *yaml.Node) (text string, special bool) {
	if n.Tag == tagInt {
		t, _ := intText(n.Value)
		return t, false
	}
	t, special, _ := floatText(n.Value)
	return t, special
}

// appendJSON appends the JSON encoding of n. prepare must have accepted n,
// so every scalar has a JSON form; non-finite floats become the strings
// protojson accepts, and callers that need real numbers reject them first.
func appendJSON(b []byte, n *yaml.Node) []byte {
	switch n.Kind {
	case yaml.MappingNode:
		b = append(b, '{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, n.Content[i].Value)
			b = append(b, ':')
			b = appendJSON(b, n.Content[i+1])
		}
		return append(b, '}')
	case yaml.SequenceNode:
		b = append(b, '[')
		for i, c := range n.Content {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSON(b, c)
		}
		return append(b, ']')
	case yaml.ScalarNode:
		switch n.Tag {
		case tagNull:
			return append(b, "null"...)
		case tagBool:
			return strconv.AppendBool(b, isTrue(n.Value))
		case tagInt, tagFloat:
			text, special := numberText(n)
			if special {
				return appendJSONString(b, text)
			}
			return append(b, text...)
		}
		return appendJSONString(b, n.Value)
	}
	return append(b, "null"...)
}

func isTrue(v string) bool { return v != "" && (v[0] == 't' || v[0] == 'T') }

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes U+FFFD
// like encoding/json does.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// toGeneric converts n into the JSON-compatible values that
// unstructured.Unstructured requires (map[string]any, []any, string, int64,
// float64, bool, nil).
func (w *walker) toGeneric(n *yaml.Node) (any, *Error) {
	switch n.Kind {
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			w.path.pushKey(n.Content[i].Value)
			v, err := w.toGeneric(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			w.path.pop()
			m[n.Content[i].Value] = v
		}
		return m, nil
	case yaml.SequenceNode:
		s := make([]any, len(n.Content))
		for i, c := range n.Content {
			w.path.pushIdx(i)
			v, err := w.toGeneric(c)
			if err != nil {
				return nil, err
			}
			w.path.pop()
			s[i] = v
		}
		return s, nil
	}
	return w.scalarGeneric(n)
}

func (w *walker) scalarGeneric(n *yaml.Node) (any, *Error) {
	switch n.Tag {
	case tagNull:
		return nil, nil
	case tagBool:
		return isTrue(n.Value), nil
	case tagInt:
		text, _ := intText(n.Value)
		if i, err := strconv.ParseInt(text, 10, 64); err == nil {
			return i, nil
		}
		return nil, w.fail(n, "integer %s does not fit in 64 bits", clip(n.Value))
	case tagFloat:
		text, special := numberText(n)
		f, err := strconv.ParseFloat(text, 64)
		if special || err != nil {
			return nil, w.fail(n, "number %s cannot be represented in JSON", clip(n.Value))
		}
		return f, nil
	}
	return n.Value, nil
}

// checkGeneric rejects values that would change meaning when converted to
// JSON for a free-form field (non-finite floats have no JSON form).
func (w *walker) checkGeneric(n *yaml.Node) *Error {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			w.path.pushKey(n.Content[i-1].Value)
			if err := w.checkGeneric(n.Content[i]); err != nil {
				return err
			}
			w.path.pop()
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			w.path.pushIdx(i)
			if err := w.checkGeneric(c); err != nil {
				return err
			}
			w.path.pop()
		}
	case yaml.ScalarNode:
		if n.Tag == tagFloat {
			if _, special := numberText(n); special {
				return w.fail(n, "number %s cannot be represented in JSON", clip(n.Value))
			}
		}
	}
	return nil
}

// findNode locates the node for a dotted field path such as
// "spec.containers[0].imagee" (as reported by sigs.k8s.io/json) below root.
// For a final key it returns the key node, whose line is the one to report.
// It returns the deepest node it could match.
func findNode(root *yaml.Node, path string) *yaml.Node {
	cur, best := root, root
	for path != "" {
		path = strings.TrimPrefix(path, ".")
		switch {
		case strings.HasPrefix(path, "["):
			end := strings.IndexByte(path, ']')
			if end < 0 {
				return best
			}
			seg := path[1:end]
			path = path[end+1:]
			if cur.Kind == yaml.MappingNode {
				key, err := strconv.Unquote(seg)
				if err != nil {
					return best
				}
				k, v := lookupKey(cur, key)
				if k == nil {
					return best
				}
				best, cur = k, v
				continue
			}
			i, err := strconv.Atoi(seg)
			if err != nil || cur.Kind != yaml.SequenceNode || i < 0 || i >= len(cur.Content) {
				return best
			}
			cur = cur.Content[i]
			best = cur
		default:
			if cur.Kind != yaml.MappingNode {
				return best
			}
			k, v := longestKeyPrefix(cur, path)
			if k == nil {
				return best
			}
			path = path[len(k.Value):]
			best, cur = k, v
		}
	}
	return best
}

// longestKeyPrefix finds the key of m that path starts with, followed by a
// separator; keys may themselves contain dots (label names).
func longestKeyPrefix(m *yaml.Node, path string) (k, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		key := m.Content[i].Value
		if !strings.HasPrefix(path, key) {
			continue
		}
		if len(path) > len(key) && path[len(key)] != '.' && path[len(key)] != '[' {
			continue
		}
		if k == nil || len(key) > len(k.Value) {
			k, v = m.Content[i], m.Content[i+1]
		}
	}
	return k, v
}

// lookupKey returns the key and value nodes for key in mapping m.
func lookupKey(m *yaml.Node, key string) (k, v *yaml.Node) {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i], m.Content[i+1]
		}
	}
	return nil, nil
}
