package policy

import (
	"fmt"
	goruntime "runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// Uncovered is a model that a policy change would leave exposed: covered before the change,
// with error findings after it.
type Uncovered struct {
	Ref      string // "InferenceService ns/name"
	Rule     string
	Mode     Mode
	Findings []Finding // the error findings the change introduces
}

// Uncovers judges every model a change of one AuthorizationPolicy, RequestAuthentication,
// PeerAuthentication or DestinationRule can affect, before and after the change, and returns
// those it would leave uncovered. A model that was already uncovered is not blamed on this
// change: refusing it would not make the model safer, only block unrelated edits.
//
// A change of a Namespace (Old and New both set: an update) is a relabelling, judged by
// relabelUncovers: it returns the exposed models of the namespace that the rule the new
// labels select would guard less well than the rule that guards them now.
func Uncovers(cfg *GuardConfig, snap *Snapshot, c Change) ([]Uncovered, error) {
	if _, ok := c.Old.(*corev1.Namespace); ok {
		return relabelUncovers(cfg, snap, c)
	}
	if _, ok := c.New.(*corev1.Namespace); ok {
		return nil, nil // a new namespace holds no model yet
	}
	ref := c.Old
	if ref == nil {
		ref = c.New
	}
	if keyOf(ref) == "" {
		return nil, fmt.Errorf("cannot judge a change of a %T", ref)
	}
	models := snap.modelsAffectedBy(ref)
	found := make([]*Uncovered, len(models))
	parallel(len(models), func(i int) {
		m := models[i]
		// The verdict after the change first: most changes leave every model as it was, and
		// only a model with errors afterwards needs the verdict before to tell whether the
		// change made them.
		after := Evaluate(cfg, snap, m, Options{Change: &c})
		if after.worst() != SeverityError {
			return
		}
		if fs := newErrors(Evaluate(cfg, snap, m, Options{}), after); len(fs) > 0 {
			found[i] = &Uncovered{Ref: objectRef(m.GetKind(), m.GetNamespace(), m.GetName()), Rule: after.Rule, Mode: after.Mode, Findings: fs}
		}
	})
	var out []Uncovered
	for _, u := range found {
		if u != nil {
			out = append(out, *u)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, nil
}

// parallel runs f(0..n-1) on every CPU: a change of a root-namespace policy re-judges every
// model in the cluster, within the webhook's timeout.
func parallel(n int, f func(i int)) {
	workers := min(goruntime.GOMAXPROCS(0), n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		})
	}
	wg.Wait()
}

// newErrors lists the error findings of after whose code the before verdict did not have.
func newErrors(before, after Verdict) []Finding {
	had := map[Code]bool{}
	for _, f := range before.Findings {
		if f.Severity == SeverityError {
			had[f.Code] = true
		}
	}
	var out []Finding
	for _, f := range after.Findings {
		if f.Severity == SeverityError && !had[f.Code] {
			out = append(out, f)
		}
	}
	return out
}

// modelsAffectedBy lists the models whose verdict a policy can change: those of its namespace,
// or every model when it is in the mesh root namespace, in a namespace where gateway pods run
// (their policies guard routes to models everywhere), or a DestinationRule whose host is not a
// Service of one namespace.
func (s *Snapshot) modelsAffectedBy(o runtime.Object) []*unstructured.Unstructured {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ns := o.(metav1.Object).GetNamespace()
	switch t := o.(type) {
	case *corev1.Namespace:
		return s.modelsIn(t.Name)
	case *networkingv1.DestinationRule:
		if _, hostNS, ok := splitServiceFQDN(fqdn(t.Spec.GetHost(), t.Namespace, s.domain), s.domain); ok {
			return s.modelsIn(hostNS)
		}
	case *securityv1.PeerAuthentication:
		if ns != s.rootNS {
			return s.modelsIn(ns)
		}
	default:
		if ns != s.rootNS && !s.gatewayNamespaces()[ns] {
			return s.modelsIn(ns)
		}
	}
	return s.modelsIn("")
}

// modelsIn lists InferenceServices and Models of a namespace ("" for all), in a stable order.
func (s *Snapshot) modelsIn(ns string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for key, u := range s.isvcs {
		if ns == "" || strings.HasPrefix(key, ns+"/") {
			out = append(out, u)
		}
	}
	for mns, byName := range s.models {
		if ns != "" && mns != ns {
			continue
		}
		for _, u := range byName {
			out = append(out, u)
		}
	}
	slices.SortFunc(out, func(a, b *unstructured.Unstructured) int {
		return strings.Compare(a.GetKind()+"/"+a.GetNamespace()+"/"+a.GetName(), b.GetKind()+"/"+b.GetNamespace()+"/"+b.GetName())
	})
	return out
}

// gatewayNamespaces are the namespaces where pods of the mesh's Gateways run.
func (s *Snapshot) gatewayNamespaces() map[string]bool {
	out := map[string]bool{}
	for _, g := range s.gateways {
		for _, w := range s.workloadsSelected("", g.Spec.GetSelector()) {
			out[w.Namespace] = true
		}
	}
	return out
}

// NamespaceTerminating reports whether the namespace is being deleted: then nothing in it may
// be refused, or the namespace could never finish terminating.
func (s *Snapshot) NamespaceTerminating(ns string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.terminating[ns]
}

// relabelUncovers judges a change of a namespace's labels, which can make another GuardConfig
// rule (or none) apply to the models in it. For each model the namespace exposes now, it
// compares the rule that applies now with the one the new labels select, and refuses the
// change (in the current rule's mode) when the new rule is laxer — a weaker mode, no rule at
// all, mTLS no longer required, more issuers allowed, another inject issuer or key set,
// wider audiences, same-namespace callers let in — or when the policies the new rule plans
// (in place of the current rule's generated ones) would leave the model with gaps the
// current rule denies. The model is judged by the current rule's requirements both times:
// the question is what the relabelling takes away, not whether a stricter rule would find
// more to fault (a move to a stricter rule is never refused).
//
// This holds for whoever relabels, cluster administrators included: a namespace's labels
// are how the GuardConfig's operator hands a namespace a rule, and a relabel that weakens
// the rule of exposed models is the same bypass as an edit of their policies. The way to
// relax a namespace on purpose is the GuardConfig, which the operator owns. (Deletions are
// never refused: the guard receives namespace updates only.)
func relabelUncovers(cfg *GuardConfig, snap *Snapshot, c Change) ([]Uncovered, error) {
	oldNS, _ := c.Old.(*corev1.Namespace)
	newNS, _ := c.New.(*corev1.Namespace)
	if oldNS == nil || newNS == nil || oldNS.Name != newNS.Name {
		return nil, fmt.Errorf("a namespace change is judged with both versions of one namespace")
	}
	name := oldNS.Name
	if cfg.Exempt(name) {
		return nil, nil
	}
	oldRule := cfg.ruleFor(nsLabels{name: name, labels: oldNS.Labels})
	newRule := cfg.ruleFor(nsLabels{name: name, labels: newNS.Labels})
	if oldRule == nil || oldRule == newRule {
		return nil, nil // nothing guards it now, or the same rule still does
	}
	reasons := weakerRule(oldRule, newRule)
	now := &nsView{name: name, rule: oldNS.Labels}
	after := &nsView{name: name, rule: oldNS.Labels, plan: newNS.Labels, hideGenerated: true}
	newName := "no rule"
	if newRule != nil {
		newName = fmt.Sprintf("rule %q (%s)", newRule.Name, newRule.Mode)
	}
	var out []Uncovered
	for _, m := range snap.modelsAffectedBy(newNS) {
		before := Evaluate(cfg, snap, m, Options{view: now})
		if !before.Exposed {
			continue // not exposed now: if it ever is, it is judged by the rule of that day
		}
		lost := newErrors(before, Evaluate(cfg, snap, m, Options{view: after}))
		if len(reasons) == 0 && len(lost) == 0 {
			continue
		}
		ref := objectRef(m.GetKind(), m.GetNamespace(), m.GetName())
		why := strings.Join(reasons, "; ")
		if why == "" {
			why = fmt.Sprintf("the policies %s plans in place of those of rule %q would leave it uncovered", newName, oldRule.Name)
		}
		f := Finding{Code: CodeNamespaceRuleWeakened, Severity: SeverityError, Route: ref,
			Message: fmt.Sprintf("relabelling namespace %s would make %s apply to exposed %s instead of rule %q (%s): %s", name, newName, ref, oldRule.Name, oldRule.Mode, why),
			Fix: "Keep the namespace's labels, or have the GuardConfig's operator change the rules rather than the namespace. " +
				"Where only the policies the new rule plans fall short, give the model policies of its own first."}
		for i := range lost {
			lost[i].Fix = "" // the finding above says what to do; the current rule's plan is no fix here
		}
		out = append(out, Uncovered{Ref: ref, Rule: oldRule.Name, Mode: oldRule.Mode, Findings: append([]Finding{f}, lost...)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, nil
}

// weakerRule lists how rule b guards a model less than rule a (nil b: no rule at all).
func weakerRule(a, b *Rule) []string {
	if b == nil {
		return []string{"no rule would guard the namespace"}
	}
	var out []string
	if b.Mode.rank() < a.Mode.rank() {
		out = append(out, fmt.Sprintf("mode %s instead of %s", b.Mode, a.Mode))
	}
	if a.MTLSRequired() && !b.MTLSRequired() {
		out = append(out, "mTLS no longer required")
	}
	if widened(a.AllowedIssuers, b.AllowedIssuers) {
		out = append(out, fmt.Sprintf("allowedIssuers %v instead of %v", orAny(b.AllowedIssuers), a.AllowedIssuers))
	}
	if a.Inject != nil && b.Inject != nil {
		switch {
		case a.Inject.Issuer != b.Inject.Issuer:
			out = append(out, fmt.Sprintf("the generated policies would accept tokens of issuer %s instead of %s", b.Inject.Issuer, a.Inject.Issuer))
		case a.Inject.JwksURI != b.Inject.JwksURI:
			out = append(out, fmt.Sprintf("the generated policies would accept tokens signed by the keys of %s instead of %s", b.Inject.JwksURI, a.Inject.JwksURI))
		}
		if widened(a.Inject.Audiences, b.Inject.Audiences) {
			out = append(out, fmt.Sprintf("the generated policies would accept audiences %v instead of %v", orAny(b.Inject.Audiences), a.Inject.Audiences))
		}
		if b.Inject.AllowSameNamespace && !a.Inject.AllowSameNamespace {
			out = append(out, "callers in the model's namespace would need no token")
		}
	}
	return out
}

// widened reports whether list b admits something list a does not, where an empty list
// admits everything.
func widened(a, b []string) bool {
	if len(a) == 0 {
		return false
	}
	if len(b) == 0 {
		return true
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			return true
		}
	}
	return false
}

func orAny(xs []string) any {
	if len(xs) == 0 {
		return "(any)"
	}
	return xs
}
