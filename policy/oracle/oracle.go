package oracle

import (
	"fmt"
	"slices"
	"strings"

	securityv1beta1 "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
)

// Request is one concrete request as the workload's proxy sees it (after Istio's path
// normalization). An empty field means the attribute is absent (see the package doc).
type Request struct {
	// Peer identity from mTLS; empty SourcePrincipal means plaintext (no peer identity):
	// then principals/namespaces/serviceAccounts never match positively.
	// Format "<trust domain>/ns/<namespace>/sa/<service account>"; a leading
	// "spiffe://" is tolerated and ignored.
	SourcePrincipal string // e.g. "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
	// SourceIP and RemoteIP may be empty (then ipBlocks/remoteIpBlocks do not match positively).
	SourceIP, RemoteIP string
	// JWT: empty RequestPrincipal means no (valid) token. Principal is "<iss>/<sub>".
	RequestPrincipal string
	// Claims holds request.auth.claims[...] values; nested claims are joined by "."
	// (Istio's claims[a][b] syntax -> key "a.b"). nil when there is no token.
	Claims    map[string][]string
	Audiences []string
	Presenter string
	Host      string // Host/authority header; may include ":port"
	Path      string // path only (no query), already normalized
	Method    string // for gRPC this is always "POST"
	Port      int    // destination port on the workload; 0 = unknown
	// Headers maps lower-case header names to values.
	Headers map[string]string
	SNI     string
}

// Options tunes what the oracle may assume about external authorizers.
type Options struct {
	// CUSTOM policies whose provider is listed here are trusted to enforce JWT: for such a
	// policy, a matching request WITHOUT RequestPrincipal is denied by the provider, and one
	// with a principal is passed on. CUSTOM policies with other providers: the oracle cannot
	// know what the provider decides, so it assumes the worst for security: the provider lets
	// the request through (evaluation continues to DENY/ALLOW).
	TrustedExtAuthzProviders []string
}

// Decision is the oracle's verdict on one request.
type Decision struct {
	Allowed bool
	// Policy is the deciding policy as "namespace/name"; empty when no single policy
	// decided ("ALLOW policies apply and none matched", "no ALLOW policy applies").
	Policy string
	// Action is the deciding action: "CUSTOM", "DENY" or "ALLOW"; empty only for the
	// default allow when no ALLOW policy applies.
	Action string
	// Reason is a one-line human explanation.
	Reason string
	// Assumptions lists every place where the oracle had to assume (unknown `when` key,
	// untrusted CUSTOM provider, dry-run annotation), in evaluation order.
	Assumptions []string
}

// Action names as used in Decision.Action and in messages.
const (
	actionCustom = "CUSTOM"
	actionDeny   = "DENY"
	actionAllow  = "ALLOW"
)

// dryRunAnnotation marks a policy that Istio logs but does not enforce.
const dryRunAnnotation = "istio.io/dry-run"

// Decide evaluates req against policies (all applying to one workload) in Istio's order:
// CUSTOM, then DENY, then ALLOW. Nil entries are ignored.
func Decide(req Request, policies []*securityv1.AuthorizationPolicy, opts Options) Decision {
	e := newEvaluator(req)
	e.noteDryRun(policies)
	d := e.decide(policies, opts)
	d.Assumptions = e.assumptions
	return d
}

func (e *evaluator) decide(policies []*securityv1.AuthorizationPolicy, opts Options) Decision {
	if d, decided := e.custom(withAction(policies, securityv1beta1.AuthorizationPolicy_CUSTOM), opts); decided {
		return d
	}
	if d, decided := e.deny(withAction(policies, securityv1beta1.AuthorizationPolicy_DENY)); decided {
		return d
	}
	return e.allow(withAction(policies, securityv1beta1.AuthorizationPolicy_ALLOW))
}

// custom denies a tokenless request that matches a CUSTOM policy of a trusted provider.
// Untrusted providers are assumed to let everything through (worst case for security).
func (e *evaluator) custom(policies []*securityv1.AuthorizationPolicy, opts Options) (Decision, bool) {
	for _, p := range policies {
		rule, ok := e.firstMatchingRule(p, actionCustom)
		if !ok {
			continue
		}
		provider := p.Spec.GetProvider().GetName()
		if !slices.Contains(opts.TrustedExtAuthzProviders, provider) {
			e.assume("CUSTOM provider %q is not trusted: assumed to allow the request [%s rule %d]",
				provider, policyName(p), rule)
			continue
		}
		if e.req.RequestPrincipal != "" {
			continue // the trusted provider passes requests with a valid token on
		}
		return Decision{
			Allowed: false,
			Policy:  policyName(p),
			Action:  actionCustom,
			Reason: fmt.Sprintf("matched CUSTOM rule %d of %s; trusted provider %q denies requests without a request principal",
				rule, policyName(p), provider),
		}, true
	}
	return Decision{}, false
}

// deny denies the request if any rule of any DENY policy matches.
func (e *evaluator) deny(policies []*securityv1.AuthorizationPolicy) (Decision, bool) {
	for _, p := range policies {
		if rule, ok := e.firstMatchingRule(p, actionDeny); ok {
			return Decision{
				Allowed: false,
				Policy:  policyName(p),
				Action:  actionDeny,
				Reason:  fmt.Sprintf("matched DENY rule %d of %s", rule, policyName(p)),
			}, true
		}
	}
	return Decision{}, false
}

// allow allows the request when no ALLOW policy applies or when one of them matches.
func (e *evaluator) allow(policies []*securityv1.AuthorizationPolicy) Decision {
	if len(policies) == 0 {
		return Decision{Allowed: true, Reason: "no ALLOW policy applies"}
	}
	for _, p := range policies {
		if rule, ok := e.firstMatchingRule(p, actionAllow); ok {
			return Decision{
				Allowed: true,
				Policy:  policyName(p),
				Action:  actionAllow,
				Reason:  fmt.Sprintf("matched ALLOW rule %d of %s", rule, policyName(p)),
			}
		}
	}
	return Decision{Allowed: false, Action: actionAllow, Reason: "ALLOW policies apply and none matched"}
}

// firstMatchingRule returns the index of the first rule of p that matches. A policy
// without rules never matches ("If not set, the match will never occur").
func (e *evaluator) firstMatchingRule(p *securityv1.AuthorizationPolicy, action string) (int, bool) {
	for i, r := range p.Spec.GetRules() {
		rc := ruleContext{policy: policyName(p), namespace: p.Namespace, action: action, index: i}
		if e.matchRule(r, rc) {
			return i, true
		}
	}
	return 0, false
}

// withAction keeps, in order, the non-nil policies whose action is a. The zero value of
// the enum is ALLOW, which gives "action unset = ALLOW" for free; AUDIT is never selected.
func withAction(policies []*securityv1.AuthorizationPolicy, a securityv1beta1.AuthorizationPolicy_Action) []*securityv1.AuthorizationPolicy {
	var out []*securityv1.AuthorizationPolicy
	for _, p := range policies {
		if p != nil && p.Spec.GetAction() == a {
			out = append(out, p)
		}
	}
	return out
}

// noteDryRun records dry-run policies: Istio does not enforce them, but filtering them out
// is applicability, the caller's job, so the oracle evaluates them as enforced.
func (e *evaluator) noteDryRun(policies []*securityv1.AuthorizationPolicy) {
	for _, p := range policies {
		if p != nil && strings.EqualFold(p.Annotations[dryRunAnnotation], "true") {
			e.assume("policy %s is annotated %s=true: evaluated as enforced (filtering dry-run policies is the caller's job)",
				policyName(p), dryRunAnnotation)
		}
	}
}

func policyName(p *securityv1.AuthorizationPolicy) string {
	return p.Namespace + "/" + p.Name
}
