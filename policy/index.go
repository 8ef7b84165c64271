package policy

import (
	"strings"

	typev1beta1 "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
)

// binding is how a policy chooses its workloads: a label selector, or Gateway API target refs
// (which take precedence over the selector, as in Istio).
type binding struct {
	selector   map[string]string
	targetRefs []*typev1beta1.PolicyTargetReference
}

func authzSelector(p *securityv1.AuthorizationPolicy) binding {
	return binding{p.Spec.GetSelector().GetMatchLabels(), targetRefs(p.Spec.GetTargetRef(), p.Spec.GetTargetRefs())}
}

func raSelector(p *securityv1.RequestAuthentication) binding {
	return binding{p.Spec.GetSelector().GetMatchLabels(), targetRefs(p.Spec.GetTargetRef(), p.Spec.GetTargetRefs())}
}

func paSelector(p *securityv1.PeerAuthentication) binding {
	return binding{selector: p.Spec.GetSelector().GetMatchLabels()}
}

func targetRefs(one *typev1beta1.PolicyTargetReference, many []*typev1beta1.PolicyTargetReference) []*typev1beta1.PolicyTargetReference {
	if one != nil {
		return append([]*typev1beta1.PolicyTargetReference{one}, many...)
	}
	return many
}

// policyIndex holds one kind of Istio security policy, indexed for the question "which
// policies can apply to this workload": those of the workload's namespace, and those of the
// mesh root namespace (by selector label, so a root namespace with thousands of selector
// policies costs only the ones sharing a label with the workload).
type policyIndex[T interface {
	comparable
	GetNamespace() string
	GetName() string
}] struct {
	root        string
	bind        func(T) binding
	byKey       map[string]T
	byNS        map[string][]T // every namespace but the root
	rootGlobal  []T            // root namespace, no selector (or target refs): checked for every workload
	rootSel     []T            // root namespace with a selector
	rootByLabel map[string][]T // "k=v" -> root selector policies holding that pair
	byTarget    map[string][]T // "ns/name" of a Gateway API Gateway -> policies targeting it
	byTargetNS  map[string][]T // namespace -> policies targeting a Gateway there
}

func newPolicyIndex[T interface {
	comparable
	GetNamespace() string
	GetName() string
}](root string, bind func(T) binding) *policyIndex[T] {
	return &policyIndex[T]{root: root, bind: bind, byKey: map[string]T{}, byNS: map[string][]T{}, rootByLabel: map[string][]T{},
		byTarget: map[string][]T{}, byTargetNS: map[string][]T{}}
}

func (ix *policyIndex[T]) put(ns, name string, p T, del bool) {
	key := ns + "/" + name
	if old, ok := ix.byKey[key]; ok {
		ix.remove(old)
		delete(ix.byKey, key)
	}
	if del {
		return
	}
	ix.byKey[key] = p
	b := ix.bind(p)
	switch {
	case len(b.targetRefs) > 0:
		// Target refs replace the selector; only Gateway API Gateways can bind the pods the
		// engine models, so other refs are not indexed at all (they never apply here).
		for _, key := range gatewayTargets(b.targetRefs, ns) {
			tns, _, _ := strings.Cut(key, "/")
			ix.byTarget[key] = append(ix.byTarget[key], p)
			ix.byTargetNS[tns] = append(ix.byTargetNS[tns], p)
		}
	case ns != ix.root:
		ix.byNS[ns] = append(ix.byNS[ns], p)
	case len(b.selector) == 0:
		ix.rootGlobal = append(ix.rootGlobal, p)
	default:
		ix.rootSel = append(ix.rootSel, p)
		for k, v := range b.selector {
			ix.rootByLabel[k+"="+v] = append(ix.rootByLabel[k+"="+v], p)
		}
	}
}

func (ix *policyIndex[T]) remove(p T) {
	ns := p.GetNamespace()
	if refs := ix.bind(p).targetRefs; len(refs) > 0 {
		for _, key := range gatewayTargets(refs, ns) {
			tns, _, _ := strings.Cut(key, "/")
			ix.byTarget[key] = removePtr(ix.byTarget[key], p)
			ix.byTargetNS[tns] = removePtr(ix.byTargetNS[tns], p)
		}
		return
	}
	if ns != ix.root {
		ix.byNS[ns] = removePtr(ix.byNS[ns], p)
		if len(ix.byNS[ns]) == 0 {
			delete(ix.byNS, ns)
		}
		return
	}
	ix.rootGlobal = removePtr(ix.rootGlobal, p)
	ix.rootSel = removePtr(ix.rootSel, p)
	for k, v := range ix.bind(p).selector {
		ix.rootByLabel[k+"="+v] = removePtr(ix.rootByLabel[k+"="+v], p)
	}
}

// candidates calls fn for every policy that may apply to w (each once), with how sure the
// engine is that it applies.
func (ix *policyIndex[T]) candidates(w *Workload, fn func(T, applicability)) {
	visit := func(p T) {
		if a := applies(ix.bind(p), p.GetNamespace(), ix.root, w); a != applyNo {
			fn(p, a)
		}
	}
	if w.Namespace != ix.root {
		for _, p := range ix.byNS[w.Namespace] {
			visit(p)
		}
	}
	for _, p := range ix.rootGlobal {
		visit(p)
	}
	ix.targetCandidates(w, visit)
	if !w.Exact {
		// A label the engine does not know may be on the pods: every selector policy may apply.
		for _, p := range ix.rootSel {
			visit(p)
		}
		return
	}
	seen := map[T]bool{}
	for k, v := range w.Labels {
		for _, p := range ix.rootByLabel[k+"="+v] {
			if !seen[p] {
				seen[p] = true
				visit(p)
			}
		}
	}
}

// targetCandidates visits the policies that target the Gateway API Gateway a workload runs,
// or, for a workload whose labels are not all known, every Gateway of its namespace.
func (ix *policyIndex[T]) targetCandidates(w *Workload, visit func(T)) {
	if !w.Exact {
		for _, p := range ix.byTargetNS[w.Namespace] {
			visit(p) // a policy targeting two gateways here is judged twice: same answer
		}
		return
	}
	if name, ok := w.Labels[labelGatewayName]; ok {
		for _, p := range ix.byTarget[w.Namespace+"/"+name] {
			visit(p)
		}
	}
}

// labelGatewayName is on the pods Istio deploys for a Gateway API Gateway.
const labelGatewayName = "gateway.networking.k8s.io/gateway-name"

// gatewayTargets returns "ns/name" of each Gateway API Gateway among the target refs.
func gatewayTargets(refs []*typev1beta1.PolicyTargetReference, policyNS string) []string {
	var out []string
	for _, r := range refs {
		if r.GetKind() != "Gateway" || r.GetGroup() != "gateway.networking.k8s.io" {
			continue
		}
		ns := r.GetNamespace()
		if ns == "" {
			ns = policyNS
		}
		out = append(out, ns+"/"+r.GetName())
	}
	return out
}

// applicability is whether a policy applies to a workload. applyMaybe arises only for an
// inexact workload whose selector-relevant labels are unknown.
type applicability uint8

const (
	applyNo applicability = iota
	applyMaybe
	applyYes
)

// applies decides, as Istio does, whether a policy in namespace ns binds workload w: root
// namespace without selector binds all workloads; root namespace with selector binds matching
// workloads of every namespace; elsewhere only workloads of the same namespace, all of them
// without a selector, matching ones with it. Target refs bind a Gateway API gateway's pods.
func applies(b binding, ns, root string, w *Workload) applicability {
	if len(b.targetRefs) > 0 {
		return appliesByTargetRef(b.targetRefs, ns, w)
	}
	if ns != root && ns != w.Namespace {
		return applyNo
	}
	return selectorMatches(b.selector, w)
}

func selectorMatches(sel map[string]string, w *Workload) applicability {
	res := applyYes
	for k, v := range sel {
		hv, ok := w.Labels[k]
		switch {
		case ok && hv != v:
			return applyNo
		case !ok && w.Exact:
			return applyNo
		case !ok:
			res = applyMaybe
		}
	}
	return res
}

// appliesByTargetRef binds the pods Istio deploys for a Gateway API Gateway, which carry the
// label gateway.networking.k8s.io/gateway-name. Service target refs bind waypoints, which are
// outside the sidecar and gateway hops the engine models, so they never apply here.
func appliesByTargetRef(refs []*typev1beta1.PolicyTargetReference, ns string, w *Workload) applicability {
	res := applyNo
	for _, r := range refs {
		rns := r.GetNamespace()
		if rns == "" {
			rns = ns
		}
		if r.GetKind() != "Gateway" || r.GetGroup() != "gateway.networking.k8s.io" || rns != w.Namespace {
			continue
		}
		switch a := selectorMatches(map[string]string{labelGatewayName: r.GetName()}, w); {
		case a == applyYes:
			return applyYes
		case a == applyMaybe:
			res = applyMaybe
		}
	}
	return res
}
