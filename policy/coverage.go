package policy

import (
	"fmt"
	"strings"
)

// judgeExposure checks JWT coverage of one exposure: for each pair of a gateway workload and
// a model workload the request passes, every request an attacker can send without a valid
// token (or with a token from an issuer the rule does not allow) must be denied at one of the
// two, and a request with a valid token must be admitted somewhere (else: unreachable).
func (ev *evaluation) judgeExposure(x *exposure) {
	if x.route.allPaths {
		ev.add(Finding{Code: CodeRouteAllPaths, Severity: SeverityInfo, Route: x.route.String(),
			Message: fmt.Sprintf("route to %s has no URI match or a regex one: it is judged as every path", x.target.ref)})
	}
	gws := x.gateways
	if gws == nil {
		gws = []*Workload{nil}
	}
	for _, m := range x.target.workloads {
		for _, g := range gws {
			ev.judgePair(x, g, m)
		}
	}
}

// pair is the path of a request: through gateway g (nil for a direct exposure) to model m.
type pair struct {
	x      *exposure
	g, m   *Workload
	hg, hm *hopPolicies
	from   []peer // the peers, worked out on first use: each attacker's classes need them
}

func (ev *evaluation) judgePair(x *exposure, g, m *Workload) {
	p := &pair{x: x, g: g, m: m, hm: ev.policiesAt(m)}
	if g != nil {
		p.hg = ev.policiesAt(g)
	}
	covered := ev.judgeAttack(p, "", CodeJWTRouteUncovered)
	for _, iss := range p.issuers() {
		if !ev.rule.IssuerAllowed(iss) {
			covered = ev.judgeAttack(p, iss, CodeIssuerNotAllowed) && covered
		}
	}
	if covered {
		ev.judgeReachable(p)
	}
}

func (p *pair) issuers() []string {
	out := p.hm.issuers()
	if p.hg != nil {
		for _, iss := range p.hg.issuers() {
			if !containsStr(out, iss) {
				out = append(out, iss)
			}
		}
	}
	return out
}

// judgeAttack checks that every request of one attacker (no token when issuer is "", else a
// token from that disallowed issuer) is denied at the gateway or at the model.
func (ev *evaluation) judgeAttack(p *pair, issuer string, code Code) bool {
	gv := hopVerdict{}
	if p.g != nil {
		gv = ev.judgeVariants(p.hg, ev.gatewayClasses(p, issuer, true), true)
	}
	mv := ev.judgeVariants(p.hm, ev.modelClasses(p, issuer, true), true)
	ev.findings = append(ev.findings, gv.notes...)
	ev.findings = append(ev.findings, mv.notes...)
	if gv.denied || mv.denied {
		return true
	}
	ev.add(ev.gapFinding(p, issuer, code, gv, mv))
	return false
}

// judgeVariants requires every variant of a class to be denied at the hop.
func (ev *evaluation) judgeVariants(h *hopPolicies, classes []reqClass, attack bool) hopVerdict {
	out := hopVerdict{denied: true}
	for i := range classes {
		v := ev.judgeHop(h, &classes[i], attack)
		notes := append(out.notes, v.notes...)
		out = v
		out.notes = notes
		if !v.denied {
			return out
		}
	}
	return out
}

// principalVariants are the request principals a token of issuer may yield at a hop: a
// principal when a RequestAuthentication there validates the issuer, none otherwise; both when
// the engine cannot tell whether that RequestAuthentication applies.
func principalVariants(h *hopPolicies, issuer string, tokenPresent bool) []strSet {
	if issuer == "" || !tokenPresent {
		return noPrincipal
	}
	if h.unplaced {
		return []strSet{prefixed(issuer + "/"), absent} // its RequestAuthentications are unknown
	}
	switch a, _ := h.accepts(issuer); a {
	case applyYes:
		return []strSet{prefixed(issuer + "/")}
	case applyMaybe:
		return []strSet{prefixed(issuer + "/"), absent}
	}
	return noPrincipal
}

// noPrincipal is the one variant of a request without a validated token (read-only).
var noPrincipal = []strSet{absent}

// gatewayClasses: at the gateway the caller is outside the mesh (plaintext, no peer identity)
// and chooses every header the route does not fix. The classes are built in ev.classBuf, as
// modelClasses' are: a result is valid until the next call of either, so callers judge it at
// once.
func (ev *evaluation) gatewayClasses(p *pair, issuer string, attack bool) []reqClass {
	r := p.x.route
	hdr, _ := reachesSeldonModel(r, p.x.target)
	var fixed []fixedHeader
	if p.x.target.seldon != "" {
		fixed = []fixedHeader{{seldonModelHeader, hdr}}
	}
	out := ev.classBuf[:0]
	for _, pr := range principalVariants(p.hg, issuer, true) {
		c := baseClass(r, pr, issuer)
		c.fixed = fixed
		out = append(out, c)
	}
	ev.classBuf = out
	return out
}

// modelClasses: at the model the request comes from the gateway over mTLS (with the gateway's
// identity), or in plaintext where the model's mTLS is not STRICT, or straight from outside
// for a direct exposure. The route's header operations have been applied.
func (ev *evaluation) modelClasses(p *pair, issuer string, attack bool) []reqClass {
	r := p.x.route
	tokenHere := true
	if p.g != nil && issuer != "" {
		if a, strips := p.hg.accepts(issuer); a == applyYes && strips {
			tokenHere = false // the gateway validated the token and removed it (Istio's default)
		}
	}
	fixed := modelFixedHeaders(r, p.x.target)
	out := ev.classBuf[:0]
	for _, peer := range ev.peers(p) {
		for _, pr := range principalVariants(p.hm, issuer, tokenHere) {
			c := baseClass(r, pr, issuer)
			if r.modelPaths != nil {
				c.path = *r.modelPaths
			}
			if r.modelHost != nil {
				c.host = *r.modelHost
			}
			if r.mirror {
				c.host = anyStr // Envoy rewrites a mirror's Host to "<host>-shadow"
			}
			c.fixed = fixed
			c.peerNS, c.peerPrincipal, c.peerSA = peer.ns, peer.principal, peer.sa
			out = append(out, c)
		}
	}
	ev.classBuf = out
	return out
}

type peer struct{ ns, principal, sa strSet }

var plaintextPeer = peer{absent, absent, absent}

// peers are the identities a request may carry into the model: the gateway's over mTLS; and
// none (plaintext) when the model accepts plaintext or the exposure bypasses the gateway.
func (ev *evaluation) peers(p *pair) []peer {
	if p.from == nil {
		p.from = ev.peersOf(p)
	}
	return p.from
}

func (ev *evaluation) peersOf(p *pair) []peer {
	if p.g == nil {
		return plaintextOnly
	}
	gw := gatewayPeer(p.g)
	if ev.strictFor(p.x.target, p.m) {
		return []peer{gw}
	}
	return []peer{gw, plaintextPeer}
}

// plaintextOnly is the peers of a direct exposure (read-only).
var plaintextOnly = []peer{plaintextPeer}

// gatewayPeer is the identity gateway g's requests carry over mTLS.
func gatewayPeer(g *Workload) peer {
	switch {
	case g.Namespace == "":
		// The gateway's pods are not in the mesh state: any namespace, any identity.
		return peer{ns: suffixed(""), principal: suffixed(""), sa: suffixed("")}
	case g.Exact && g.ServiceAccount != "":
		return peer{ns: exactly(g.Namespace), principal: suffixed("/ns/" + g.Namespace + "/sa/" + g.ServiceAccount),
			sa: exactly(g.Namespace + "/" + g.ServiceAccount)}
	}
	return peer{ns: exactly(g.Namespace), principal: suffixed(""), sa: prefixed(g.Namespace + "/")}
}

func baseClass(r *route, principal strSet, issuer string) reqClass {
	c := reqClass{path: r.paths, method: r.method, host: hostSet(r.hosts), principal: principal,
		peerNS: absent, peerPrincipal: absent, peerSA: absent, headers: r.headers}
	if principal.kind != setAbsent {
		c.issuer = issuer
	}
	return c
}

// modelFixedHeaders are the headers every request of the route carries into the model: those
// the route sets, and Seldon's model header (the mesh's routing sets it last, so it wins).
// The classes share the list and never write to it.
func modelFixedHeaders(r *route, t *target) []fixedHeader {
	if len(r.setHeaders) == 0 && t.seldon == "" {
		return nil
	}
	out := make([]fixedHeader, 0, len(r.setHeaders)+1)
	for h, v := range r.setHeaders {
		if h != seldonModelHeader || t.seldon == "" {
			out = append(out, fixedHeader{h, exactly(v)})
		}
	}
	if t.seldon != "" {
		out = append(out, fixedHeader{seldonModelHeader, exactly(t.seldon)})
	}
	return out
}

// hostSet is the Host headers a route accepts: one host exactly, a wildcard as a suffix set,
// several hosts or "*" as anything.
func hostSet(hosts []string) strSet {
	if len(hosts) != 1 || strings.Contains(hosts[0], "<") {
		return anyStr
	}
	h := strings.ToLower(hosts[0])
	switch {
	case h == "*":
		return anyStr
	case strings.HasPrefix(h, "*"):
		return suffixed(strings.TrimPrefix(h, "*"))
	}
	return exactly(h)
}

// judgeReachable warns when even a valid token from an allowed issuer is always refused.
func (ev *evaluation) judgeReachable(p *pair) {
	var valid []string
	for _, iss := range p.issuers() {
		if ev.rule.IssuerAllowed(iss) {
			valid = append(valid, iss)
		}
	}
	why := "no RequestAuthentication on the route validates an allowed issuer, so no request ever has a principal"
	if len(valid) == 0 {
		valid = []string{""}
	}
	for _, iss := range valid {
		gv := hopVerdict{}
		if p.g != nil {
			gv = ev.judgeVariants(p.hg, ev.gatewayClasses(p, iss, false), false)
		}
		mv := ev.judgeVariants(p.hm, ev.modelClasses(p, iss, false), false)
		if !gv.denied && !mv.denied {
			return
		}
		if iss != "" {
			where, hv := "at the model", mv
			if gv.denied {
				where, hv = "at the gateway", gv
			}
			why = fmt.Sprintf("a token from %s is refused %s: %s", iss, where, hv.reason())
		}
	}
	ev.add(Finding{Code: CodeModelUnreachable, Severity: SeverityWarning, Route: p.x.route.String(),
		Message: fmt.Sprintf("%s cannot be called with a valid JWT: %s", p.x.target.ref, why),
		Fix:     "Make a RequestAuthentication with the issuer's jwtRules select the workload where the policy requires a principal (check its selector labels against the pods)."})
}

// gapFinding describes an uncovered route with the reasons at each hop and, when the oracle
// confirms one, a concrete request that gets through.
func (ev *evaluation) gapFinding(p *pair, issuer string, code Code, gv, mv hopVerdict) Finding {
	who := "Requests without a JWT"
	sev := SeverityError
	if issuer != "" {
		who = fmt.Sprintf("Requests with a token from %s (not in allowedIssuers)", issuer)
	}
	var b strings.Builder
	b.Grow(512) // the message with its example is a few hundred bytes: one allocation
	fmt.Fprintf(&b, "%s reach %s", who, p.x.target.ref)
	if p.g != nil {
		fmt.Fprintf(&b, "; at the gateway (%s): %s", p.g.Ref, gv.reason())
	} else {
		fmt.Fprintf(&b, " directly, past every gateway")
	}
	fmt.Fprintf(&b, "; at the model (%s): %s", p.m.Ref, mv.reason())
	if w, ok := ev.witness(p, issuer); ok {
		fmt.Fprintf(&b, ". For example %s gets through", w)
	}
	c := code
	if p.g == nil && code == CodeJWTRouteUncovered {
		c = CodeDirectExposure
	}
	return Finding{Code: c, Severity: sev, Route: p.x.route.String(), Message: b.String(), Fix: ev.fixFor(p.x.target)}
}
