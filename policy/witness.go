package policy

import (
	"fmt"
	"strings"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"

	"github.com/modelguard/modelguard/policy/oracle"
)

// witness looks for one concrete request on the route that the concrete evaluator (the
// oracle) lets through at the gateway and at the model. The symbolic verdict stands on its
// own; the example makes a gap concrete for the reader and lets tests check the engine.
func (ev *evaluation) witness(p *pair, issuer string) (string, bool) {
	for _, req := range candidateRequests(p, issuer) {
		if p.g != nil {
			gwReq := req
			gwReq.SourcePrincipal = ""
			if p.x.target.seldon != "" {
				hdr, _ := reachesSeldonModel(p.x.route, p.x.target)
				gwReq.Headers = withHeader(gwReq.Headers, seldonModelHeader, map[bool]string{true: hdr.s}[hdr.kind == setExact])
			}
			if !ev.oracleAllows(p.hg, gwReq) {
				continue
			}
		}
		mReq := req
		path, ok := p.x.route.rewritePath(req.Path)
		if !ok {
			return "", false
		}
		mReq.Path = path
		if a := p.x.route.rewrite.GetAuthority(); a != "" {
			mReq.Host = a
		}
		if p.x.route.mirror {
			mReq.Host += "-shadow"
		}
		mReq.Headers = withHeaders(req.Headers, p.x.route.setHeaders)
		if p.x.target.seldon != "" {
			mReq.Headers = withHeader(mReq.Headers, seldonModelHeader, p.x.target.seldon)
		}
		if p.g != nil {
			mReq.SourcePrincipal = "cluster.local/ns/" + orDefault(p.g.Namespace, "istio-system") + "/sa/" + orDefault(p.g.ServiceAccount, "default")
		}
		if ev.oracleAllows(p.hm, mReq) {
			return describeRequest(req, issuer), true
		}
	}
	return "", false
}

func (ev *evaluation) oracleAllows(h *hopPolicies, req oracle.Request) bool {
	var ps []*securityv1.AuthorizationPolicy
	for _, group := range [][]appliedAP{h.custom, h.deny, h.allow} {
		for _, ap := range group {
			if ap.a == applyYes {
				ps = append(ps, ap.p)
			}
		}
	}
	return oracle.Decide(req, ps, oracle.Options{TrustedExtAuthzProviders: ev.cfg.TrustedExtAuthzProviders}).Allowed
}

// candidateRequests draws concrete requests from the route: the model APIs' own paths first
// (gRPC and REST inference), then the route's boundary paths.
func candidateRequests(p *pair, issuer string) []oracle.Request {
	r := p.x.route
	name := "model"
	if p.x.target.seldon != "" {
		name = p.x.target.seldon
	} else if i := strings.LastIndex(p.x.target.ref, "/"); i >= 0 {
		name = p.x.target.ref[i+1:]
	}
	paths := []string{grpcInferenceServiceAPI + "ModelInfer", "/v2/models/" + name + "/infer", "/v1/models/" + name + ":predict"}
	if r.paths.kind == setExact || r.paths.kind == setPrefix {
		base := r.paths.s
		paths = append(paths, base, base+"x", strings.TrimSuffix(base, "/")+"/x")
	}
	paths = append(paths, policyLiterals(p)...)
	host, _ := hostSet(r.hosts).sample()
	if hostSet(r.hosts).kind == setSuffix {
		host = "a" + host
	}
	method := "POST"
	if r.method.kind == setExact {
		method = r.method.s
	}
	// The candidates differ only in path: they share one header map and one claims map,
	// which nothing writes to after this (withHeader copies).
	headers := map[string]string{}
	for h, v := range r.headers {
		if v.kind == setExact {
			headers[h] = v.s
		}
	}
	var principal string
	var claims map[string][]string
	if issuer != "" {
		principal = issuer + "/attacker"
		claims = map[string][]string{"iss": {issuer}, "sub": {"attacker"}}
	}
	out := make([]oracle.Request, 0, len(paths))
	for _, path := range paths {
		if r.paths.contains(path) {
			out = append(out, oracle.Request{Path: path, Method: method, Host: host, Headers: headers, RequestPrincipal: principal, Claims: claims})
		}
	}
	return out
}

func withHeader(h map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(h)+1)
	for hk, hv := range h {
		out[hk] = hv
	}
	if v == "" {
		delete(out, k)
	} else {
		out[k] = v
	}
	return out
}

func withHeaders(h, set map[string]string) map[string]string {
	out := h
	for k, v := range set {
		out = withHeader(out, k, v)
	}
	return out
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func describeRequest(req oracle.Request, issuer string) string {
	token := "no token"
	if issuer != "" {
		token = "a token from " + issuer
	}
	return fmt.Sprintf("%s %s (Host %s) with %s", req.Method, req.Path, req.Host, token)
}

// policyLiterals are the concrete paths the policies on the pair name (exact paths, and the
// literal part of prefix and template patterns): the edges where coverage tends to break.
func policyLiterals(p *pair) []string {
	var out []string
	for _, h := range []*hopPolicies{p.hg, p.hm} {
		if h == nil {
			continue
		}
		for _, group := range [][]appliedAP{h.deny, h.allow} {
			for _, ap := range group {
				for _, r := range ap.p.Spec.GetRules() {
					for _, to := range r.GetTo() {
						for _, pat := range append(to.GetOperation().GetPaths(), to.GetOperation().GetNotPaths()...) {
							if lit := strings.TrimRight(strings.SplitN(pat, "{", 2)[0], "*"); strings.HasPrefix(lit, "/") {
								out = append(out, lit, lit+"x")
							}
						}
					}
				}
			}
		}
	}
	return out
}
