package policy

import (
	"strings"

	"github.com/modelguard/modelguard/policy/oracle"
)

// tri is how a condition relates to a set of requests: it matches none of them, some of them,
// or all of them. The engine answers "some" whenever it cannot prove none or all, which keeps
// every conclusion sound: a DENY rule proves coverage only when it matches all requests of a
// route, and an ALLOW rule leaves them denied only when it matches none.
type tri uint8

const (
	triNone tri = iota
	triSome
	triAll
)

func (t tri) String() string { return [...]string{"none", "some", "all"}[t] }

func (t tri) and(u tri) tri {
	switch {
	case t == triNone || u == triNone:
		return triNone
	case t == triAll && u == triAll:
		return triAll
	}
	return triSome
}

func (t tri) or(u tri) tri {
	switch {
	case t == triAll || u == triAll:
		return triAll
	case t == triNone && u == triNone:
		return triNone
	}
	return triSome
}

func (t tri) not() tri { return triAll - t }

// setKind is the shape of a set of string values an attribute of a request can take.
type setKind uint8

const (
	setAbsent setKind = iota // the attribute is missing (no token, no peer identity, no header)
	setExact                 // exactly one value
	setPrefix                // every value starting with s (s itself included)
	setSuffix                // every value ending with s (s itself included)
	setAny                   // any value, or absent: the attacker chooses
)

// strSet is a set of values of one request attribute.
type strSet struct {
	kind setKind
	s    string
}

var (
	absent = strSet{kind: setAbsent}
	anyStr = strSet{kind: setAny}
)

func exactly(s string) strSet  { return strSet{kind: setExact, s: s} }
func prefixed(s string) strSet { return strSet{kind: setPrefix, s: s} }
func suffixed(s string) strSet { return strSet{kind: setSuffix, s: s} }

func (v strSet) String() string {
	switch v.kind {
	case setAbsent:
		return "(absent)"
	case setExact:
		return v.s
	case setPrefix:
		return v.s + "…"
	case setSuffix:
		return "…" + v.s
	}
	return "(any)"
}

// sample returns one concrete member of the set, preferring one that the hint leaves out.
func (v strSet) sample() (string, bool) {
	switch v.kind {
	case setAbsent:
		return "", false
	case setExact, setPrefix, setSuffix:
		return v.s, true
	}
	return "any.example.com", true
}

// contains reports whether value is a member of the set.
func (v strSet) contains(value string) bool {
	switch v.kind {
	case setExact:
		return value == v.s
	case setPrefix:
		return strings.HasPrefix(value, v.s)
	case setSuffix:
		return strings.HasSuffix(value, v.s)
	case setAny:
		return true
	}
	return false
}

// relate relates an Istio string pattern (exact, "abc*", "*abc", "*") to a set of values.
// Absent values never match a pattern; "*" matches any non-empty value.
func relate(pattern string, v strSet) tri {
	switch v.kind {
	case setAbsent:
		return triNone
	case setExact:
		return boolTri(oracle.MatchString(pattern, v.s))
	case setAny:
		return triSome
	}
	if pattern == "*" {
		return triAll // prefix and suffix sets hold only non-empty values here
	}
	// A leading "*" wins, as in Istio: "*abc*" is a suffix match on "abc*".
	switch {
	case strings.HasPrefix(pattern, "*"):
		return relateSuffixPattern(strings.TrimPrefix(pattern, "*"), v)
	case strings.HasSuffix(pattern, "*"):
		return relatePrefixPattern(strings.TrimSuffix(pattern, "*"), v)
	}
	return relateExactPattern(pattern, v)
}

func relatePrefixPattern(q string, v strSet) tri {
	if v.kind == setPrefix {
		switch {
		case strings.HasPrefix(v.s, q):
			return triAll
		case strings.HasPrefix(q, v.s):
			return triSome
		}
		return triNone
	}
	return triSome // a suffix set always holds q+suffix
}

func relateSuffixPattern(t string, v strSet) tri {
	if v.kind == setSuffix {
		switch {
		case strings.HasSuffix(v.s, t):
			return triAll
		case strings.HasSuffix(t, v.s):
			return triSome
		}
		return triNone
	}
	return triSome // a prefix set always holds prefix+t
}

func relateExactPattern(e string, v strSet) tri {
	if (v.kind == setPrefix && strings.HasPrefix(e, v.s)) || (v.kind == setSuffix && strings.HasSuffix(e, v.s)) {
		return triSome
	}
	return triNone
}

// relatePath is relate for request paths, which also take URI templates ({*}, {**}).
func relatePath(pattern string, v strSet) tri {
	if !strings.Contains(pattern, "{") {
		return relate(pattern, v)
	}
	switch v.kind {
	case setAbsent:
		return triNone
	case setExact:
		return boolTri(oracle.MatchPath(pattern, v.s))
	case setPrefix:
		lit := pattern[:strings.Index(pattern, "{")]
		if !strings.HasPrefix(lit, v.s) && !strings.HasPrefix(v.s, lit) {
			return triNone
		}
		// Never "all": Envoy's templates match only URL path characters, so a path holding
		// e.g. "*" escapes even "/{**}".
	}
	return triSome
}

// relateHost relates a host pattern to a set of Host headers. Istio compares hosts without
// case and lets an exact or prefix pattern also match "host:port"; a suffix pattern does not
// match the ":port" form, so the attacker can add a port to slip past it.
func relateHost(pattern string, v strSet) tri {
	pattern = strings.ToLower(pattern)
	v.s = strings.ToLower(v.s)
	r := relate(pattern, v)
	if r == triAll && strings.HasPrefix(pattern, "*") && pattern != "*" {
		return triSome
	}
	return r
}

func boolTri(b bool) tri {
	if b {
		return triAll
	}
	return triNone
}

// anyOf relates a list of alternative patterns (values ORed) to a set.
func anyOf(patterns []string, v strSet, rel func(string, strSet) tri) tri {
	r := triNone
	for _, p := range patterns {
		r = r.or(rel(p, v))
		if r == triAll {
			return r
		}
	}
	return r
}
