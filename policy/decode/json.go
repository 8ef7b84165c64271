package decode

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
	yaml "go.yaml.in/yaml/v3"
)

// jsonParser builds yaml.Node trees from JSON so that JSON input goes
// through the same checks as YAML, with its real line numbers. It is not
// left to the YAML parser because JSON is not quite YAML: "\/" escapes and
// surrogate pairs are valid JSON that YAML rejects, and a JSON stream of
// concatenated objects is not a YAML stream.
//
// Tokens come from jsontext (encoding/json/v2's tokenizer, in the standard
// library from Go 1.27): every admission request's object is JSON, and
// encoding/json's Decoder.Token, which allocated for every scalar and built
// an error value at the end of each one, was most of the cost of decoding it.
type jsonParser struct {
	data []byte
	dec  *jsontext.Decoder
	pos  int // lines are counted up to pos
	line int // line number at pos
	// skipUnread reads the parts of an admission object that no verdict reads, the root's
	// status and metadata.managedFields, for their JSON syntax and depth only, and drops them
	// (DecodeObject). metaNext marks the next value parsed as the root's metadata.
	skipUnread, metaNext bool
	stack                []*yaml.Node // children of the collections being parsed
	arena                *nodeArena   // lends the tree's memory (DecodeObject); nil: the heap
}

// newNode returns a scalar node at line, from the arena or the heap; a collection turns it
// into one.
func (p *jsonParser) newNode(line int) *yaml.Node {
	var n *yaml.Node
	if p.arena != nil {
		n = p.arena.node()
	} else {
		n = new(yaml.Node)
	}
	n.Kind, n.Line, n.Column = yaml.ScalarNode, line, 1
	return n
}

func newJSONParser(data []byte) *jsonParser {
	// A byte order mark sits on line 1, so dropping it changes no line number.
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	// Duplicate names are left to the walker, which reports them with the
	// path and line as it does for YAML. A bytes.Buffer is read in place.
	dec := jsontext.NewDecoder(bytes.NewBuffer(data), jsontext.AllowDuplicateNames(true))
	return &jsonParser{data: data, dec: dec, line: 1}
}

func (p *jsonParser) offset() int { return int(p.dec.InputOffset()) }

// skipSpace returns the offset of the next token, skipping whitespace and
// the separators the decoder consumes implicitly.
func (p *jsonParser) skipSpace() int {
	i := p.offset()
	for i < len(p.data) {
		switch p.data[i] {
		case ' ', '\t', '\r', '\n', ',', ':':
			i++
			continue
		}
		break
	}
	return i
}

// lineAt returns the line of offset off; offsets must not decrease.
func (p *jsonParser) lineAt(off int) int {
	if off > len(p.data) {
		off = len(p.data)
	}
	if off > p.pos {
		p.line += bytes.Count(p.data[p.pos:off], []byte{'\n'})
		p.pos = off
	}
	return p.line
}

// document parses the next top-level value, which must be an object.
func (p *jsonParser) document() (*yaml.Node, *Error) {
	start := p.skipSpace()
	if start < len(p.data) && p.data[start] != '{' {
		return nil, &Error{Line: p.lineAt(start), Msg: fmt.Sprintf("invalid JSON: expected an object, found %q", p.data[start])}
	}
	return p.value(1)
}

func (p *jsonParser) value(depth int) (*yaml.Node, *Error) {
	start := p.skipSpace()
	line := p.lineAt(start)
	if depth > MaxDepth {
		return nil, &Error{Line: line, Msg: tooDeep}
	}
	meta := p.metaNext
	p.metaNext = false
	if k := p.dec.PeekKind(); k == '"' || k == '0' {
		return p.scalar(k, line, start)
	}
	tok, err := p.dec.ReadToken()
	if err != nil {
		return nil, p.syntaxError(err, start)
	}
	n := p.newNode(line)
	switch k := tok.Kind(); k {
	case '{', '[':
		return p.collection(n, k, depth, meta)
	case 't':
		n.Tag, n.Value = tagBool, "true"
	case 'f':
		n.Tag, n.Value = tagBool, "false"
	case 'n':
		n.Tag, n.Value = tagNull, "null"
	default: // the tokenizer reports a misplaced '}' or ']' as a syntax error
		return nil, &Error{Line: line, Msg: fmt.Sprintf("invalid JSON: unexpected %q", k.String())}
	}
	return n, nil
}

// scalar reads a string or a number from its raw text, which the decoder has validated: most
// strings are names without escapes that need no copy to look up (see internedString).
func (p *jsonParser) scalar(k jsontext.Kind, line, start int) (*yaml.Node, *Error) {
	raw, err := p.dec.ReadValue()
	if err != nil {
		return nil, p.syntaxError(err, start)
	}
	n := p.newNode(line)
	if k == '0' {
		s := string(raw) // a number's text as written
		n.Tag, n.Value = numberTag(s), s
		return n, nil
	}
	n.Tag, n.Style = tagStr, yaml.DoubleQuotedStyle
	if body := raw[1 : len(raw)-1]; bytes.IndexByte(body, '\\') < 0 {
		n.Value = internedString(body)
		return n, nil
	}
	unq, err := jsontext.AppendUnquote(nil, raw)
	if err != nil {
		return nil, p.syntaxError(err, start)
	}
	n.Value = string(unq)
	return n, nil
}

// numberTag classifies a JSON number like the YAML resolver would: an
// integer when it has integer syntax and fits in 64 bits, else a float.
func numberTag(s string) string {
	if !strings.ContainsAny(s, ".eE") {
		if _, ok := intText(s); ok {
			return tagInt
		}
	}
	return tagFloat
}

func (p *jsonParser) collection(n *yaml.Node, open jsontext.Kind, depth int, meta bool) (*yaml.Node, *Error) {
	n.Kind, n.Tag = yaml.SequenceNode, tagSeq
	closing := jsontext.Kind(']')
	if open == '{' {
		n.Kind, n.Tag, closing = yaml.MappingNode, tagMap, '}'
	}
	// Children gather on the parser's stack, shared by all collections, and are copied once
	// into a slice of their exact size: appending to Content grew it several times over.
	base := len(p.stack)
	defer func() { p.stack = p.stack[:base] }()
	// PeekKind is 0 on a syntax error or the end of input; the next
	// ReadToken (in value, or below) then reports it.
	for k := p.dec.PeekKind(); k != closing && k != 0; k = p.dec.PeekKind() {
		if open == '{' {
			key, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			if p.skipUnread && (meta && key.Value == "managedFields" || depth == 1 && key.Value == "status") {
				if err := p.skipValue(depth + 1); err != nil {
					return nil, err
				}
				continue
			}
			p.stack = append(p.stack, key)
			p.metaNext = depth == 1 && key.Value == "metadata"
		}
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		p.stack = append(p.stack, v)
	}
	end := p.skipSpace()
	if _, err := p.dec.ReadToken(); err != nil {
		return nil, p.syntaxError(err, end)
	}
	switch {
	case len(p.stack) == base:
	case p.arena != nil:
		n.Content = p.arena.clone(p.stack[base:])
	default:
		n.Content = slices.Clone(p.stack[base:])
	}
	return n, nil
}

// skipValue consumes the next value, found at nesting depth, checking only its syntax and
// that it nests no deeper than MaxDepth, as a parsed value must.
func (p *jsonParser) skipValue(depth int) *Error {
	start := p.skipSpace()
	if k := p.dec.PeekKind(); k == '{' || k == '[' {
		for level := depth - 1; ; {
			at := p.skipSpace()
			tok, err := p.dec.ReadToken()
			if err != nil {
				return p.syntaxError(err, at)
			}
			switch k := tok.Kind(); k {
			case '}', ']':
				if level--; level == depth-1 {
					return nil
				}
			default: // a value or an object name, one level below its collection
				if level+1 > MaxDepth {
					return &Error{Line: p.lineAt(at), Msg: tooDeep}
				}
				if k == '{' || k == '[' {
					level++
				}
			}
		}
	}
	if _, err := p.dec.ReadValue(); err != nil {
		return p.syntaxError(err, start)
	}
	return nil
}

func (p *jsonParser) syntaxError(err error, at int) *Error {
	msg := strings.TrimPrefix(err.Error(), "jsontext: ")
	var se *jsontext.SyntacticError
	if errors.As(err, &se) {
		at = int(se.ByteOffset)
		if se.Err != nil {
			msg = se.Err.Error() // the line replaces the offset and pointer
		}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		msg = "unexpected end of input"
	}
	return &Error{Line: p.lineAt(at), Msg: "invalid JSON: " + msg, Err: err}
}
