package oracle

import (
	"strings"

	securityv1beta1 "istio.io/api/security/v1beta1"
)

// attribute is the value(s) a condition key denotes for the request and how a
// condition value is matched against them. No candidates = absent attribute.
type attribute struct {
	candidates []string
	match      func(pattern, value string) bool
}

// matchCondition evaluates one `when` condition: values ORed, notValues negated, both
// required when both are set. known is false for keys the oracle does not model.
func (e *evaluator) matchCondition(c *securityv1beta1.Condition) (matched, known bool) {
	attr, known := e.attribute(c.GetKey())
	if !known {
		return false, false
	}
	return field(c.GetValues(), c.GetNotValues(), attr.candidates, attr.match), true
}

// attribute resolves a condition key. destination.ip is deliberately unknown: the
// oracle is not told which of the workload's addresses the request was sent to.
func (e *evaluator) attribute(key string) (attribute, bool) {
	r := e.req
	switch key {
	case "request.auth.principal":
		return attribute{present(r.RequestPrincipal), MatchString}, true
	case "request.auth.audiences":
		return attribute{r.Audiences, MatchString}, true
	case "request.auth.presenter":
		return attribute{present(r.Presenter), MatchString}, true
	case "source.ip":
		return attribute{present(r.SourceIP), matchIP}, true
	case "remote.ip":
		return attribute{present(r.RemoteIP), matchIP}, true
	case "source.namespace":
		return attribute{present(e.peer.namespace), MatchString}, true
	case "source.principal":
		return attribute{present(e.peer.principal), MatchString}, true
	case "destination.port":
		return attribute{portValue(r.Port), matchPort}, true
	case "connection.sni":
		return attribute{present(r.SNI), MatchString}, true
	}
	if names, ok := bracketKey(key, "request.headers"); ok && len(names) == 1 {
		return e.header(names[0]), true
	}
	if names, ok := bracketKey(key, "request.auth.claims"); ok {
		// A missing claim (or a nil map: no token) yields no candidates.
		return attribute{r.Claims[strings.Join(names, ".")], MatchString}, true
	}
	return attribute{}, false
}

// header looks a header up by its case-insensitive name. Istio turns a "*" header value
// into Envoy's present_match, so "*" matches a present header even when it is empty.
func (e *evaluator) header(name string) attribute {
	v, found := e.req.Headers[strings.ToLower(name)]
	if !found {
		return attribute{}
	}
	return attribute{[]string{v}, func(pattern, value string) bool {
		return pattern == "*" || MatchString(pattern, value)
	}}
}

// bracketKey parses "<prefix>[a][b]..." into ["a", "b", ...]. Names must be non-empty
// and free of brackets; anything else is not a well-formed key.
func bracketKey(key, prefix string) ([]string, bool) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok || rest == "" {
		return nil, false
	}
	var names []string
	for rest != "" {
		inner, tail, ok := strings.Cut(rest, "]")
		if !ok || !strings.HasPrefix(inner, "[") {
			return nil, false
		}
		name := inner[1:]
		if name == "" || strings.ContainsAny(name, "[]") {
			return nil, false
		}
		names = append(names, name)
		rest = tail
	}
	return names, true
}
