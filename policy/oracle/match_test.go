package oracle

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestMatchString(t *testing.T) {
	tests := []struct {
		pattern, value string
		want           bool
	}{
		{"abc", "abc", true},
		{"abc", "abcd", false},
		{"abc", "ABC", false}, // case-sensitive
		{"abc*", "abc", true},
		{"abc*", "abcd", true},
		{"abc*", "xabc", false},
		{"*abc", "abc", true},
		{"*abc", "xabc", true},
		{"*abc", "abcx", false},
		{"*", "x", true},
		{"*", "", false},         // presence means non-empty
		{"*abc*", "xabc*", true}, // leading "*" wins: suffix "abc*"
		{"*abc*", "xabcx", false},
		{"", "", true},
		{"", "x", false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, MatchString(tt.pattern, tt.value), "MatchString(%q, %q)", tt.pattern, tt.value)
	}
}

func TestMatchPath(t *testing.T) {
	tests := []struct {
		pattern, path string
		want          bool
	}{
		// Plain patterns behave like MatchString.
		{"/v2/*", "/v2/models", true},
		{"/v2/*", "/v2", false},
		{"*", "/", true},
		{"/foo/{x}", "/foo/{x}", true}, // braces without an operator are literal
		// Examples from the Operation.paths documentation.
		{"/foo/{*}", "/foo/bar", true},
		{"/foo/{*}", "/foo/bar/baz", false},
		{"/foo/{**}/", "/foo/bar/", true},
		{"/foo/{**}/", "/foo//", true},
		{"/foo/{**}/", "/foo/bar", false},
		{"/foo/{*}/bar/{**}", "/foo/buzz/bar/", true},
		{"/foo/{*}/bar/{**}", "/foo/buzz/bar/baz", true},
		// Envoy's trailing "/" is required, so the doc's "/foo/bar/baz.txt" example does not match.
		{"/foo/{**}/", "/foo/bar/baz.txt", false},
		// Invalid templates from the documentation match nothing.
		{"/*/baz/{*}", "/a/baz/b", false},
		{"/**/baz/{*}", "/a/baz/b", false},
		{"/{**}/foo/{*}", "/a/foo/b", false},
		{"/foo/{*}.txt", "/foo/a.txt", false},
		// More template edge cases.
		{"/{*}", "/", false},              // {*} needs at least one character
		{"/{**}", "/", true},              // {**} may be empty
		{"/{**}", "/a/b/c", true},         // and span segments
		{"/a/{**}/{**}", "/a/b/c", false}, // two {**}: invalid
		{"/a/{**}/b", "/a/x/y/b", true},   // literals may follow {**}
		{"/a/{**}/b", "/a/b", false},      // "/" on both sides of {**} is literal
		{"/a/{**}", "/a", false},
		{"/a/{*}", "/a/b*c", false}, // globs never match "*"
		{"/a/{*}", "/a/b c", false}, // nor a space
		{"/a/{*}", "/a/b=c", true},  // "=" is a path character
		{"/a/{*}", "/a/%2F", true},  // percent-encoding is opaque
		{"a/{*}", "a/b", false},     // must start with "/"
		{"//{*}", "//a", false},     // empty interior segment
		{"/a/{*}/", "/a/b/", true},  // trailing "/" after {*}
		{"/a/{*}/", "/a/b", false},
		{"/a.b/{*}", "/aXb/c", false}, // literals are not regexps
		{"/a/{*}", "/a/b\n", false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, MatchPath(tt.pattern, tt.path), "MatchPath(%q, %q)", tt.pattern, tt.path)
	}
}

func TestStripPort(t *testing.T) {
	tests := map[string]string{
		"example.com":      "example.com",
		"example.com:8080": "example.com",
		"example.com:":     "example.com:",
		"example.com:http": "example.com:http",
		"[::1]:80":         "[::1]",
		"::1":              "::1",
		"10.0.0.1:443":     "10.0.0.1",
	}
	for in, want := range tests {
		assert.Equal(t, want, stripPort(in), "stripPort(%q)", in)
	}
}

func TestBracketKey(t *testing.T) {
	tests := []struct {
		key  string
		want []string
		ok   bool
	}{
		{"request.auth.claims[iss]", []string{"iss"}, true},
		{"request.auth.claims[a][b]", []string{"a", "b"}, true},
		{"request.auth.claims", nil, false},
		{"request.auth.claims[]", nil, false},
		{"request.auth.claims[a", nil, false},
		{"request.auth.claims[a]x", nil, false},
		{"request.auth.claims.x[a]", nil, false},
		{"request.auth.claims[a[b]]", nil, false},
	}
	for _, tt := range tests {
		got, ok := bracketKey(tt.key, "request.auth.claims")
		assert.Equal(t, tt.ok, ok, tt.key)
		assert.Equal(t, tt.want, got, tt.key)
	}
}
