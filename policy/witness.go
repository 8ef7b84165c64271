package policy

import (
	"fmt"
	"iter"
	"strings"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"

	"github.com/modelguard/modelguard/policy/oracle"
)

// witness looks for one concrete request on the route that the concrete evaluator (the
// oracle) lets through at the gateway and at the model. The symbolic verdict stands on its
// own; the example makes a gap concrete for the reader and lets tests check the engine.
func (ev *evaluation) witness(p *pair, issuer string) (string, bool) {
	for req := range candidateRequests(p, issuer) {
		if p.g != nil {
			gwReq := req
			gwReq.SourcePrincipal = ""
			if p.x.target.seldon != "" {
				v := ""
				if hdr, _ := reachesSeldonModel(p.x.route, p.x.target); hdr.kind == setExact {
					v = hdr.s
				}
				gwReq.Headers = withHeader(gwReq.Headers, seldonModelHeader, v)
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
// (gRPC and REST inference), then the route's boundary paths, then the paths the policies
// name. They are made one at a time: the first that gets through ends the search, and it is
// usually the first.
func candidateRequests(p *pair, issuer string) iter.Seq[oracle.Request] {
	return func(yield func(oracle.Request) bool) {
		r := p.x.route
		base := candidateBase(r, issuer)
		try := func(path string) bool {
			if !r.paths.contains(path) {
				return true
			}
			req := base
			req.Path = path
			return yield(req)
		}
		name := "model"
		if p.x.target.seldon != "" {
			name = p.x.target.seldon
		} else if i := strings.LastIndex(p.x.target.ref, "/"); i >= 0 {
			name = p.x.target.ref[i+1:]
		}
		for _, path := range []string{grpcInferenceServiceAPI + "ModelInfer", "/v2/models/" + name + "/infer", "/v1/models/" + name + ":predict"} {
			if !try(path) {
				return
			}
		}
		if r.paths.kind == setExact || r.paths.kind == setPrefix {
			b := r.paths.s
			for _, path := range []string{b, b + "x", strings.TrimSuffix(b, "/") + "/x"} {
				if !try(path) {
					return
				}
			}
		}
		for _, path := range policyLiterals(p) {
			if !try(path) {
				return
			}
		}
	}
}

// candidateBase is what every candidate request of route r shares: method, Host, the
// headers the route's match fixes, and the attacker's principal. The candidates share one
// header map and one claims map, which nothing writes to (withHeader copies).
func candidateBase(r *route, issuer string) oracle.Request {
	hosts := hostSet(r.hosts)
	host, _ := hosts.sample()
	if hosts.kind == setSuffix {
		host = "a" + host
	}
	method := "POST"
	if r.method.kind == setExact {
		method = r.method.s
	}
	var headers map[string]string
	for h, v := range r.headers {
		if v.kind == setExact {
			if headers == nil {
				headers = make(map[string]string, len(r.headers))
			}
			headers[h] = v.s
		}
	}
	req := oracle.Request{Method: method, Host: host, Headers: headers}
	if issuer != "" {
		req.RequestPrincipal = issuer + "/attacker"
		req.Claims = map[string][]string{"iss": {issuer}, "sub": {"attacker"}}
	}
	return req
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
