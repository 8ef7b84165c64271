package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/modelguard/modelguard/policy"
)

// Mutator is the mutating admission handler for Models and InferenceServices: it sets the
// modelguard.io/* annotations to exactly what the namespace's rule plans, so the reconciler
// creates the planned policies. Annotations a user set that contradict the plan are
// overwritten, with a warning and an audit line. It runs with failurePolicy Ignore: safety
// never depends on it, since the validator recomputes the plan and counts only annotations
// equal to it.
type Mutator struct {
	Config *ConfigStore
	Mesh   SnapshotSource
	Audit  *Auditor
}

var _ admission.Handler = &Mutator{}

var modelKinds = map[schema.GroupKind]bool{
	policy.GVKInferenceService.GroupKind(): true,
	policy.GVKModel.GroupKind():            true,
}

// Handle mutates one admission request.
func (m *Mutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	return m.Audit.decide(ctx, req, m.mutate)
}

func (m *Mutator) mutate(req admission.Request) (admission.Response, decisionRecord) {
	rec := decisionRecord{req: req, decision: "allowed"}
	obj, err := decodeRequest(req, modelKinds)
	if err == nil {
		err = policy.ValidateObject(obj) // refuse what the validator would refuse anyway
	}
	if err != nil {
		return errored(&rec, err)
	}
	rec.obj = obj
	if req.Operation != "CREATE" && req.Operation != "UPDATE" {
		return admission.Allowed(""), rec
	}
	snap, err := m.Mesh.Snapshot()
	if err != nil {
		// Not ready: leave the object alone; the validator refuses what it cannot prove.
		return errored(&rec, err)
	}
	cfg := m.Config.Get()
	want, ruleName, err := plannedAnnotations(cfg, snap.NamespaceLabels(obj.GetNamespace()), obj.(*unstructured.Unstructured))
	if err != nil {
		return errored(&rec, err)
	}
	have := mgAnnotations(obj.GetAnnotations())
	if maps.Equal(have, want) {
		return admission.Allowed(""), rec // idempotent: a second pass changes nothing
	}
	patched, err := withAnnotations(req.Object.Raw, want)
	if err != nil {
		return errored(&rec, err)
	}
	resp := admission.PatchResponseFromRaw(req.Object.Raw, patched)
	if overwritten := contradicted(have, want); len(overwritten) > 0 {
		rec.decision = "warned"
		rec.verdict = policy.Verdict{Allowed: true, Rule: ruleName, Findings: []policy.Finding{{Code: policy.CodeAnnotationMismatch, Severity: policy.SeverityWarning,
			Message: fmt.Sprintf("modelguard overwrote annotations set by hand that contradict rule %q: %s", ruleName, strings.Join(overwritten, ", "))}}}
		resp = resp.WithWarnings(warnings(rec.verdict)...)
		resp.AuditAnnotations = auditAnnotations(rec.decision, rec.verdict)
	}
	return resp, rec
}

// plannedAnnotations are the modelguard.io/* annotations the object must carry: the plan of
// the first rule matching its namespace, or none (no rule, an exempt namespace, no inject).
func plannedAnnotations(cfg *policy.GuardConfig, nsLabels map[string]string, u *unstructured.Unstructured) (map[string]string, string, error) {
	if cfg.Exempt(u.GetNamespace()) {
		return map[string]string{}, "", nil
	}
	rule := cfg.RuleFor(nsLabels)
	if rule == nil {
		return map[string]string{}, "", nil
	}
	plan, err := policy.PlanFor(rule, u)
	if err != nil || plan == nil {
		return map[string]string{}, rule.Name, err
	}
	return plan.Annotations, rule.Name, nil
}

func mgAnnotations(all map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range all {
		if strings.HasPrefix(k, policy.AnnotationPrefix) {
			out[k] = v
		}
	}
	return out
}

// contradicted lists the annotations a user set that the plan changes or removes.
func contradicted(have, want map[string]string) []string {
	var out []string
	for k, v := range have {
		if w, ok := want[k]; !ok || w != v {
			out = append(out, fmt.Sprintf("%s=%q", k, v))
		}
	}
	sort.Strings(out)
	return out
}

// withAnnotations rewrites the object's modelguard.io/* annotations in its raw JSON, leaving
// every other byte of meaning alone (status and unknown fields included), so the patch holds
// exactly the annotation changes.
func withAnnotations(raw []byte, want map[string]string) ([]byte, error) {
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("re-reading the object: %w", err)
	}
	md, _ := obj["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		obj["metadata"] = md
	}
	ann, _ := md["annotations"].(map[string]any)
	out := map[string]any{}
	for k, v := range ann {
		if !strings.HasPrefix(k, policy.AnnotationPrefix) {
			out[k] = v
		}
	}
	for k, v := range want {
		out[k] = v
	}
	if len(out) == 0 {
		delete(md, "annotations")
	} else {
		md["annotations"] = out
	}
	patched, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("writing the object: %w", err)
	}
	return patched, nil
}
