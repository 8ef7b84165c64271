package policy

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
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
func Uncovers(cfg *GuardConfig, snap *Snapshot, c Change) ([]Uncovered, error) {
	ref := c.Old
	if ref == nil {
		ref = c.New
	}
	if keyOf(ref) == "" {
		return nil, fmt.Errorf("cannot judge a change of a %T", ref)
	}
	var out []Uncovered
	for _, m := range snap.modelsAffectedBy(ref) {
		before := Evaluate(cfg, snap, m, Options{})
		after := Evaluate(cfg, snap, m, Options{Change: &c})
		if fs := newErrors(before, after); len(fs) > 0 {
			out = append(out, Uncovered{Ref: objectRef(m.GetKind(), m.GetNamespace(), m.GetName()), Rule: after.Rule, Mode: after.Mode, Findings: fs})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, nil
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
