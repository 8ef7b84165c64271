package policy

import (
	"fmt"
	"sort"
	"strings"

	networkingapi "istio.io/api/networking/v1alpha3"
	securityapi "istio.io/api/security/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
)

type mtlsMode = securityapi.PeerAuthentication_MutualTLS_Mode

// mtlsStrength orders modes from weakest to strongest; UNSET never reaches it (it inherits).
func mtlsStrength(m mtlsMode) int {
	switch m {
	case securityapi.PeerAuthentication_MutualTLS_STRICT:
		return 2
	case securityapi.PeerAuthentication_MutualTLS_PERMISSIVE:
		return 1
	}
	return 0
}

// mtlsResult is a workload's effective mTLS and where it comes from.
type mtlsResult struct {
	mode mtlsMode
	// from and level name the deciding policy; nil is Istio's default. The text is built only
	// for a finding (source): most workloads are STRICT and it is never read.
	from      *securityv1.PeerAuthentication
	level     string
	weakPorts []string // "8080: PERMISSIVE (PeerAuthentication ns/name)"
}

// source is where the mode comes from: "PeerAuthentication ns/name (workload)", or the default.
func (r mtlsResult) source() string {
	if r.from == nil {
		return "default (no PeerAuthentication)"
	}
	return fmt.Sprintf("PeerAuthentication %s/%s (%s)", r.from.Namespace, r.from.Name, r.level)
}

// effectiveMTLS computes Istio's PeerAuthentication precedence for a workload: a workload
// policy (selector) over the namespace policy over the mesh-wide one (root namespace, no
// selector; root policies with a selector are ignored), UNSET inheriting from the level above,
// PERMISSIVE when nothing is set. Where several could apply the weakest is taken: Istio picks
// the oldest, and the engine does not bet on creation order.
func (ev *evaluation) effectiveMTLS(w *Workload) mtlsResult {
	res := mtlsResult{mode: securityapi.PeerAuthentication_MutualTLS_PERMISSIVE}
	root := ev.snap.peerAuth.root
	meshWide := ev.peerAuthsIn(root, true)
	res = inherit(res, weakestPA(meshWide), "mesh-wide")
	var nsLevel, wlLevel []*securityv1.PeerAuthentication
	sure := false
	if w.Namespace != root {
		for _, p := range ev.peerAuthsIn(w.Namespace, false) {
			if len(p.Spec.GetSelector().GetMatchLabels()) == 0 {
				nsLevel = append(nsLevel, p)
			} else if a := selectorMatches(p.Spec.GetSelector().GetMatchLabels(), w); a != applyNo {
				wlLevel = append(wlLevel, p)
				sure = sure || a == applyYes
			}
		}
	} else {
		nsLevel = meshWide
	}
	res = inherit(res, weakestPA(nsLevel), "namespace")
	workloadBase := res
	res = inherit(res, weakestPA(wlLevel), "workload")
	if !sure && mtlsStrength(workloadBase.mode) < mtlsStrength(res.mode) {
		// The workload policies may not apply at all: then the namespace level rules.
		res = workloadBase
	}
	res.weakPorts = portOverrides(wlLevel, workloadBase)
	return res
}

// peerAuthsIn lists the PeerAuthentications of a namespace through the what-if overlay; of
// the root namespace only the selector-less ones (Istio ignores the others there).
func (ev *evaluation) peerAuthsIn(ns string, rootOnly bool) []*securityv1.PeerAuthentication {
	var out []*securityv1.PeerAuthentication
	keep := func(p *securityv1.PeerAuthentication) {
		switch {
		case p.Namespace != ns || ev.isHidden("PeerAuthentication", p.Namespace, p.Name):
		case rootOnly && len(p.Spec.GetSelector().GetMatchLabels()) > 0:
		default:
			out = append(out, p)
		}
	}
	for _, e := range ev.snap.peerAuth.inNamespace(ns) {
		keep(e.p)
	}
	for _, p := range ev.extraPA {
		keep(p)
	}
	return out
}

// inherit applies one level's policy: UNSET (or no policy) keeps the level above.
func inherit(above mtlsResult, p *securityv1.PeerAuthentication, level string) mtlsResult {
	if p == nil {
		return above
	}
	m := p.Spec.GetMtls().GetMode()
	if m == securityapi.PeerAuthentication_MutualTLS_UNSET {
		return above
	}
	return mtlsResult{mode: m, from: p, level: level}
}

// weakestPA returns the policy with the weakest set mode; one with UNSET ranks last, since
// it only inherits the level above.
func weakestPA(ps []*securityv1.PeerAuthentication) *securityv1.PeerAuthentication {
	var best *securityv1.PeerAuthentication
	rank := func(p *securityv1.PeerAuthentication) int {
		if m := p.Spec.GetMtls().GetMode(); m != securityapi.PeerAuthentication_MutualTLS_UNSET {
			return mtlsStrength(m)
		}
		return 3
	}
	for _, p := range ps {
		if best == nil || rank(p) < rank(best) || (rank(p) == rank(best) && p.Namespace+"/"+p.Name < best.Namespace+"/"+best.Name) {
			best = p
		}
	}
	return best
}

// portOverrides lists port-level modes weaker than STRICT on workload policies. The engine
// does not know which ports serve the model, so any weaker port counts.
func portOverrides(wl []*securityv1.PeerAuthentication, workloadBase mtlsResult) []string {
	var out []string
	for _, p := range wl {
		for port, m := range p.Spec.GetPortLevelMtls() {
			// UNSET on a port inherits the policy's own mode, which may inherit the namespace's.
			mode := m.GetMode()
			if mode == securityapi.PeerAuthentication_MutualTLS_UNSET {
				mode = p.Spec.GetMtls().GetMode()
			}
			if mode == securityapi.PeerAuthentication_MutualTLS_UNSET {
				mode = workloadBase.mode
			}
			if mtlsStrength(mode) < 2 {
				out = append(out, fmt.Sprintf("port %d: %s (PeerAuthentication %s/%s)", port, mode, p.Namespace, p.Name))
			}
		}
	}
	sort.Strings(out)
	return out
}

// strictFor reports whether plaintext can never reach the model workload.
func (ev *evaluation) strictFor(t *target, w *Workload) bool {
	r := ev.effectiveMTLS(w)
	return r.mode == securityapi.PeerAuthentication_MutualTLS_STRICT && len(r.weakPorts) == 0 && len(ev.disablingRules(t)) == 0
}

// checkMTLSAll reports mTLS gaps once per exposed model workload.
func (ev *evaluation) checkMTLSAll(xs []*exposure) {
	if !ev.rule.MTLSRequired() {
		return
	}
	seen := map[string]bool{}
	for _, x := range xs {
		for _, w := range x.target.workloads {
			key := x.target.ref + "|" + w.Ref
			if seen[key] {
				continue
			}
			seen[key] = true
			ev.checkMTLS(x.target, w)
		}
	}
}

func (ev *evaluation) checkMTLS(t *target, w *Workload) {
	r := ev.effectiveMTLS(w)
	if r.mode != securityapi.PeerAuthentication_MutualTLS_STRICT {
		ev.add(Finding{Code: CodeMTLSNotStrict, Severity: SeverityError,
			Message: fmt.Sprintf("%s (%s) accepts plaintext: effective mTLS mode is %s, from %s", t.ref, w.Ref, r.mode, r.source()),
			Fix:     strictPAFix(t.namespace)})
	}
	for _, wp := range r.weakPorts {
		ev.add(Finding{Code: CodeMTLSPortOverride, Severity: SeverityError,
			Message: fmt.Sprintf("%s (%s) accepts plaintext on %s", t.ref, w.Ref, wp),
			Fix:     "Remove the portLevelMtls entry or set it to STRICT."})
	}
	for _, dr := range ev.disablingRules(t) {
		ev.add(Finding{Code: CodeMTLSDestinationDisable, Severity: SeverityError,
			Message: fmt.Sprintf("DestinationRule %s/%s (host %s) sets tls.mode DISABLE towards %s: clients send it plaintext", dr.Namespace, dr.Name, dr.Spec.GetHost(), t.ref),
			Fix:     "Remove the tls section (Istio then uses mTLS automatically) or set tls.mode: ISTIO_MUTUAL."})
	}
}

func strictPAFix(ns string) string {
	return fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: %s
spec:
  mtls:
    mode: STRICT`, ns)
}

// disablingRules returns DestinationRules for the target's hosts that turn TLS off.
func (ev *evaluation) disablingRules(t *target) []*networkingv1.DestinationRule {
	var out []*networkingv1.DestinationRule
	seen := map[*networkingv1.DestinationRule]bool{}
	add := func(dr *networkingv1.DestinationRule) {
		if !seen[dr] && !ev.isHidden("DestinationRule", dr.Namespace, dr.Name) && disablesTLS(dr) {
			seen[dr] = true
			out = append(out, dr)
		}
	}
	for _, h := range t.hosts {
		for _, dr := range ev.snap.drByHost[h] {
			add(dr)
		}
		for _, dr := range append(append([]*networkingv1.DestinationRule{}, ev.snap.drWildcard...), ev.extraDR...) {
			if drHostMatches(dr, h, ev.cfg.ClusterDomain) {
				add(dr)
			}
		}
	}
	return out
}

// drHostMatches reports whether a DestinationRule's host (FQDN, short name, or wildcard)
// names the Service FQDN h.
func drHostMatches(dr *networkingv1.DestinationRule, h, domain string) bool {
	host := dr.Spec.GetHost()
	if strings.HasPrefix(host, "*") {
		return strings.HasSuffix(h, strings.TrimPrefix(host, "*"))
	}
	return fqdn(host, dr.Namespace, domain) == h
}

func disablesTLS(dr *networkingv1.DestinationRule) bool {
	policies := []*networkingapi.TrafficPolicy{dr.Spec.GetTrafficPolicy()}
	for _, s := range dr.Spec.GetSubsets() {
		policies = append(policies, s.GetTrafficPolicy())
	}
	for _, tp := range policies {
		if tp.GetTls().GetMode() == networkingapi.ClientTLSSettings_DISABLE {
			return true
		}
		for _, pl := range tp.GetPortLevelSettings() {
			if pl.GetTls().GetMode() == networkingapi.ClientTLSSettings_DISABLE {
				return true
			}
		}
	}
	return false
}
