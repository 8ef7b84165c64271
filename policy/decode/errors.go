package decode

import (
	"errors"
	"strconv"
	"strings"
)

// ErrUnknownKind is wrapped by the *Error that DecodeObject returns for a
// document whose apiVersion/kind is not in the kind table.
var ErrUnknownKind = errors.New("unknown kind")

// Source locates a document: file name ("-" for stdin, "" for in-memory
// input) and the 1-based line where the document's mapping starts.
type Source struct {
	File string
	Line int
}

// String renders the location as "file:line".
func (s Source) String() string {
	return location(s.File, s.Line)
}

// Error is an input error. Line is 1-based; Path is the field path inside
// the document (e.g. "spec.rules[0].from[0].source.notRequestPrincipal").
// Err, when set, is the underlying cause (for example ErrUnknownKind).
type Error struct {
	File string
	Line int
	Path string
	Msg  string
	Err  error
}

// Error renders "file:line: field path: message", leaving out unknown parts.
func (e *Error) Error() string {
	var b strings.Builder
	if loc := location(e.File, e.Line); loc != "" {
		b.WriteString(loc)
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString("field ")
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.Err }

// displayName is how a file name is shown in messages.
func displayName(file string) string {
	switch file {
	case "-":
		return "<stdin>"
	case "":
		return ""
	}
	return file
}

func location(file string, line int) string {
	name := displayName(file)
	switch {
	case name != "" && line > 0:
		return name + ":" + strconv.Itoa(line)
	case name != "":
		return name
	case line > 0:
		return "line " + strconv.Itoa(line)
	}
	return ""
}

// pathSeg is one step of a field path: a mapping key, or a list index when
// idx >= 0.
type pathSeg struct {
	key string
	idx int
}

// fieldPath is a stack of segments; it is only rendered when an error is
// reported, so walking valid input does not allocate path strings.
type fieldPath []pathSeg

func (p *fieldPath) pushKey(k string) { *p = append(*p, pathSeg{key: k, idx: -1}) }
func (p *fieldPath) pushIdx(i int)    { *p = append(*p, pathSeg{idx: i}) }
func (p *fieldPath) pop()             { *p = (*p)[:len(*p)-1] }

// maxPathSegs bounds rendered paths: a path through a hostile, deeply
// nested document would otherwise be longer than the document.
const maxPathSegs = 32

func (p fieldPath) String() string {
	var b strings.Builder
	for i, s := range p {
		if i == maxPathSegs {
			b.WriteString("...")
			break
		}
		switch {
		case s.idx >= 0:
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.idx))
			b.WriteByte(']')
		case plainKey(s.key) && len(s.key) <= maxShown:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s.key)
		default:
			// Keys such as "app.kubernetes.io/name" would make the dotted
			// path ambiguous; quote them.
			b.WriteByte('[')
			b.WriteString(strconv.Quote(clip(s.key)))
			b.WriteByte(']')
		}
	}
	return b.String()
}

func plainKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c == '.' || c == '[' || c == ']' || c == '"' || c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// maxShown bounds how much of an input string an error message repeats.
const maxShown = 64

// clip shortens s for messages; hostile input may hold megabyte-long keys.
func clip(s string) string {
	if len(s) <= maxShown {
		return s
	}
	return strings.ToValidUTF8(s[:maxShown-3], "") + "..."
}
