package oracle

import (
	"regexp"
	"strings"
)

// MatchString reports whether value matches an Istio authorization string pattern:
// exact "abc", prefix "abc*", suffix "*abc", presence "*" (matches any NON-EMPTY value).
// Like Istio, a leading "*" is checked before a trailing one, so "*abc*" is a suffix
// match on the literal "abc*".
func MatchString(pattern, value string) bool {
	switch {
	case pattern == "*":
		return value != ""
	case strings.HasPrefix(pattern, "*"):
		return strings.HasSuffix(value, pattern[1:])
	case strings.HasSuffix(pattern, "*"):
		return strings.HasPrefix(value, pattern[:len(pattern)-1])
	default:
		return pattern == value
	}
}

// Path template operators (Istio syntax; Envoy's uri_template "*" and "**").
const (
	matchOneOp = "{*}"
	matchAnyOp = "{**}"
)

// pathChars is the character class Envoy's uri_template globs and literals accept
// (RFC 3986 pchar without "*"). A glob never matches other characters, e.g. "*" or
// a space in the request path.
const pathChars = `a-zA-Z0-9\-._~%!$&'()+,;:@=`

var (
	literalSegment = regexp.MustCompile(`^[` + pathChars + `]+$`)
	matchOneRegexp = `[` + pathChars + `]+`
	matchAnyRegexp = `[` + pathChars + `/]*`
)

// MatchPath is MatchString for paths plus URI templates: a pattern containing "{*}" or "{**}"
// is a template where "{*}" matches one or more characters within ONE path segment (no "/"),
// "{**}" matches zero or more characters including "/" and must be the last operator.
//
// Templates follow Envoy's uri_template matcher, which is what enforces them: the whole
// path must match, globs only match RFC 3986 path characters, and a trailing "/" in the
// template is a required trailing "/" in the path.
//
// An invalid template matches nothing, because Istio rejects such policies (and Envoy
// would not accept them): it must start with "/", every segment must be exactly "{*}",
// exactly "{**}" or a non-empty literal of path characters (only the last segment may be
// empty, i.e. a trailing "/"), no operator may follow "{**}", and "*", "{" or "}" may
// not appear outside an operator.
func MatchPath(pattern, path string) bool {
	if !isPathTemplate(pattern) {
		return MatchString(pattern, path)
	}
	re, ok := compileTemplate(pattern)
	return ok && re.MatchString(path)
}

func isPathTemplate(pattern string) bool {
	return strings.Contains(pattern, matchOneOp) || strings.Contains(pattern, matchAnyOp)
}

// compileTemplate validates a path template and turns it into an anchored regexp.
func compileTemplate(pattern string) (*regexp.Regexp, bool) {
	rest, ok := strings.CutPrefix(pattern, "/")
	if !ok {
		return nil, false
	}
	segments := strings.Split(rest, "/")
	parts := make([]string, len(segments))
	seenMatchAny := false
	for i, seg := range segments {
		switch {
		case seg == matchOneOp || seg == matchAnyOp:
			if seenMatchAny {
				return nil, false // "{**}" must be the last operator
			}
			seenMatchAny = seg == matchAnyOp
			parts[i] = matchOneRegexp
			if seenMatchAny {
				parts[i] = matchAnyRegexp
			}
		case seg == "" && i > 0 && i == len(segments)-1:
			parts[i] = "" // trailing "/"
		case literalSegment.MatchString(seg):
			parts[i] = regexp.QuoteMeta(seg)
		default:
			return nil, false
		}
	}
	return regexp.MustCompile(`^/` + strings.Join(parts, "/") + `$`), true
}
