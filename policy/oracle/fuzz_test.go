package oracle

import (
	"strings"
	"testing"
)

// FuzzMatchPath checks MatchPath for panics, the presence and exact-match properties,
// and compares templates with refMatchTemplate, an independent backtracking matcher.
func FuzzMatchPath(f *testing.F) {
	seeds := [][2]string{
		{"/v2/*", "/v2/models/iris/infer"},
		{"*", "/"},
		{"*", ""},
		{"/foo/{*}", "/foo/bar"},
		{"/foo/{**}/", "/foo/bar/baz.txt"},
		{"/foo/{*}/bar/{**}", "/foo/buzz/bar/baz"},
		{"/{**}/foo/{*}", "/a/foo/b"},
		{"/foo/{*}.txt", "/foo/a.txt"},
		{"{*}", "a"},
		{"/{*}/", "//"},
		{"/a/{**}", "/a/b=c/%20"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, path string) {
		got := MatchPath(pattern, path)
		if MatchPath("*", path) != (path != "") {
			t.Fatalf(`MatchPath("*", %q) is not presence`, path)
		}
		if !strings.Contains(pattern, "*") {
			if !MatchPath(pattern, pattern) {
				t.Fatalf("MatchPath(%q, itself) = false", pattern)
			}
			if got != (pattern == path) {
				t.Fatalf("MatchPath(%q, %q) = %v, want exact comparison", pattern, path, got)
			}
		}
		if isPathTemplate(pattern) {
			if want := refMatchTemplate(pattern, path); got != want {
				t.Fatalf("MatchPath(%q, %q) = %v, reference says %v", pattern, path, got, want)
			}
		}
	})
}

// Reference template matcher: tokenizes character by character and backtracks, sharing
// no code with compileTemplate.

type refToken struct {
	op  string // matchOneOp, matchAnyOp or "" for a literal byte
	lit byte
}

func refMatchTemplate(pattern, path string) bool {
	tokens, ok := refTokenize(pattern)
	return ok && refValid(tokens) && refMatch(tokens, path)
}

func refTokenize(pattern string) ([]refToken, bool) {
	var tokens []refToken
	for i := 0; i < len(pattern); {
		switch {
		case strings.HasPrefix(pattern[i:], matchAnyOp):
			tokens = append(tokens, refToken{op: matchAnyOp})
			i += len(matchAnyOp)
		case strings.HasPrefix(pattern[i:], matchOneOp):
			tokens = append(tokens, refToken{op: matchOneOp})
			i += len(matchOneOp)
		case refIsPathChar(pattern[i]) || pattern[i] == '/':
			tokens = append(tokens, refToken{lit: pattern[i]})
			i++
		default:
			return nil, false // "*", "{", "}" or a non-path character outside an operator
		}
	}
	return tokens, true
}

// refValid: leading "/", operators fill whole segments, no operator after {**},
// no empty segment except a final one.
func refValid(tokens []refToken) bool {
	if len(tokens) == 0 || tokens[0] != (refToken{lit: '/'}) {
		return false
	}
	seenAny := false
	for i, tok := range tokens {
		isSlash := tok == refToken{lit: '/'}
		if isSlash && i > 0 && tokens[i-1] == tok {
			return false // "//": empty interior segment
		}
		if tok.op == "" {
			continue
		}
		if seenAny || tokens[i-1] != (refToken{lit: '/'}) {
			return false
		}
		if i+1 < len(tokens) && tokens[i+1] != (refToken{lit: '/'}) {
			return false
		}
		seenAny = tok.op == matchAnyOp
	}
	return true
}

func refMatch(tokens []refToken, path string) bool {
	if len(tokens) == 0 {
		return path == ""
	}
	tok := tokens[0]
	switch tok.op {
	case "":
		return path != "" && path[0] == tok.lit && refMatch(tokens[1:], path[1:])
	case matchOneOp:
		for n := 1; n <= len(path) && refIsPathChar(path[n-1]); n++ {
			if refMatch(tokens[1:], path[n:]) {
				return true
			}
		}
		return false
	default: // matchAnyOp
		for n := 0; n <= len(path); n++ {
			if refMatch(tokens[1:], path[n:]) {
				return true
			}
			if n < len(path) && !refIsPathChar(path[n]) && path[n] != '/' {
				return false
			}
		}
		return false
	}
}

// refIsPathChar is RFC 3986 pchar without "*" (Envoy's uri_template alphabet).
func refIsPathChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~%!$&'()+,;:@=", c) >= 0
}

// TestMatchPathAgainstReference compares MatchPath with the reference matcher on every
// small pattern and path over a tiny alphabet, so the comparison does not depend on how
// long the fuzzer ran.
func TestMatchPathAgainstReference(t *testing.T) {
	patterns := words([]string{"/", "a", "*", matchOneOp, matchAnyOp}, 4)
	paths := words([]string{"/", "a", "*"}, 5)
	compared := 0
	for _, pattern := range patterns {
		if !isPathTemplate(pattern) {
			continue
		}
		for _, path := range paths {
			if got, want := MatchPath(pattern, path), refMatchTemplate(pattern, path); got != want {
				t.Fatalf("MatchPath(%q, %q) = %v, reference says %v", pattern, path, got, want)
			}
			compared++
		}
	}
	t.Logf("compared %d (pattern, path) pairs", compared)
}

// words returns every concatenation of at most n symbols (including the empty one).
func words(symbols []string, n int) []string {
	all := []string{""}
	level := []string{""}
	for range n {
		var next []string
		for _, w := range level {
			for _, s := range symbols {
				next = append(next, w+s)
			}
		}
		all = append(all, next...)
		level = next
	}
	return all
}
