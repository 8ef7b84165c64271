package oracle

import (
	"fmt"
	"strings"

	securityv1beta1 "istio.io/api/security/v1beta1"
)

// evaluator holds one request, the peer identity parsed from it, and the assumptions
// made while deciding it.
type evaluator struct {
	req         Request
	peer        peerIdentity
	assumptions []string
}

func newEvaluator(req Request) *evaluator {
	return &evaluator{req: req, peer: parsePeer(req.SourcePrincipal)}
}

func (e *evaluator) assume(format string, args ...any) {
	e.assumptions = append(e.assumptions, fmt.Sprintf(format, args...))
}

// ruleContext says where a rule comes from: it decides how unknown condition keys are
// judged and is quoted in assumptions.
type ruleContext struct {
	policy    string // "namespace/name"
	namespace string // policy namespace, for short serviceAccounts entries
	action    string // actionCustom, actionDeny or actionAllow
	index     int
}

// unknownMatches is the worst case for security: an unknown condition in an ALLOW rule
// is assumed to match (more is allowed); in DENY and CUSTOM rules it is assumed not to
// match (less is denied).
func (rc ruleContext) unknownMatches() bool {
	return rc.action == actionAllow
}

// matchRule ANDs from, to and when. Unknown `when` keys are judged last, so that an
// assumption is recorded only when the rule's outcome actually depends on it.
func (e *evaluator) matchRule(r *securityv1beta1.Rule, rc ruleContext) bool {
	if !e.matchFrom(r.GetFrom(), rc.namespace) || !e.matchTo(r.GetTo()) {
		return false
	}
	var unknown []string
	for _, c := range r.GetWhen() {
		matched, known := e.matchCondition(c)
		if !known {
			unknown = append(unknown, c.GetKey())
			continue
		}
		if !matched {
			return false
		}
	}
	for _, key := range unknown {
		verdict := "not to match"
		if rc.unknownMatches() {
			verdict = "to match"
		}
		e.assume("when key %q is not modelled: assumed %s (%s) [%s rule %d]", key, verdict, rc.action, rc.policy, rc.index)
	}
	return len(unknown) == 0 || rc.unknownMatches()
}

// matchFrom ORs the sources; an absent `from` allows any source.
func (e *evaluator) matchFrom(from []*securityv1beta1.Rule_From, policyNamespace string) bool {
	if len(from) == 0 {
		return true
	}
	for _, f := range from {
		if e.matchSource(f.GetSource(), policyNamespace) {
			return true
		}
	}
	return false
}

// matchTo ORs the operations; an absent `to` allows any operation.
func (e *evaluator) matchTo(to []*securityv1beta1.Rule_To) bool {
	if len(to) == 0 {
		return true
	}
	for _, t := range to {
		if e.matchOperation(t.GetOperation()) {
			return true
		}
	}
	return false
}

// matchSource ANDs every field of one source. A nil source has no fields.
func (e *evaluator) matchSource(s *securityv1beta1.Source, policyNamespace string) bool {
	peer := e.peer
	saMatch := func(pattern, value string) bool {
		return qualifyServiceAccount(pattern, policyNamespace) == value
	}
	return field(s.GetPrincipals(), s.GetNotPrincipals(), present(peer.principal), MatchString) &&
		field(s.GetRequestPrincipals(), s.GetNotRequestPrincipals(), present(e.req.RequestPrincipal), MatchString) &&
		field(s.GetNamespaces(), s.GetNotNamespaces(), present(peer.namespace), MatchString) &&
		field(s.GetServiceAccounts(), s.GetNotServiceAccounts(), present(peer.qualifiedServiceAccount()), saMatch) &&
		field(s.GetTrustDomains(), s.GetNotTrustDomains(), present(peer.trustDomain), MatchString) &&
		field(s.GetIpBlocks(), s.GetNotIpBlocks(), present(e.req.SourceIP), matchIP) &&
		field(s.GetRemoteIpBlocks(), s.GetNotRemoteIpBlocks(), present(e.req.RemoteIP), matchIP)
}

// matchOperation ANDs every field of one operation. A nil operation has no fields.
func (e *evaluator) matchOperation(o *securityv1beta1.Operation) bool {
	return field(o.GetHosts(), o.GetNotHosts(), hostCandidates(e.req.Host), matchHost) &&
		field(o.GetPorts(), o.GetNotPorts(), portValue(e.req.Port), matchPort) &&
		field(o.GetMethods(), o.GetNotMethods(), present(e.req.Method), MatchString) &&
		field(o.GetPaths(), o.GetNotPaths(), present(e.req.Path), MatchPath)
}

// field evaluates one positive/negative field pair against the candidate values of an
// attribute (none = absent). Values of one field are ORed; an empty field does not
// constrain; a not-field matches when none of its values matches.
func field(values, notValues, candidates []string, match func(pattern, value string) bool) bool {
	if len(values) > 0 && !anyMatch(values, candidates, match) {
		return false
	}
	return len(notValues) == 0 || !anyMatch(notValues, candidates, match)
}

// anyMatch reports whether some pattern matches some candidate.
func anyMatch(patterns, candidates []string, match func(pattern, value string) bool) bool {
	for _, p := range patterns {
		for _, c := range candidates {
			if match(p, c) {
				return true
			}
		}
	}
	return false
}

// present turns a possibly-empty attribute into its candidate list: empty = absent.
func present(v string) []string {
	if v == "" {
		return nil
	}
	return []string{v}
}

// hostCandidates is the lower-cased Host with and without its ":port", so that
// hosts: ["example.com"] matches "Example.COM:8080" as Istio documents.
func hostCandidates(host string) []string {
	if host == "" {
		return nil
	}
	h := strings.ToLower(host)
	if bare := stripPort(h); bare != h {
		return []string{h, bare}
	}
	return []string{h}
}

// matchHost is MatchString without case ("The match is case-insensitive").
func matchHost(pattern, value string) bool {
	return MatchString(strings.ToLower(pattern), value)
}
