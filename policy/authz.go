package policy

import (
	"fmt"
	"slices"
	"strings"

	securityapi "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
)

// reqClass is a set of requests as one workload's proxy sees them: what the attacker (or a
// legitimate caller) controls is a set, what the route or the mesh fixes is a single value.
type reqClass struct {
	path, method, host strSet
	principal          strSet            // request principal "<iss>/<sub>"; absent without a valid token
	issuer             string            // the token's issuer; "" without a token
	peerNS             strSet            // source namespace from mTLS; absent for plaintext
	peerPrincipal      strSet            // source principal from mTLS; absent for plaintext
	peerSA             strSet            // "ns/sa"; absent for plaintext
	headers            map[string]strSet // the route's match, shared with it (read-only)
	fixed              []fixedHeader     // headers the route or the mesh sets, over headers
}

// fixedHeader is a header value fixed for a class on top of the route's match.
type fixedHeader struct {
	name string
	v    strSet
}

// header is the set of values header name (lower case) takes in the class.
func (c *reqClass) header(name string) (strSet, bool) {
	for _, f := range c.fixed {
		if f.name == name {
			return f.v, true
		}
	}
	v, ok := c.headers[name]
	return v, ok
}

// appliedAP is an AuthorizationPolicy with how sure the engine is that it applies.
type appliedAP struct {
	p *securityv1.AuthorizationPolicy
	a applicability
}

// hopPolicies are the security policies that can apply to one workload.
type hopPolicies struct {
	custom, deny, allow []appliedAP
	ras                 []appliedRA
	// unplaced: the workload's namespace is unknown (a gateway whose pods are not in the mesh
	// state), so policies of its namespace, whatever it is, are missing from the lists.
	unplaced bool
}

type appliedRA struct {
	p *securityv1.RequestAuthentication
	a applicability
}

// accepts reports how surely the workload's RequestAuthentications validate tokens of issuer,
// and whether a validating rule strips the token before forwarding (Istio's default).
func (h *hopPolicies) accepts(issuer string) (a applicability, strips bool) {
	for _, ra := range h.ras {
		for _, r := range ra.p.Spec.GetJwtRules() {
			if r.GetIssuer() != issuer {
				continue
			}
			if ra.a > a {
				a = ra.a
			}
			if ra.a == applyYes && !r.GetForwardOriginalToken() {
				strips = true
			}
		}
	}
	return a, strips
}

// issuers lists the issuers any RequestAuthentication on the workload may validate, in
// order of appearance. A set keeps it linear: one object may carry tens of thousands of
// jwtRules, and a quadratic scan of them stalled an admission for seconds.
func (h *hopPolicies) issuers() []string {
	var out []string
	seen := map[string]bool{}
	for _, ra := range h.ras {
		for _, r := range ra.p.Spec.GetJwtRules() {
			if iss := r.GetIssuer(); !seen[iss] {
				seen[iss] = true
				out = append(out, iss)
			}
		}
	}
	return out
}

// hopVerdict says whether every request of a class is denied at a workload, and why. The
// reason is kept as data and rendered only for a finding: most verdicts need none.
type hopVerdict struct {
	denied bool
	why    whyKind
	by     *securityv1.AuthorizationPolicy // the deciding policy, if one decided
	rule   int
	match  tri
	hop    *hopPolicies
	notes  []Finding // assumptions the engine made (unmodelled conditions, untrusted CUSTOM)
}

type whyKind uint8

const (
	whyNone        whyKind = iota
	whyCustom              // a trusted CUSTOM rule matches every request
	whyDeny                // a DENY rule matches every request
	whyAllowMatch          // an ALLOW rule may admit requests
	whyAllowNone           // ALLOW policies apply and none admits the requests
	whyNoDenyAllow         // nothing denies
	whyUnplaced            // ALLOW policies apply, but others in the unknown namespace may too
)

func (hv hopVerdict) reason() string {
	switch hv.why {
	case whyCustom:
		return fmt.Sprintf("CUSTOM rule %d of %s/%s sends it to trusted provider %q", hv.rule, hv.by.Namespace, hv.by.Name, hv.by.Spec.GetProvider().GetName())
	case whyDeny:
		return fmt.Sprintf("DENY rule %d of %s/%s", hv.rule, hv.by.Namespace, hv.by.Name)
	case whyAllowMatch:
		return fmt.Sprintf("ALLOW rule %d of %s/%s admits %s such requests", hv.rule, hv.by.Namespace, hv.by.Name, map[tri]string{triSome: "some", triAll: "all"}[hv.match])
	case whyAllowNone:
		return "ALLOW policies apply and none admits such requests"
	case whyNoDenyAllow:
		return explainNoDeny(hv.hop)
	case whyUnplaced:
		return "mesh-wide ALLOW policies apply, but the pods' namespace is unknown and its own ALLOW policies may admit such requests"
	}
	return ""
}

// judgeHop decides whether Istio denies every request of class c at a workload with policies
// h: CUSTOM first (only trusted providers count), then DENY (one rule matching every request
// suffices), then ALLOW (if one surely applies, requests no ALLOW rule can match are denied).
func (ev *evaluation) judgeHop(h *hopPolicies, c *reqClass, attack bool) hopVerdict {
	var hv hopVerdict
	for _, ap := range h.custom {
		provider := ap.p.Spec.GetProvider().GetName()
		if !slices.Contains(ev.cfg.TrustedExtAuthzProviders, provider) {
			hv.notes = append(hv.notes, Finding{Code: CodeUntrustedCustom, Severity: SeverityInfo,
				Message: fmt.Sprintf("CUSTOM policy %s/%s (provider %q) is not counted: list the provider in trustedExtAuthzProviders if it enforces JWT", ap.p.Namespace, ap.p.Name, provider)})
			continue
		}
		if ap.a == applyYes && attack && c.principal.kind == setAbsent {
			if i, ok := ev.ruleMatchingAll(ap, c, &hv); ok {
				hv.denied, hv.why, hv.by, hv.rule = true, whyCustom, ap.p, i
				return hv
			}
		}
	}
	for _, ap := range h.deny {
		if ap.a != applyYes {
			continue
		}
		if i, ok := ev.ruleMatchingAll(ap, c, &hv); ok {
			hv.denied, hv.why, hv.by, hv.rule = true, whyDeny, ap.p, i
			return hv
		}
	}
	return ev.judgeAllow(h, c, hv)
}

func (ev *evaluation) judgeAllow(h *hopPolicies, c *reqClass, hv hopVerdict) hopVerdict {
	if h.unplaced && len(h.allow) > 0 {
		// An ALLOW policy of the unknown namespace could admit what these ALLOWs leave out.
		hv.why, hv.hop = whyUnplaced, h
		return hv
	}
	sure := false
	for _, ap := range h.allow {
		sure = sure || ap.a == applyYes
	}
	if !sure {
		hv.why, hv.hop = whyNoDenyAllow, h
		return hv
	}
	for _, ap := range h.allow {
		for i, r := range ap.p.Spec.GetRules() {
			if m := ev.matchRule(r, c, securityapi.AuthorizationPolicy_ALLOW, &hv); m != triNone {
				hv.why, hv.by, hv.rule, hv.match = whyAllowMatch, ap.p, i, m
				return hv
			}
		}
	}
	hv.denied, hv.why = true, whyAllowNone
	return hv
}

func explainNoDeny(h *hopPolicies) string {
	if len(h.deny) == 0 {
		return "no DENY policy and no ALLOW policy applies"
	}
	var sure, maybe []string
	for _, ap := range h.deny {
		if ap.a == applyYes {
			sure = append(sure, ap.p.Namespace+"/"+ap.p.Name)
		} else {
			maybe = append(maybe, ap.p.Namespace+"/"+ap.p.Name)
		}
	}
	var parts []string
	if len(sure) > 0 {
		parts = append(parts, "DENY "+strings.Join(sure, ", ")+" does not match every such request")
	}
	if len(maybe) > 0 {
		parts = append(parts, "DENY "+strings.Join(maybe, ", ")+" selects labels these pods are not known to carry")
	}
	return strings.Join(parts, "; ") + ", and no ALLOW policy applies"
}

// ruleMatchingAll returns the index of a rule of ap that matches every request of c.
func (ev *evaluation) ruleMatchingAll(ap appliedAP, c *reqClass, hv *hopVerdict) (int, bool) {
	for i, r := range ap.p.Spec.GetRules() {
		if ev.matchRule(r, c, ap.p.Spec.GetAction(), hv) == triAll {
			return i, true
		}
	}
	return 0, false
}

// rule relates one rule to the class: from, to and when are ANDed; entries of from and of to
// are ORed; an absent part does not constrain.
func (ev *evaluation) matchRule(r *securityapi.Rule, c *reqClass, action securityapi.AuthorizationPolicy_Action, hv *hopVerdict) tri {
	res := triAll
	if len(r.GetFrom()) > 0 {
		f := triNone
		for _, from := range r.GetFrom() {
			f = f.or(c.source(from.GetSource()))
		}
		res = res.and(f)
	}
	if len(r.GetTo()) > 0 && res != triNone {
		t := triNone
		for _, to := range r.GetTo() {
			t = t.or(c.operation(to.GetOperation()))
		}
		res = res.and(t)
	}
	for _, cond := range r.GetWhen() {
		if res == triNone {
			break
		}
		res = res.and(ev.condition(cond, c, action, hv))
	}
	return res
}

// field relates one field: values ORed, then not-values negated, both ANDed.
func relateField(pos, neg []string, v strSet, rel func(string, strSet) tri) tri {
	r := triAll
	if len(pos) > 0 {
		r = anyOf(pos, v, rel)
	}
	if len(neg) > 0 {
		r = r.and(anyOf(neg, v, rel).not())
	}
	return r
}

// unknownField is a field whose value the engine cannot know (IPs, ports): any constraint on
// it may or may not hold.
func unknownField(pos, neg []string) tri {
	if len(pos) == 0 && len(neg) == 0 {
		return triAll
	}
	return triSome
}

func (c *reqClass) source(s *securityapi.Source) tri {
	if s == nil {
		return triAll
	}
	r := relateField(s.GetPrincipals(), s.GetNotPrincipals(), c.peerPrincipal, relate)
	r = r.and(relateField(s.GetRequestPrincipals(), s.GetNotRequestPrincipals(), c.principal, relate))
	r = r.and(relateField(s.GetNamespaces(), s.GetNotNamespaces(), c.peerNS, relate))
	r = r.and(relateField(s.GetServiceAccounts(), s.GetNotServiceAccounts(), c.peerSA, relate))
	r = r.and(unknownField(s.GetIpBlocks(), s.GetNotIpBlocks()))
	return r.and(unknownField(s.GetRemoteIpBlocks(), s.GetNotRemoteIpBlocks()))
}

func (c *reqClass) operation(o *securityapi.Operation) tri {
	if o == nil {
		return triAll
	}
	r := relateField(o.GetPaths(), o.GetNotPaths(), c.path, relatePath)
	r = r.and(relateField(o.GetMethods(), o.GetNotMethods(), c.method, relate))
	r = r.and(relateField(o.GetHosts(), o.GetNotHosts(), c.host, relateHost))
	return r.and(unknownField(o.GetPorts(), o.GetNotPorts()))
}

// condition relates a `when` condition. Keys the engine does not model relate as "some":
// a DENY rule holding one never proves coverage, an ALLOW rule holding one may admit.
func (ev *evaluation) condition(cond *securityapi.Condition, c *reqClass, action securityapi.AuthorizationPolicy_Action, hv *hopVerdict) tri {
	v, known := c.conditionValue(cond.GetKey())
	if !known {
		hv.notes = append(hv.notes, Finding{Code: CodeUnmodelledCondition, Severity: SeverityInfo,
			Message: fmt.Sprintf("`when` key %q is not modelled: judged at its worst for security in this %s rule", cond.GetKey(), action)})
		return unknownField(cond.GetValues(), cond.GetNotValues())
	}
	if v == nil {
		return unknownField(cond.GetValues(), cond.GetNotValues())
	}
	return relateField(cond.GetValues(), cond.GetNotValues(), *v, relate)
}

// conditionValue returns the set of values a condition key takes in the class: known with a
// nil set when the key is understood but its value unknowable (IPs, ports, SNI).
func (c *reqClass) conditionValue(key string) (*strSet, bool) {
	tokenless := c.principal.kind == setAbsent
	tokenValue := func(v strSet) (*strSet, bool) {
		if tokenless {
			return &absent, true
		}
		return &v, true
	}
	switch {
	case key == "request.auth.principal":
		return &c.principal, true
	case key == "request.auth.audiences", key == "request.auth.presenter":
		return tokenValue(anyStr)
	case key == "request.auth.claims[iss]":
		return tokenValue(exactly(c.issuer))
	case strings.HasPrefix(key, "request.auth.claims[") && strings.HasSuffix(key, "]"):
		return tokenValue(anyStr)
	case strings.HasPrefix(key, "request.headers[") && strings.HasSuffix(key, "]"):
		h := strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(key, "request.headers["), "]"))
		if v, ok := c.header(h); ok {
			return &v, true
		}
		return &anyStr, true
	case key == "source.namespace":
		return &c.peerNS, true
	case key == "source.principal":
		return &c.peerPrincipal, true
	case key == "source.ip", key == "remote.ip", key == "destination.ip", key == "destination.port", key == "connection.sni":
		return nil, true
	}
	return nil, false
}
