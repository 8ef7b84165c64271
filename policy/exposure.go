package policy

import (
	"fmt"
	"strconv"
	"strings"

	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// route is one way in from outside: a gateway (or a direct Service), hosts, a URI match and a
// destination. Its requests are the sets in it; the attacker picks any member.
type route struct {
	via         string // what declares it: "VirtualService ns/name http[0]"
	gateway     string // "ns/name"; "" for a direct exposure through a Service
	hosts       []string
	match       string // "prefix /v2/", "exact /x", "every path"
	paths       strSet
	method      strSet
	protocol    string            // REST, gRPC, REST+gRPC, TCP
	destination string            // FQDN
	headers     map[string]strSet // fixed by the route's match, at every hop (nil: none)
	setHeaders  map[string]string // set by the route: seen only by the model workload (nil: none)
	allPaths    bool              // a regex, case-insensitive or absent URI match judged as prefix "/"
	mirror      bool              // a mirror: the model sees the route's hosts with "-shadow" appended
	// What the model's proxy sees after the route's rewrites (nil: the same as the gateway).
	modelPaths, modelHost *strSet
	rewrite               *networkingapi.HTTPRewrite
}

func (r *route) String() string {
	var b strings.Builder
	b.Grow(160)
	if r.gateway != "" {
		fmt.Fprintf(&b, "gateway %s, ", r.gateway)
	}
	if len(r.hosts) > 0 {
		fmt.Fprintf(&b, "host %s, ", strings.Join(r.hosts, ","))
	}
	fmt.Fprintf(&b, "%s (%s) -> %s [%s]", r.match, r.protocol, r.destination, r.via)
	return b.String()
}

// target is a model a destination reaches, with the workload that first receives its traffic.
type target struct {
	ref       string // "InferenceService ns/name"
	namespace string
	workloads []*Workload
	hosts     []string // FQDNs of its Services, for DestinationRule checks
	seldon    string   // Seldon model name: requests reach it only with seldon-model: <name>
	owner     any      // the ISVC or Model object, for inject planning
}

// exposure is a route to a target.
type exposure struct {
	route    *route
	target   *target
	gateways []*Workload // nil for a direct exposure
}

// vsRoutes expands a VirtualService into one route per HTTP match (or one for no match), on
// the external gateways it names (a match's own gateways override the VirtualService's). A
// delegated route is resolved to the delegate's routes; a delegate (which has no gateways of
// its own) is expanded under every root VirtualService that delegates to it.
func (ev *evaluation) vsRoutes(vs *networkingv1.VirtualService) []*route {
	out := ev.rootRoutes(vs, nil)
	for _, root := range ev.delegatorsOf(vs) {
		out = append(out, ev.rootRoutes(root, vs)...)
	}
	return append(out, ev.l4Routes(vs)...)
}

// rootRoutes expands root's HTTP routes; with onlyChild set, only those delegating to it.
func (ev *evaluation) rootRoutes(root, onlyChild *networkingv1.VirtualService) []*route {
	var out []*route
	for i, hr := range root.Spec.GetHttp() {
		via := "VirtualService " + root.Namespace + "/" + root.Name + " http[" + strconv.Itoa(i) + "]"
		if hr.GetName() != "" {
			via += " (" + hr.GetName() + ")"
		}
		if hr.GetDelegate() != nil {
			out = append(out, ev.delegatedRoutes(root, hr, via, onlyChild)...)
			continue
		}
		if onlyChild != nil {
			continue
		}
		matches := hr.GetMatch()
		if len(matches) == 0 {
			matches = []*networkingapi.HTTPMatchRequest{nil}
		}
		for _, m := range matches {
			for _, gw := range ev.externalGateways(root, m.GetGateways()) {
				for _, d := range destinations(hr) {
					out = append(out, ev.httpRoute(root, root.Namespace, via, gw, m, hr, d))
				}
			}
		}
	}
	return out
}

// delegatedRoutes expands a route of root that delegates to another VirtualService: the
// delegate's matches (which Istio requires to narrow the root's) on the root's gateways and
// hosts. Istio supports one level of delegation, so the delegate's own delegations are ignored.
func (ev *evaluation) delegatedRoutes(root *networkingv1.VirtualService, hr *networkingapi.HTTPRoute, via string, onlyChild *networkingv1.VirtualService) []*route {
	ns, name := hr.GetDelegate().GetNamespace(), hr.GetDelegate().GetName()
	if ns == "" {
		ns = root.Namespace
	}
	if onlyChild != nil && (onlyChild.Namespace != ns || onlyChild.Name != name) {
		return nil
	}
	child := onlyChild
	if child == nil {
		child = ev.lookupVS(ns, name)
	}
	if child == nil {
		ev.add(Finding{Code: CodeDelegateRoute, Severity: SeverityInfo, Route: via,
			Message: fmt.Sprintf("route delegates to VirtualService %s/%s, which does not exist yet: it is judged with this route when it is applied", ns, name)})
		return nil
	}
	var out []*route
	for j, chr := range child.Spec.GetHttp() {
		if chr.GetDelegate() != nil {
			continue
		}
		cvia := fmt.Sprintf("%s -> VirtualService %s/%s http[%d]", via, ns, name, j)
		matches := chr.GetMatch()
		if len(matches) == 0 {
			matches = []*networkingapi.HTTPMatchRequest{nil}
		}
		for _, m := range matches {
			for _, gw := range ev.externalGateways(root, nil) {
				for _, d := range destinations(chr) {
					out = append(out, ev.httpRoute(root, child.Namespace, cvia, gw, m, chr, d))
				}
			}
		}
	}
	return out
}

// rewritePath is the path the model's proxy sees for a request path on the route, as Envoy
// rewrites it (the matched prefix, or the whole exact path, replaced); false when the engine
// cannot compute it (a regex rewrite, or a rewrite of a route matched by regex).
func (r *route) rewritePath(path string) (string, bool) {
	u := r.rewrite.GetUri()
	switch {
	case r.rewrite.GetUriRegexRewrite() != nil:
		return "", false
	case u == "":
		return path, true
	case r.paths.kind == setExact:
		return u, true
	case r.paths.kind == setPrefix && !r.allPaths:
		return u + strings.TrimPrefix(path, r.paths.s), true
	}
	return "", false
}

// destination is where a route sends requests.
type destination struct {
	*networkingapi.HTTPRouteDestination
	// mirror: a copy of the request (the response is dropped). Envoy appends "-shadow" to
	// its Host, so policies on the mirror's workload see another host than the route's.
	mirror bool
}

// destinations lists a route's destinations and its mirrors: a mirrored request reaches the
// mirror's workload with whatever the caller sent.
func destinations(hr *networkingapi.HTTPRoute) []destination {
	out := make([]destination, 0, len(hr.GetRoute())+len(hr.GetMirrors())+1)
	for _, d := range hr.GetRoute() {
		out = append(out, destination{HTTPRouteDestination: d})
	}
	mirrors := hr.GetMirrors()
	if hr.GetMirror() != nil {
		mirrors = append(mirrors, &networkingapi.HTTPMirrorPolicy{Destination: hr.GetMirror()})
	}
	for _, m := range mirrors {
		out = append(out, destination{HTTPRouteDestination: &networkingapi.HTTPRouteDestination{Destination: m.GetDestination()}, mirror: true})
	}
	return out
}

// lookupVS finds a VirtualService, preferring the object under review.
func (ev *evaluation) lookupVS(ns, name string) *networkingv1.VirtualService {
	if vs, ok := ev.subject.(*networkingv1.VirtualService); ok && vs.Namespace == ns && vs.Name == name {
		return vs
	}
	return ev.snap.vs[ns+"/"+name]
}

// delegatorsOf lists the root VirtualServices (other than the object under review) that
// delegate a route to vs.
func (ev *evaluation) delegatorsOf(vs *networkingv1.VirtualService) []*networkingv1.VirtualService {
	var out []*networkingv1.VirtualService
	subj, _ := ev.subject.(*networkingv1.VirtualService)
	for _, root := range ev.snap.vsDelegators[vs.Namespace+"/"+vs.Name] {
		if subj == nil || root.Namespace != subj.Namespace || root.Name != subj.Name {
			out = append(out, root)
		}
	}
	return out
}

func (ev *evaluation) l4Routes(vs *networkingv1.VirtualService) []*route {
	var out []*route
	add := func(kind string, i int, dests []*networkingapi.RouteDestination) {
		for _, gw := range ev.externalGateways(vs, nil) {
			for _, d := range dests {
				out = append(out, &route{via: fmt.Sprintf("VirtualService %s/%s %s[%d]", vs.Namespace, vs.Name, kind, i),
					gateway: gw, hosts: vs.Spec.GetHosts(), match: "every connection", protocol: "TCP",
					destination: fqdn(d.GetDestination().GetHost(), vs.Namespace, ev.cfg.ClusterDomain)})
			}
		}
	}
	for i, r := range vs.Spec.GetTcp() {
		add("tcp", i, r.GetRoute())
	}
	for i, r := range vs.Spec.GetTls() {
		add("tls", i, r.GetRoute())
	}
	return out
}

// externalGateways resolves gateway names ("name" in the VirtualService's namespace, or
// "ns/name") and drops `mesh` and the configured internal gateways.
func (ev *evaluation) externalGateways(vs *networkingv1.VirtualService, matchGWs []string) []string {
	gws := vs.Spec.GetGateways()
	if len(matchGWs) > 0 {
		gws = matchGWs
	}
	var out []string
	for _, g := range gws {
		full := g
		if g != "mesh" && !strings.Contains(g, "/") {
			full = vs.Namespace + "/" + g
		}
		if !ev.cfg.internalGateway(full) {
			out = append(out, full)
		}
	}
	return out
}

// httpRoute builds one route: hosts from the VirtualService bound to the gateway, the
// destination resolved in destNS (the namespace of the VirtualService that holds the route).
func (ev *evaluation) httpRoute(vs *networkingv1.VirtualService, destNS, via, gw string, m *networkingapi.HTTPMatchRequest, hr *networkingapi.HTTPRoute, d destination) *route {
	r := &route{via: via, gateway: gw, hosts: vs.Spec.GetHosts(), method: anyStr,
		destination: fqdn(d.GetDestination().GetHost(), destNS, ev.cfg.ClusterDomain)}
	r.setURIMatch(m.GetUri(), m.GetIgnoreUriCase())
	if mm := m.GetMethod(); mm != nil && mm.GetExact() != "" {
		r.method = exactly(mm.GetExact())
	}
	for h, sm := range m.GetHeaders() {
		if sm.GetExact() != "" {
			if r.headers == nil {
				r.headers = map[string]strSet{}
			}
			r.headers[strings.ToLower(h)] = exactly(sm.GetExact())
		}
	}
	for _, ops := range []*networkingapi.Headers{hr.GetHeaders(), d.GetHeaders()} {
		for h, v := range ops.GetRequest().GetSet() {
			if r.setHeaders == nil {
				r.setHeaders = map[string]string{}
			}
			r.setHeaders[strings.ToLower(h)] = v
		}
	}
	r.protocol = protocolOf(r.paths)
	if d.mirror {
		r.via += " mirror"
		r.mirror = true
	}
	r.applyRewrite(hr.GetRewrite())
	return r
}

// applyRewrite records what a rewrite changes for the model's proxy: a URI rewrite makes the
// path unknown to the engine (judged as every path there), an authority rewrite fixes the Host.
func (r *route) applyRewrite(rw *networkingapi.HTTPRewrite) {
	r.rewrite = rw
	if rw.GetUri() != "" || rw.GetUriRegexRewrite() != nil {
		every := prefixed("/")
		r.modelPaths = &every
	}
	if a := rw.GetAuthority(); a != "" {
		h := exactly(strings.ToLower(a))
		r.modelHost = &h
	}
}

// setURIMatch turns a VirtualService URI match into a path set. A regex, or no match at all,
// is every path: a regex cannot be enumerated, so the engine assumes the widest route.
func (r *route) setURIMatch(u *networkingapi.StringMatch, ignoreCase bool) {
	switch {
	case u.GetExact() != "" && !ignoreCase:
		r.paths, r.match = exactly(u.GetExact()), "exact "+u.GetExact()
	case u.GetPrefix() != "" && !ignoreCase:
		r.paths, r.match = prefixed(u.GetPrefix()), "prefix "+u.GetPrefix()
	case u.GetRegex() != "":
		r.paths, r.match, r.allPaths = prefixed("/"), "regex "+u.GetRegex()+" (judged as every path)", true
	case u != nil && ignoreCase:
		// Case-insensitive matching admits spellings a case-sensitive policy path misses.
		r.paths, r.match, r.allPaths = prefixed("/"), "case-insensitive "+u.String()+" (judged as every path)", true
	default:
		r.paths, r.match, r.allPaths = prefixed("/"), "every path", true
	}
}

// protocolOf says which APIs a path set reaches: gRPC calls are POSTs to "/package.Service/Method".
func protocolOf(p strSet) string {
	grpc := relate(grpcInferenceServiceAPI+"*", p) != triNone || (p.kind == setPrefix && strings.HasPrefix(grpcInferenceServiceAPI, p.s))
	rest := p.kind != setExact && !strings.HasPrefix(p.s, "/inference.") || (p.kind == setExact && !strings.HasPrefix(p.s, "/inference."))
	switch {
	case grpc && rest:
		return "REST+gRPC"
	case grpc:
		return "gRPC"
	}
	return "REST"
}

// targetsOf resolves a destination FQDN to the models behind it: a KServe InferenceService's
// Services, Seldon's mesh Service in a namespace holding Models, or a Service the config marks.
func (ev *evaluation) targetsOf(host string) []*target {
	name, ns, ok := splitServiceFQDN(host, ev.cfg.ClusterDomain)
	if !ok {
		return nil
	}
	if t := ev.isvcTarget(ns, name); t != nil {
		return []*target{t}
	}
	if name == ev.cfg.SeldonMeshService {
		if ts := ev.seldonTargets(ns); len(ts) > 0 {
			return ts
		}
	}
	if svc := ev.snap.services[ns+"/"+name]; svc != nil && ev.markedModelService(svc) {
		return []*target{{ref: objectRef("Service", ns, name), namespace: ns,
			workloads: ev.serviceWorkloads(svc), hosts: []string{host}}}
	}
	return nil
}

func (ev *evaluation) markedModelService(svc *corev1.Service) bool {
	for _, sel := range ev.cfg.modelSvcSel {
		if sel.Matches(labels.Set(svc.Labels)) {
			return true
		}
	}
	return false
}

// isvcTarget finds the InferenceService a Service name belongs to and the workload that first
// receives the traffic: the transformer when the route reaches the top-level Service of an
// InferenceService that has one, else the predictor.
func (ev *evaluation) isvcTarget(ns, svcName string) *target {
	for _, cand := range []struct{ isvc, component string }{
		{svcName, ""},
		{strings.TrimSuffix(svcName, "-predictor"), "predictor"},
		{strings.TrimSuffix(svcName, "-predictor-default"), "predictor"},
		{strings.TrimSuffix(svcName, "-transformer"), "transformer"},
	} {
		if cand.isvc == svcName && cand.component != "" {
			continue
		}
		isvc, ok := ev.isvc(ns, cand.isvc)
		if !ok {
			continue
		}
		return ev.isvcTargetFor(isvc, cand.component)
	}
	return nil
}

func (ev *evaluation) isvcTargetFor(isvc InferenceService, component string) *target {
	if component == "" {
		component = "predictor"
		if isvc.HasTransformer() {
			component = "transformer"
		}
	}
	key := isvcComponent{isvc.U, component}
	if t, ok := ev.isvcTargets[key]; ok {
		return t
	}
	if ev.isvcTargets == nil {
		ev.isvcTargets = map[isvcComponent]*target{}
	}
	t := ev.newISVCTarget(isvc, component)
	ev.isvcTargets[key] = t
	return t
}

func (ev *evaluation) newISVCTarget(isvc InferenceService, component string) *target {
	t := &target{ref: objectRef("InferenceService", isvc.Namespace(), isvc.Name()), namespace: isvc.Namespace(), owner: isvc}
	for _, n := range isvc.ServiceNames() {
		t.hosts = append(t.hosts, n+"."+isvc.Namespace()+".svc."+ev.cfg.ClusterDomain)
	}
	sel := map[string]string{LabelKServeISVC: isvc.Name()}
	for _, w := range ev.snap.workloadsSelected(isvc.Namespace(), sel) {
		if c, ok := w.Labels["component"]; !ok || c == component {
			t.workloads = append(t.workloads, w)
		}
	}
	if len(t.workloads) == 0 {
		lbls := isvc.WorkloadLabels()
		lbls["component"] = component
		if component == "transformer" {
			delete(lbls, "app")
		}
		t.workloads = []*Workload{{Ref: fmt.Sprintf("%s pods (not in the mesh state; labels inferred)", component), Namespace: isvc.Namespace(), Labels: lbls}}
	}
	return t
}

// seldonTargets returns one target per Model in the namespace: Seldon's mesh Service routes
// each request to the model its seldon-model header names.
func (ev *evaluation) seldonTargets(ns string) []*target {
	models := ev.modelsIn(ns)
	if len(models) == 0 {
		return nil
	}
	host := ev.cfg.SeldonMeshService + "." + ns + ".svc." + ev.cfg.ClusterDomain
	var wls []*Workload
	if svc := ev.snap.services[ns+"/"+ev.cfg.SeldonMeshService]; svc != nil {
		wls = ev.serviceWorkloads(svc)
	} else {
		wls = []*Workload{{Ref: "Seldon mesh pods (not in the mesh state)", Namespace: ns, Labels: map[string]string{}}}
	}
	out := make([]*target, 0, len(models))
	for _, m := range models {
		out = append(out, &target{ref: objectRef("Model", ns, m.Name()), namespace: ns, workloads: wls,
			hosts: []string{host}, seldon: m.Name(), owner: m})
	}
	return out
}

// serviceWorkloads returns the workloads a Service selects, or one inferred from its selector.
func (ev *evaluation) serviceWorkloads(svc *corev1.Service) []*Workload {
	if wls := ev.snap.workloadsSelected(svc.Namespace, svc.Spec.Selector); len(wls) > 0 {
		return wls
	}
	return []*Workload{{Ref: fmt.Sprintf("pods of Service %s/%s (not in the mesh state)", svc.Namespace, svc.Name), Namespace: svc.Namespace, Labels: svc.Spec.Selector}}
}

// gatewayWorkloads returns the pods of an Istio Gateway: those its selector picks in the mesh
// state. Otherwise the pods are unplaced: an Istio Gateway's selector picks pods in any
// namespace, so only mesh-wide policies (root namespace) are known to apply to them, with the
// selector's labels (which the real pods carry) and no more.
func (ev *evaluation) gatewayWorkloads(gw string) []*Workload {
	g := ev.snap.gateways[gw]
	if g == nil {
		ev.add(Finding{Code: CodeGatewayUnknown, Severity: SeverityInfo,
			Message: fmt.Sprintf("Gateway %s is not in the mesh state: its pods' namespace and labels are unknown, so only mesh-wide policies count at the gateway", gw)})
		return []*Workload{{Ref: "pods of Gateway " + gw + " (unknown)", Labels: map[string]string{}}}
	}
	if wls := ev.snap.workloadsSelected("", g.Spec.GetSelector()); len(wls) > 0 {
		return wls
	}
	ev.add(Finding{Code: CodeGatewayUnknown, Severity: SeverityInfo,
		Message: fmt.Sprintf("no pods of Gateway %s (selector %v) are in the mesh state: their namespace is unknown, so only mesh-wide policies count at the gateway", gw, g.Spec.GetSelector())})
	return []*Workload{{Ref: "pods of Gateway " + gw + " (not in the mesh state)", Labels: g.Spec.GetSelector()}}
}

// directExposures finds Services of type LoadBalancer or NodePort, or with externalIPs, that
// select the target's workloads: clients reach those pods without passing any gateway.
func (ev *evaluation) directExposures(t *target) []*exposure {
	var out []*exposure
	for _, svc := range ev.snap.svcByNS[t.namespace] {
		if !externallyReachable(svc) || len(svc.Spec.Selector) == 0 {
			continue
		}
		for _, w := range t.workloads {
			if selectorMatches(svc.Spec.Selector, w) != applyYes {
				continue
			}
			r := &route{via: fmt.Sprintf("Service %s/%s (%s)", svc.Namespace, svc.Name, svc.Spec.Type), match: "every path",
				paths: prefixed("/"), method: anyStr, protocol: "REST+gRPC",
				destination: svc.Name + "." + svc.Namespace + ".svc." + ev.cfg.ClusterDomain}
			out = append(out, &exposure{route: r, target: &target{ref: t.ref, namespace: t.namespace, workloads: []*Workload{w}, hosts: t.hosts, seldon: t.seldon, owner: t.owner}})
		}
	}
	return out
}

func externallyReachable(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer || svc.Spec.Type == corev1.ServiceTypeNodePort || len(svc.Spec.ExternalIPs) > 0
}

// routesReaching narrows a route to the Seldon model a target stands for: the request must
// carry seldon-model: <name> when it reaches the mesh Service, either set by the route or sent
// by the caller (then the attacker sends it). A route that fixes another model does not reach it.
func reachesSeldonModel(r *route, t *target) (gatewayHeader strSet, ok bool) {
	if t.seldon == "" {
		return anyStr, true
	}
	if v, set := r.setHeaders[seldonModelHeader]; set {
		return anyStr, v == t.seldon
	}
	if v, matched := r.headers[seldonModelHeader]; matched {
		return v, v.s == t.seldon
	}
	return exactly(t.seldon), true
}
