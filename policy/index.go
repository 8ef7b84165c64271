package policy

import (
	"slices"
	"strings"

	typev1beta1 "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
)

// binding is how a policy chooses its workloads: a label selector, or Gateway API target refs
// (which take precedence over the selector, as in Istio).
type binding struct {
	selector   labelSelector
	targetRefs []*typev1beta1.PolicyTargetReference
}

func authzSelector(p *securityv1.AuthorizationPolicy) binding {
	return binding{compileSelector(p.Spec.GetSelector().GetMatchLabels()), targetRefs(p.Spec.GetTargetRef(), p.Spec.GetTargetRefs())}
}

func raSelector(p *securityv1.RequestAuthentication) binding {
	return binding{compileSelector(p.Spec.GetSelector().GetMatchLabels()), targetRefs(p.Spec.GetTargetRef(), p.Spec.GetTargetRefs())}
}

func paSelector(p *securityv1.PeerAuthentication) binding {
	return binding{selector: compileSelector(p.Spec.GetSelector().GetMatchLabels())}
}

func targetRefs(one *typev1beta1.PolicyTargetReference, many []*typev1beta1.PolicyTargetReference) []*typev1beta1.PolicyTargetReference {
	if one != nil {
		return append([]*typev1beta1.PolicyTargetReference{one}, many...)
	}
	return many
}

// labelSelector is a matchLabels map as a list sorted by key: judging a workload walks a
// slice instead of iterating a map, which dominated the policy lookup's cost.
type labelSelector []labelPair

type labelPair struct{ key, value string }

func compileSelector(m map[string]string) labelSelector {
	if len(m) == 0 {
		return nil
	}
	sel := make(labelSelector, 0, len(m))
	for k, v := range m {
		sel = append(sel, labelPair{k, v})
	}
	slices.SortFunc(sel, func(a, b labelPair) int { return strings.Compare(a.key, b.key) })
	return sel
}

// selectorMatches judges a selector kept as a map (a Service's, a PeerAuthentication's):
// those are few per namespace, so they are compiled when judged.
func selectorMatches(m map[string]string, w *Workload) applicability {
	return compileSelector(m).matches(w)
}

// indexed is a policy filed with its binding, worked out once when the policy is stored;
// every list the policy is on shares the one entry.
type indexed[T any] struct {
	p T
	b binding
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
	byKey       map[string]*indexed[T]
	byNS        map[string][]*indexed[T] // every namespace but the root
	rootGlobal  []*indexed[T]            // root namespace, no selector (or target refs): checked for every workload
	rootSel     []*indexed[T]            // root namespace with a selector
	rootByLabel map[string][]*indexed[T] // "k=v" -> root selector policies holding that pair
	byTarget    map[string][]*indexed[T] // "ns/name" of a Gateway API Gateway -> policies targeting it
	byTargetNS  map[string][]*indexed[T] // namespace -> policies targeting a Gateway there
}

func newPolicyIndex[T interface {
	comparable
	GetNamespace() string
	GetName() string
}](root string, bind func(T) binding) *policyIndex[T] {
	return &policyIndex[T]{root: root, bind: bind, byKey: map[string]*indexed[T]{}, byNS: map[string][]*indexed[T]{},
		rootByLabel: map[string][]*indexed[T]{}, byTarget: map[string][]*indexed[T]{}, byTargetNS: map[string][]*indexed[T]{}}
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
	e := &indexed[T]{p: p, b: ix.bind(p)}
	ix.byKey[key] = e
	switch {
	case len(e.b.targetRefs) > 0:
		// Target refs replace the selector; only Gateway API Gateways can bind the pods the
		// engine models, so other refs are not indexed at all (they never apply here).
		for _, key := range gatewayTargets(e.b.targetRefs, ns) {
			tns, _, _ := strings.Cut(key, "/")
			ix.byTarget[key] = append(ix.byTarget[key], e)
			ix.byTargetNS[tns] = append(ix.byTargetNS[tns], e)
		}
	case ns != ix.root:
		ix.byNS[ns] = append(ix.byNS[ns], e)
	case len(e.b.selector) == 0:
		ix.rootGlobal = append(ix.rootGlobal, e)
	default:
		ix.rootSel = append(ix.rootSel, e)
		for _, l := range e.b.selector {
			ix.rootByLabel[l.key+"="+l.value] = append(ix.rootByLabel[l.key+"="+l.value], e)
		}
	}
}

func (ix *policyIndex[T]) remove(e *indexed[T]) {
	ns := e.p.GetNamespace()
	if refs := e.b.targetRefs; len(refs) > 0 {
		for _, key := range gatewayTargets(refs, ns) {
			tns, _, _ := strings.Cut(key, "/")
			ix.byTarget[key] = removePtr(ix.byTarget[key], e)
			ix.byTargetNS[tns] = removePtr(ix.byTargetNS[tns], e)
		}
		return
	}
	if ns != ix.root {
		ix.byNS[ns] = removePtr(ix.byNS[ns], e)
		if len(ix.byNS[ns]) == 0 {
			delete(ix.byNS, ns)
		}
		return
	}
	ix.rootGlobal = removePtr(ix.rootGlobal, e)
	ix.rootSel = removePtr(ix.rootSel, e)
	for _, l := range e.b.selector {
		ix.rootByLabel[l.key+"="+l.value] = removePtr(ix.rootByLabel[l.key+"="+l.value], e)
	}
}

// inNamespace lists the policies of namespace ns bound by selector, or for the mesh root
// namespace the ones without a selector (the mesh-wide ones); target-ref policies are apart.
func (ix *policyIndex[T]) inNamespace(ns string) []*indexed[T] {
	if ns == ix.root {
		return ix.rootGlobal
	}
	return ix.byNS[ns]
}

// candidates calls fn for every policy that may apply to w (each once), with how sure the
// engine is that it applies.
func (ix *policyIndex[T]) candidates(w *Workload, fn func(T, applicability)) {
	visit := func(e *indexed[T]) {
		if a := e.b.applies(e.p.GetNamespace(), ix.root, w); a != applyNo {
			fn(e.p, a)
		}
	}
	if w.Namespace != ix.root {
		for _, e := range ix.byNS[w.Namespace] {
			visit(e)
		}
	}
	for _, e := range ix.rootGlobal {
		visit(e)
	}
	ix.targetCandidates(w, visit)
	if !w.Exact {
		// A label the engine does not know may be on the pods: every selector policy may apply.
		for _, e := range ix.rootSel {
			visit(e)
		}
		return
	}
	ix.rootLabelCandidates(w, visit)
}

// rootLabelCandidates visits the root namespace's selector policies sharing a label with an
// exact workload, each once; most workloads hit at most one label's list, which needs no
// deduplication.
func (ix *policyIndex[T]) rootLabelCandidates(w *Workload, visit func(*indexed[T])) {
	if len(ix.rootSel) == 0 {
		return
	}
	var hit [][]*indexed[T]
	for k, v := range w.Labels {
		if l := ix.rootByLabel[k+"="+v]; len(l) > 0 {
			hit = append(hit, l)
		}
	}
	if len(hit) == 1 {
		for _, e := range hit[0] {
			visit(e)
		}
		return
	}
	seen := map[T]bool{}
	for _, l := range hit {
		for _, e := range l {
			if !seen[e.p] {
				seen[e.p] = true
				visit(e)
			}
		}
	}
}

// targetCandidates visits the policies that target the Gateway API Gateway a workload runs,
// or, for a workload whose labels are not all known, every Gateway of its namespace.
func (ix *policyIndex[T]) targetCandidates(w *Workload, visit func(*indexed[T])) {
	if !w.Exact {
		for _, e := range ix.byTargetNS[w.Namespace] {
			visit(e) // a policy targeting two gateways here is judged twice: same answer
		}
		return
	}
	if name, ok := w.Labels[labelGatewayName]; ok {
		for _, e := range ix.byTarget[w.Namespace+"/"+name] {
			visit(e)
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
func (b binding) applies(ns, root string, w *Workload) applicability {
	if len(b.targetRefs) > 0 {
		return appliesByTargetRef(b.targetRefs, ns, w)
	}
	if ns != root && ns != w.Namespace {
		return applyNo
	}
	return b.selector.matches(w)
}

// matches reports whether the workload carries every label of the selector; for an inexact
// workload a label it does not list may still be on its pods.
func (sel labelSelector) matches(w *Workload) applicability {
	res := applyYes
	for _, l := range sel {
		hv, ok := w.Labels[l.key]
		switch {
		case ok && hv != l.value:
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
		switch a := (labelSelector{{labelGatewayName, r.GetName()}}).matches(w); {
		case a == applyYes:
			return applyYes
		case a == applyMaybe:
			res = applyMaybe
		}
	}
	return res
}
