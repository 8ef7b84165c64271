package webhook

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/modelguard/modelguard/policy"
	"github.com/modelguard/modelguard/policy/decode"
)

// PathGuard is where the webhook configuration sends policy changes.
const PathGuard = "/guard"

// Guard is the validating handler for changes of the Istio policies models rely on
// (AuthorizationPolicy, RequestAuthentication, PeerAuthentication, DestinationRule): it refuses
// a change that would leave an admitted exposure uncovered, naming the exposures. It also
// receives updates of Namespaces, whose labels choose the GuardConfig rule of the models in
// them: a relabel that would hand exposed models a laxer rule is refused like a weakened
// policy (the judgement is the engine's, policy.Uncovers).
type Guard struct {
	Config *ConfigStore
	Mesh   SnapshotSource
	Audit  *Auditor
	// TrustedUsers may change these policies whatever the outcome: the reconciler's service
	// account, which keeps the generated policies equal to the plan.
	TrustedUsers []string
}

var _ admission.Handler = &Guard{}

var guardedKinds = map[schema.GroupKind]bool{
	{Group: "security.istio.io", Kind: "AuthorizationPolicy"}:   true,
	{Group: "security.istio.io", Kind: "RequestAuthentication"}: true,
	{Group: "security.istio.io", Kind: "PeerAuthentication"}:    true,
	{Group: "networking.istio.io", Kind: "DestinationRule"}:     true,
	{Group: "", Kind: "Namespace"}:                              true,
}

// Deletions by these controllers are never refused: they delete what a namespace deletion or
// an owner's deletion already decided, and refusing would leave the cluster stuck.
var systemDeleters = []string{
	"system:serviceaccount:kube-system:namespace-controller",
	"system:serviceaccount:kube-system:generic-garbage-collector",
}

// Handle decides one policy change.
func (g *Guard) Handle(ctx context.Context, req admission.Request) admission.Response {
	return g.Audit.decide(ctx, req, g.decide)
}

func (g *Guard) decide(req admission.Request) (admission.Response, decisionRecord) {
	rec := decisionRecord{req: req, decision: "allowed"}
	change, obj, err := decodeChange(req)
	if err != nil {
		return errored(&rec, err)
	}
	rec.obj = obj
	if g.exempt(req) {
		return admission.Allowed(""), rec
	}
	snap, err := g.Mesh.Snapshot()
	if err != nil {
		return meshUnavailable(&rec, err)
	}
	if ns, ok := obj.(*corev1.Namespace); ok {
		return g.relabel(&rec, snap, change, ns)
	}
	if snap.NamespaceTerminating(req.Namespace) {
		return admission.Allowed(""), rec
	}
	if v, ok := generatedChange(g.Config.Get(), snap, change); ok {
		rec.verdict = v
		return respond(&rec)
	}
	uncovered, err := policy.Uncovers(g.Config.Get(), snap, change)
	if err != nil {
		return errored(&rec, err)
	}
	if len(uncovered) == 0 {
		return admission.Allowed(""), rec
	}
	rec.verdict = guardVerdict(uncovered)
	return respond(&rec)
}

// relabel judges an update of a Namespace. Only its labels matter (they select the rule of
// the models in it); a namespace being deleted is never held up. A relabel that weakens the
// rule of exposed models is refused in Enforce whoever makes it, cluster administrators
// included: unlike the deletions DESIGN.md exempts (the namespace controller's, the garbage
// collector's), it is a choice, not the tail of one already made, and the GuardConfig is the
// place to relax a namespace on purpose. The message names the rule that would apply and the
// models that lose coverage.
func (g *Guard) relabel(rec *decisionRecord, snap *policy.Snapshot, c policy.Change, ns *corev1.Namespace) (admission.Response, decisionRecord) {
	old, _ := c.Old.(*corev1.Namespace)
	if old == nil || maps.Equal(old.Labels, ns.Labels) || ns.DeletionTimestamp != nil || snap.NamespaceTerminating(ns.Name) {
		return admission.Allowed(""), *rec
	}
	uncovered, err := policy.Uncovers(g.Config.Get(), snap, c)
	if err != nil {
		return errored(rec, err)
	}
	if len(uncovered) == 0 {
		return admission.Allowed(""), *rec
	}
	rec.verdict = guardVerdict(uncovered)
	return respond(rec)
}

func (g *Guard) exempt(req admission.Request) bool {
	user := req.UserInfo.Username
	return slices.Contains(g.TrustedUsers, user) || (req.Operation == "DELETE" && slices.Contains(systemDeleters, user))
}

// decodeChange reads the old and new versions of the policy (New is nil for a deletion, Old
// for a creation) with the strict decoder.
func decodeChange(req admission.Request) (policy.Change, runtime.Object, error) {
	obj, err := decodeRequest(req, guardedKinds)
	if err != nil {
		return policy.Change{}, nil, err
	}
	switch req.Operation {
	case "CREATE":
		return policy.Change{New: obj}, obj, nil
	case "DELETE":
		return policy.Change{Old: obj}, obj, nil
	case "UPDATE":
		old, err := decode.DecodeObject(req.OldObject.Raw)
		if err != nil {
			return policy.Change{}, nil, fmt.Errorf("old %s %s/%s: %w", req.Kind.Kind, req.Namespace, req.Name, err)
		}
		if old.Obj.GetNamespace() == "" {
			old.Obj.SetNamespace(req.Namespace)
		}
		return policy.Change{Old: old.Obj, New: obj}, obj, nil
	}
	return policy.Change{}, nil, fmt.Errorf("operation %s is not guarded", req.Operation)
}

// generatedChange refuses (per the namespace rule's mode) a change by anyone but the trusted
// users to a policy modelguard generated: the engine counts the plan, not the live object, so
// tampering would otherwise pass the guard and leave the model open until the reconciler
// restores it.
func generatedChange(cfg *policy.GuardConfig, snap *policy.Snapshot, c policy.Change) (policy.Verdict, bool) {
	old, ok := c.Old.(metav1.Object)
	if !ok || old.GetLabels()[policy.LabelManagedBy] != policy.ManagedByValue {
		return policy.Verdict{}, false
	}
	if c.New != nil && sameSpec(c.Old, c.New) {
		if n, ok := c.New.(metav1.Object); ok && n.GetLabels()[policy.LabelManagedBy] == policy.ManagedByValue {
			return policy.Verdict{}, false // metadata only (another label, an annotation)
		}
	}
	rule := cfg.RuleFor(snap.NamespaceLabels(old.GetNamespace()))
	if rule == nil {
		return policy.Verdict{}, false
	}
	v := policy.Verdict{Mode: rule.Mode, Rule: rule.Name, Allowed: rule.Mode != policy.ModeEnforce, Findings: []policy.Finding{{
		Code: policy.CodeGeneratedPolicyChanged, Severity: policy.SeverityError,
		Message: fmt.Sprintf("%s/%s is generated by modelguard (rule %q) and restored by its reconciler: change the GuardConfig instead", old.GetNamespace(), old.GetName(), rule.Name),
	}}}
	return v, true
}

// sameSpec reports whether two versions of a generated policy have equal specs.
func sameSpec(a, b runtime.Object) bool {
	switch ta := a.(type) {
	case *securityv1.AuthorizationPolicy:
		tb, ok := b.(*securityv1.AuthorizationPolicy)
		return ok && proto.Equal(&ta.Spec, &tb.Spec) && tb.Annotations["istio.io/dry-run"] == ta.Annotations["istio.io/dry-run"]
	case *securityv1.RequestAuthentication:
		tb, ok := b.(*securityv1.RequestAuthentication)
		return ok && proto.Equal(&ta.Spec, &tb.Spec)
	}
	return false
}

// guardVerdict turns the uncovered models into one verdict: the strictest mode among their
// rules decides (one Enforce model is enough to refuse the change).
func guardVerdict(us []policy.Uncovered) policy.Verdict {
	v := policy.Verdict{Allowed: true, Mode: policy.ModeAudit, Exposed: true}
	rank := map[policy.Mode]int{policy.ModeAudit: 0, policy.ModeWarn: 1, policy.ModeEnforce: 2}
	var rules []string
	for _, u := range us {
		if rank[u.Mode] > rank[v.Mode] {
			v.Mode = u.Mode
		}
		if !slices.Contains(rules, u.Rule) {
			rules = append(rules, u.Rule)
		}
		for _, f := range u.Findings {
			if f.Code != policy.CodeNamespaceRuleWeakened { // that one names the model itself
				f.Message = "this change would leave " + u.Ref + " uncovered: " + f.Message
			}
			v.Findings = append(v.Findings, f)
		}
	}
	v.Rule = strings.Join(rules, ",")
	v.Allowed = v.Mode != policy.ModeEnforce
	return v
}
