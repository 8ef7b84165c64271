package decode

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// jsonParser builds yaml.Node trees from JSON so that JSON input goes
// through the same checks as YAML, with its real line numbers. It is not
// left to the YAML parser because JSON is not quite YAML: "\/" escapes and
// surrogate pairs are valid JSON that YAML rejects, and a JSON stream of
// concatenated objects is not a YAML stream.
type jsonParser struct {
	data []byte
	dec  *json.Decoder
	pos  int // lines are counted up to pos
	line int // line number at pos
}

func newJSONParser(data []byte) *jsonParser {
	// encoding/json does not skip a byte order mark; it sits on line 1, so
	// dropping it changes no line number.
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
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
		return nil, &Error{Line: line, Msg: fmt.Sprintf("document nesting exceeds the maximum depth of %d", MaxDepth)}
	}
	tok, err := p.dec.Token()
	if err != nil {
		return nil, p.syntaxError(err, start)
	}
	n := &yaml.Node{Kind: yaml.ScalarNode, Line: line, Column: 1}
	switch t := tok.(type) {
	case json.Delim:
		return p.collection(n, t, depth)
	case string:
		n.Tag, n.Value, n.Style = tagStr, t, yaml.DoubleQuotedStyle
	case json.Number:
		n.Tag, n.Value = numberTag(string(t)), string(t)
	case bool:
		n.Tag, n.Value = tagBool, strconv.FormatBool(t)
	case nil:
		n.Tag, n.Value = tagNull, "null"
	}
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

func (p *jsonParser) collection(n *yaml.Node, open json.Delim, depth int) (*yaml.Node, *Error) {
	n.Kind, n.Tag = yaml.SequenceNode, tagSeq
	if open == '{' {
		n.Kind, n.Tag = yaml.MappingNode, tagMap
	}
	for p.dec.More() {
		if open == '{' {
			k, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, k)
		}
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		n.Content = append(n.Content, v)
	}
	end := p.skipSpace()
	if _, err := p.dec.Token(); err != nil {
		return nil, p.syntaxError(err, end)
	}
	return n, nil
}

func (p *jsonParser) syntaxError(err error, at int) *Error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		at = int(se.Offset)
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		msg = "unexpected end of input"
	}
	return &Error{Line: p.lineAt(at), Msg: "invalid JSON: " + msg, Err: err}
}
