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
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

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
	if e := checkUTF8(file, data); e != nil {
		return nil, Stats{}, e
	}
	d := newDecoder(file, false)
	if e := d.stream(data); e != nil {
		return nil, Stats{}, e
	}
	return d.objs, d.stats, nil
}

// checkUTF8 refuses input that is not valid UTF-8: JSON decoding would silently replace the
// bad bytes, so a name or a path could differ from what the API server or Envoy sees.
func checkUTF8(file string, data []byte) *Error {
	if utf8.Valid(data) {
		return nil
	}
	off := 0
	for off < len(data) {
		r, size := utf8.DecodeRune(data[off:])
		if r == utf8.RuneError && size <= 1 {
			break
		}
		off += size
	}
	return &Error{File: file, Line: 1 + bytes.Count(data[:off], []byte("\n")), Msg: fmt.Sprintf("invalid UTF-8 at byte %d", off)}
}

// DecodeObject decodes one JSON object (e.g. an admission request's object)
// with the same kind table and rules as Decode. Unknown kinds and lists are
// errors; an unknown kind's *Error wraps ErrUnknownKind. A generateName stands in for the name
// (mutating admission sees a CREATE before the API server picks the name).
//
// metadata.managedFields and the status are checked as JSON (syntax and depth) and left out
// of the object: the API server writes managedFields into every object it sends for
// admission, often as the largest part of the metadata, an UPDATE carries the controller's
// status, and no verdict reads either (Decode ignores status too, after parsing it; only a
// List's status is an error, and DecodeObject refuses Lists before looking).
func DecodeObject(data []byte) (obj Object, err error) {
	defer guard("", &err)
	if len(data) > MaxDocumentSize {
		return Object{}, &Error{Msg: fmt.Sprintf("object exceeds the maximum size of %d bytes", MaxDocumentSize)}
	}
	if e := checkUTF8("", data); e != nil {
		return Object{}, e
	}
	d := newDecoder("", true)
	d.w.generateName = true
	p := newJSONParser(data)
	p.skipUnread = true
	p.arena = arenas.Get().(*nodeArena)
	defer func() {
		p.arena.reset()
		arenas.Put(p.arena)
	}()
	root, e := p.document()
	if e == nil && p.skipSpace() < len(p.data) {
		e = &Error{Line: p.lineAt(p.skipSpace()), Msg: "unexpected data after the JSON object"}
	}
	if e == nil {
		e = d.document(root)
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
	parallel := len(data) >= parallelBytes && runtime.GOMAXPROCS(0) > 1
	if looksLikeJSON(data) {
		notJSON := false
		err := d.pipeline(parallel, func(emit func(*yaml.Node) bool) *Error {
			var e *Error
			notJSON, e = d.jsonDocs(data, emit)
			return e
		})
		if !notJSON {
			return err
		}
	}
	if err := d.checkDocSizes(data); err != nil {
		return err
	}
	return d.pipeline(parallel, func(emit func(*yaml.Node) bool) *Error {
		return d.yamlDocs(data, emit)
	})
}

// parallelBytes is the input size from which documents are decoded by
// several goroutines while the parser goes on reading.
const parallelBytes = 32 << 10

// docResult is what decoding one document produced.
type docResult struct {
	objs    []Object
	ignored map[string]int
	err     *Error
}

// pipeline runs parse, which emits document roots in order, and decodes
// them. In parallel mode the parser (the costliest step) runs on this
// goroutine while workers decode; the outcome is the same as a sequential
// decode: objects in input order and the error of the earliest failing
// document, a parse error counting after every document emitted before it.
func (d *decoder) pipeline(parallel bool, parse func(emit func(*yaml.Node) bool) *Error) *Error {
	if !parallel {
		var docErr *Error
		parseErr := parse(func(root *yaml.Node) bool {
			docErr = d.document(root)
			return docErr == nil
		})
		return firstOfErrs(docErr, parseErr)
	}
	results, parseErr := d.decodeConcurrently(parse)
	for _, r := range results {
		if r.err != nil {
			return r.err
		}
		d.objs = append(d.objs, r.objs...)
		d.stats.Decoded += len(r.objs)
		for k, v := range r.ignored {
			d.stats.Ignored[k] += v
		}
	}
	return parseErr
}

// decodeConcurrently parses on this goroutine and decodes on workers. It
// stops parsing after a failure, and skips documents after the earliest
// failed one, which cannot change the outcome.
func (d *decoder) decodeConcurrently(parse func(emit func(*yaml.Node) bool) *Error) ([]*docResult, *Error) {
	type job struct {
		idx  int64
		root *yaml.Node
		res  *docResult
	}
	jobs := make(chan job, 64)
	failed := newEarliestFailure()
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), 4) {
		wg.Go(func() {
			for j := range jobs {
				if failed.after(j.idx) {
					continue
				}
				*j.res = d.decodeIsolated(j.root)
				if j.res.err != nil {
					failed.record(j.idx)
				}
			}
		})
	}
	var results []*docResult
	parseErr := parse(func(root *yaml.Node) bool {
		if failed.any() {
			return false
		}
		r := &docResult{}
		results = append(results, r)
		jobs <- job{int64(len(results) - 1), root, r}
		return true
	})
	close(jobs)
	wg.Wait()
	return results, parseErr
}

func firstOfErrs(errs ...*Error) *Error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// decodeIsolated decodes one document with its own state, turning a panic
// into an error: a panic in a worker goroutine would bypass guard.
func (d *decoder) decodeIsolated(root *yaml.Node) (r docResult) {
	sub := newDecoder(d.w.file, d.single)
	defer func() {
		if p := recover(); p != nil {
			r = docResult{err: &Error{File: d.w.file, Line: root.Line, Msg: fmt.Sprintf("internal decoder error: %v", p)}}
		}
	}()
	if err := sub.document(root); err != nil {
		return docResult{err: err}
	}
	return docResult{objs: sub.objs, ignored: sub.stats.Ignored}
}

// looksLikeJSON reports whether data starts with '{' (after a BOM and
// whitespace). YAML flow mappings also do; jsonDocs reports notJSON when
// the first value is not valid JSON, and the input is then read as YAML.
func looksLikeJSON(data []byte) bool {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	data = bytes.TrimLeft(data, " \t\r\n")
	return len(data) > 0 && data[0] == '{'
}

// jsonDocs parses a stream of JSON objects and emits their roots.
func (d *decoder) jsonDocs(data []byte, emit func(*yaml.Node) bool) (notJSON bool, err *Error) {
	p := newJSONParser(data)
	for first := true; p.skipSpace() < len(p.data); first = false {
		start := p.skipSpace()
		root, e := p.document()
		if e != nil {
			if first {
				return true, nil
			}
			e.File = d.w.file
			return false, e
		}
		if p.offset()-start > MaxDocumentSize {
			return false, d.docTooLarge(root.Line)
		}
		if !emit(root) {
			return false, nil
		}
	}
	return false, nil
}

// yamlDocs parses a YAML stream and emits the roots of non-empty documents.
func (d *decoder) yamlDocs(data []byte, emit func(*yaml.Node) bool) *Error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := safeYAMLDecode(dec, &doc)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return d.yamlError(err, data)
		}
		if len(doc.Content) == 0 {
			continue
		}
		if !emit(doc.Content[0]) {
			return nil
		}
	}
}

func (d *decoder) docTooLarge(line int) *Error {
	return &Error{File: d.w.file, Line: line, Msg: fmt.Sprintf("document exceeds the maximum size of %d bytes", MaxDocumentSize)}
}

// checkDocSizes enforces MaxDocumentSize before anything is parsed. It cuts
// the stream at "---" lines: YAML forbids such a line inside a scalar, so
// it always starts a document. A marker after nothing but comments,
// directives or "..." belongs to the same document.
func (d *decoder) checkDocSizes(data []byte) *Error {
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
				if off-start > MaxDocumentSize {
					return d.docTooLarge(startLine)
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
	if len(data)-start > MaxDocumentSize {
		return d.docTooLarge(startLine)
	}
	return nil
}

func isMarker(l []byte, m string) bool {
	return bytes.HasPrefix(l, []byte(m)) && (len(l) == 3 || l[3] == ' ' || l[3] == '\t' || l[3] == '\r' || l[3] == '\n')
}

func blankOrComment(l []byte) bool {
	l = bytes.TrimLeft(l, " \t\r\n")
	return len(l) == 0 || l[0] == '#'
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

// yamlParserProblems are the messages of libyaml's parser stage, whose line
// go.yaml.in/yaml/v3 reports 0-based (scanner errors are 1-based).
var yamlParserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// yamlError converts a parser error, correcting its line.
func (d *decoder) yamlError(err error, data []byte) *Error {
	msg := err.Error()
	line := 0
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		msg = msg[len(m[0]):]
		if l, convErr := strconv.Atoi(m[1]); convErr == nil {
			if yamlParserProblems[msg] {
				l++ // yaml.v3 reports parser (not scanner) errors 0-based
			}
			// An error at the end of the stream is reported on the line
			// after the last one.
			line = min(l, lineCount(data))
		}
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	return &Error{File: d.w.file, Line: line, Msg: "invalid YAML: " + msg, Err: err}
}

// document decodes one parsed document.
func (d *decoder) document(root *yaml.Node) *Error {
	d.w.path = d.w.path[:0]
	if err := d.w.prepare(root, 1); err != nil {
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
	// apiVersionValue and kindValue are the resolved type, possibly
	// inherited from a typed list.
	apiVersionValue, kindValue string
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
	doc.apiVersionValue, doc.kindValue = apiVersion, kind
	if kind == "List" || (strings.HasSuffix(kind, "List") && doc.itemKey != nil && doc.specKey == nil) {
		return d.list(doc, apiVersion, kind)
	}
	ki := kindTable[kindKey{apiVersion, kind}]
	if ki == nil {
		if why := nearMiss(apiVersion, kind); why != "" {
			return &Error{File: d.w.file, Line: n.Line, Path: "kind", Msg: why}
		}
		if d.single {
			return &Error{File: d.w.file, Line: n.Line, Path: d.w.path.String(), Err: ErrUnknownKind,
				Msg: fmt.Sprintf("%v %q (apiVersion %q)", ErrUnknownKind, clip(kind), clip(apiVersion))}
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
	return d.w.fail(k, "unknown field %q%s", clip(k.Value), suggest(k.Value, allowed))
}

// list decodes the items of a List or typed *List document.
func (d *decoder) list(doc *docNodes, apiVersion, kind string) *Error {
	if d.single {
		return d.w.fail(doc.root, "a %s is not accepted here; send a single object", clip(kind))
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

// lineCount is the number of lines of data, counting an unterminated last
// line.
func lineCount(data []byte) int {
	n := bytes.Count(data, []byte{'\n'})
	if len(data) > 0 && data[len(data)-1] != '\n' {
		n++
	}
	return max(n, 1)
}
