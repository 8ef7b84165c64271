// Package decode turns untrusted YAML or JSON (CLI input files, admission
// request bodies) into typed Kubernetes and Istio objects.
//
// Decoding is strict: unknown fields, duplicate keys, wrong types, unknown
// enum values, YAML aliases and oversized or overly deep documents are
// errors, reported as *Error with the file, line and field path. Documents
// of kinds outside the kind table are skipped and counted in Stats.
package decode

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Object is one decoded document.
type Object struct {
	// Obj is the typed object: Istio kinds are always the v1 Go types
	// (TypeMeta set to the v1 apiVersion), Kubernetes built-ins their
	// k8s.io/api types, and Seldon/KServe CRDs *unstructured.Unstructured.
	Obj client.Object
	// APIVersion and Kind are as written in the input.
	APIVersion string
	Kind       string
	Source     Source
}

// Stats counts documents: decoded, and ignored per "apiVersion/Kind".
type Stats struct {
	Decoded int
	Ignored map[string]int
}

// Decode reads one stream: multi-document YAML or JSON (one object or a
// stream of objects). A List document's items are decoded as documents.
// Empty documents are skipped and unknown kinds counted in Stats.Ignored.
// Any error fails the whole call with an *Error and no partial result.
func Decode(file string, data []byte) (objs []Object, st Stats, err error) {
	defer guard(file, &err)
	d := newDecoder(file, false)
	if e := d.stream(data); e != nil {
		return nil, Stats{}, e
	}
	return d.objs, d.stats, nil
}

// DecodeObject decodes one JSON object (e.g. an admission request's object)
// with the same kind table and rules as Decode. Unknown kinds and lists are
// errors; an unknown kind's *Error wraps ErrUnknownKind.
func DecodeObject(data []byte) (obj Object, err error) {
	defer guard("", &err)
	if len(data) > MaxDocumentSize {
		return Object{}, &Error{Msg: fmt.Sprintf("object exceeds the maximum size of %d bytes", MaxDocumentSize)}
	}
	d := newDecoder("", true)
	p := newJSONParser(data)
	root, e := p.document()
	if e == nil && p.skipSpace() < len(p.data) {
		e = &Error{Line: p.lineAt(p.skipSpace()), Msg: "unexpected data after the JSON object"}
	}
	if e == nil {
		e = d.document(root, 0)
	}
	if e != nil {
		return Object{}, e
	}
	if len(d.objs) != 1 {
		return Object{}, &Error{Line: root.Line, Msg: "no object in input"}
	}
	return d.objs[0], nil
}

// guard turns a panic escaping a dependency into an error: no input may
// crash the caller.
func guard(file string, err *error) {
	if r := recover(); r != nil {
		*err = &Error{File: file, Msg: fmt.Sprintf("internal decoder error: %v", r)}
	}
}

type decoder struct {
	w      walker
	objs   []Object
	stats  Stats
	single bool // DecodeObject: unknown kinds and lists are errors
}

func newDecoder(file string, single bool) *decoder {
	return &decoder{w: walker{file: file}, stats: Stats{Ignored: map[string]int{}}, single: single}
}

// stream decodes all documents of data, JSON or YAML.
func (d *decoder) stream(data []byte) *Error {
	if len(data) > MaxStreamSize {
		return d.w.fail(nil, "input exceeds the maximum size of %d bytes", MaxStreamSize)
	}
	if looksLikeJSON(data) {
		handled, err := d.jsonStream(data)
		if handled {
			return err
		}
	}
	return splitYAML(data, d.yamlChunk)
}

// looksLikeJSON reports whether data starts with '{' (after a BOM and
// whitespace). YAML flow mappings also do; jsonStream falls back to YAML
// when the first value is not valid JSON.
func looksLikeJSON(data []byte) bool {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	data = bytes.TrimLeft(data, " \t\r\n")
	return len(data) > 0 && data[0] == '{'
}

// jsonStream decodes a stream of JSON objects. handled is false when the
// first value is not valid JSON, so the input should be read as YAML.
func (d *decoder) jsonStream(data []byte) (handled bool, err *Error) {
	p := newJSONParser(data)
	for first := true; p.skipSpace() < len(p.data); first = false {
		start := p.skipSpace()
		root, e := p.document()
		if e != nil {
			if first {
				return false, nil
			}
			e.File = d.w.file
			return true, e
		}
		if p.offset()-start > MaxDocumentSize {
			return true, d.docTooLarge(root.Line)
		}
		if e := d.document(root, 0); e != nil {
			return true, e
		}
	}
	return true, nil
}

func (d *decoder) docTooLarge(line int) *Error {
	return &Error{File: d.w.file, Line: line, Msg: fmt.Sprintf("document exceeds the maximum size of %d bytes", MaxDocumentSize)}
}

// splitYAML cuts a YAML stream into chunks at "---" lines, so each document
// can be size-capped before parsing. A "---" line always starts a document
// (YAML forbids it inside scalars), so this never changes the meaning. A
// marker after nothing but comments, directives or "..." stays in the
// current chunk.
func splitYAML(data []byte, fn func(chunk []byte, startLine int) *Error) *Error {
	start, startLine, line := 0, 1, 1
	content := false
	for off := 0; off < len(data); line++ {
		end := len(data)
		if i := bytes.IndexByte(data[off:], '\n'); i >= 0 {
			end = off + i + 1
		}
		l := data[off:end]
		switch {
		case isMarker(l, "---"):
			if content {
				if err := fn(data[start:off], startLine); err != nil {
					return err
				}
				start, startLine = off, line
			}
			content = !blankOrComment(l[3:])
		case isMarker(l, "..."):
			content = false
		case !blankOrComment(l) && l[0] != '%':
			content = true
		}
		off = end
	}
	return fn(data[start:], startLine)
}

func isMarker(l []byte, m string) bool {
	return bytes.HasPrefix(l, []byte(m)) && (len(l) == 3 || l[3] == ' ' || l[3] == '\t' || l[3] == '\r' || l[3] == '\n')
}

func blankOrComment(l []byte) bool {
	l = bytes.TrimLeft(l, " \t\r\n")
	return len(l) == 0 || l[0] == '#'
}

// yamlChunk parses one chunk (usually one document) and decodes its
// documents.
func (d *decoder) yamlChunk(chunk []byte, startLine int) *Error {
	if len(chunk) > MaxDocumentSize {
		return d.docTooLarge(startLine)
	}
	dec := yaml.NewDecoder(bytes.NewReader(chunk))
	for {
		var doc yaml.Node
		err := safeYAMLDecode(dec, &doc)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return d.yamlError(err, startLine)
		}
		if len(doc.Content) == 0 {
			continue
		}
		if e := d.document(doc.Content[0], startLine-1); e != nil {
			return e
		}
	}
}

// safeYAMLDecode shields against panics inside the YAML parser.
func safeYAMLDecode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: parser failure: %v", r)
		}
	}()
	return dec.Decode(n)
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): `)

// yamlError converts a parser error, turning its chunk-relative line into
// a file line.
func (d *decoder) yamlError(err error, startLine int) *Error {
	msg := err.Error()
	line := startLine
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		if l, convErr := strconv.Atoi(m[1]); convErr == nil {
			line = startLine + l - 1
		}
		msg = msg[len(m[0]):]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	return &Error{File: d.w.file, Line: line, Msg: "invalid YAML: " + msg, Err: err}
}

// document decodes one parsed document; lineOff shifts node lines to file
// lines.
func (d *decoder) document(root *yaml.Node, lineOff int) *Error {
	d.w.path = d.w.path[:0]
	if err := d.w.prepare(root, 1, lineOff); err != nil {
		return err
	}
	if isNull(root) {
		return nil // empty document
	}
	return d.object(root, "", "")
}

// docNodes are the top-level entries of a document.
type docNodes struct {
	root                        *yaml.Node
	apiVersion, kind            *yaml.Node
	metadataKey                 *yaml.Node
	metadata, spec, items       *yaml.Node
	specKey, statusKey, itemKey *yaml.Node
	unknownKey                  *yaml.Node // first key that no document may have
}

func topLevel(n *yaml.Node) *docNodes {
	doc := &docNodes{root: n}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "apiVersion":
			doc.apiVersion = v
		case "kind":
			doc.kind = v
		case "metadata":
			doc.metadataKey, doc.metadata = k, v
		case "spec":
			doc.specKey, doc.spec = k, v
		case "status":
			doc.statusKey = k // accepted and ignored for every kind
		case "items":
			doc.itemKey, doc.items = k, v
		default:
			if doc.unknownKey == nil {
				doc.unknownKey = k
			}
		}
	}
	return doc
}

// typeMeta returns the apiVersion and kind, falling back to those
// inherited from a typed list (e.g. items of an AuthorizationPolicyList).
func (d *decoder) typeMeta(doc *docNodes, inhAPI, inhKind string) (apiVersion, kind string, err *Error) {
	get := func(n *yaml.Node, name, inherited string) (string, *Error) {
		if n == nil || isNull(n) {
			if inherited == "" {
				return "", d.w.fail(doc.root, "document has no %s", name)
			}
			return inherited, nil
		}
		if !isString(n) || n.Value == "" {
			d.w.path.pushKey(name)
			defer d.w.path.pop()
			return "", d.w.fail(n, "%s must be a non-empty string, got %s", name, describe(n))
		}
		return n.Value, nil
	}
	if apiVersion, err = get(doc.apiVersion, "apiVersion", inhAPI); err != nil {
		return "", "", err
	}
	kind, err = get(doc.kind, "kind", inhKind)
	return apiVersion, kind, err
}

// object decodes one document or list item.
func (d *decoder) object(n *yaml.Node, inhAPI, inhKind string) *Error {
	if n.Kind != yaml.MappingNode {
		return d.w.fail(n, "a document must be a mapping, got %s", describe(n))
	}
	doc := topLevel(n)
	apiVersion, kind, err := d.typeMeta(doc, inhAPI, inhKind)
	if err != nil {
		return err
	}
	if kind == "List" || (strings.HasSuffix(kind, "List") && doc.itemKey != nil && doc.specKey == nil) {
		return d.list(doc, apiVersion, kind)
	}
	ki := kindTable[kindKey{apiVersion, kind}]
	if ki == nil {
		if d.single {
			return &Error{File: d.w.file, Line: n.Line, Path: d.w.path.String(), Err: ErrUnknownKind,
				Msg: fmt.Sprintf("%v %q (apiVersion %q)", ErrUnknownKind, kind, apiVersion)}
		}
		d.stats.Ignored[apiVersion+"/"+kind]++
		return nil
	}
	if k := firstOf(doc.unknownKey, doc.itemKey); k != nil {
		return d.unknownTopKey(k, []string{"apiVersion", "kind", "metadata", "spec", "status"})
	}
	obj, err := ki.decode(&d.w, doc, ki)
	if err != nil {
		return err
	}
	// A list item inherits apiVersion/kind only when it has none.
	d.objs = append(d.objs, Object{Obj: obj, APIVersion: apiVersion, Kind: kind, Source: Source{File: d.w.file, Line: n.Line}})
	d.stats.Decoded++
	return nil
}

func firstOf(nodes ...*yaml.Node) *yaml.Node {
	var first *yaml.Node
	for _, n := range nodes {
		if n != nil && (first == nil || n.Line < first.Line) {
			first = n
		}
	}
	return first
}

func (d *decoder) unknownTopKey(k *yaml.Node, allowed []string) *Error {
	d.w.path.pushKey(k.Value)
	defer d.w.path.pop()
	return d.w.fail(k, "unknown field %q%s", k.Value, suggest(k.Value, allowed))
}

// list decodes the items of a List or typed *List document.
func (d *decoder) list(doc *docNodes, apiVersion, kind string) *Error {
	if d.single {
		return d.w.fail(doc.root, "a %s is not accepted here; send a single object", kind)
	}
	if k := firstOf(doc.unknownKey, doc.specKey, doc.statusKey); k != nil {
		return d.unknownTopKey(k, []string{"apiVersion", "kind", "metadata", "items"})
	}
	if err := d.w.walkTop(doc.metadata, "metadata", listMetaType); err != nil {
		return err
	}
	if doc.items == nil || isNull(doc.items) {
		return nil
	}
	d.w.path.pushKey("items")
	defer d.w.path.pop()
	if doc.items.Kind != yaml.SequenceNode {
		return d.w.fail(doc.items, "expected a list, got %s", describe(doc.items))
	}
	inhAPI, inhKind := "", ""
	if kind != "List" {
		inhAPI, inhKind = apiVersion, strings.TrimSuffix(kind, "List")
	}
	for i, item := range doc.items.Content {
		d.w.path.pushIdx(i)
		if err := d.object(item, inhAPI, inhKind); err != nil {
			return err
		}
		d.w.path.pop()
	}
	return nil
}
