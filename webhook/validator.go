package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/modelguard/modelguard/policy"
	"github.com/modelguard/modelguard/policy/decode"
)

// MaxObjectBytes caps the objects of one request: Kubernetes stores objects of at most
// 1.5 MiB, so an AdmissionReview holding more than 3 MiB of objects is not from a real write.
const MaxObjectBytes = 3 << 20

// SnapshotSource gives the current mesh snapshot, or an error while it is not complete.
type SnapshotSource interface {
	Snapshot() (*policy.Snapshot, error)
}

// Validator is the validating admission handler for Models, InferenceServices and
// VirtualServices: it judges the object with the policy engine and admits, warns or denies
// according to the rule's mode.
type Validator struct {
	Config *ConfigStore
	Mesh   SnapshotSource
	Audit  *Auditor
}

var _ admission.Handler = &Validator{}

// judgedKinds are the kinds the validator owns (any served version).
var judgedKinds = map[schema.GroupKind]bool{
	{Group: "networking.istio.io", Kind: "VirtualService"}: true,
	policy.GVKInferenceService.GroupKind():                 true,
	policy.GVKModel.GroupKind():                            true,
}

// Handle decides one admission request.
func (v *Validator) Handle(ctx context.Context, req admission.Request) admission.Response {
	return v.Audit.decide(ctx, req, v.decide)
}

func (v *Validator) decide(req admission.Request) (admission.Response, decisionRecord) {
	rec := decisionRecord{req: req}
	obj, err := decodeRequest(req, judgedKinds)
	if err != nil {
		return errored(&rec, err)
	}
	rec.obj = obj
	if req.Operation != "CREATE" && req.Operation != "UPDATE" {
		rec.decision = "allowed"
		return admission.Allowed(""), rec
	}
	snap, err := v.Mesh.Snapshot()
	if err != nil {
		return meshUnavailable(&rec, err)
	}
	rec.verdict = policy.Evaluate(v.Config.Get(), snap, obj, policy.Options{})
	if req.Operation == "UPDATE" && !judgedChange(req, obj) {
		return lenient(&rec)
	}
	return respond(&rec)
}

// judgedChange reports whether an UPDATE changes what the engine reads. Metadata-only updates
// by controllers (finalizers, owner references, other annotations) and updates of an object
// being deleted pass, so that a controller can always finish a deletion.
func judgedChange(req admission.Request, obj runtime.Object) bool {
	m, ok := obj.(metav1.Object)
	if !ok || m.GetDeletionTimestamp() != nil {
		return false
	}
	old, err := decode.DecodeObject(req.OldObject.Raw)
	if err != nil {
		return true // an unreadable old object: judge the new one in full
	}
	return !sameJudgedFields(old.Obj, obj)
}

// respond turns a verdict into the response its mode calls for.
func respond(rec *decisionRecord) (admission.Response, decisionRecord) {
	rec.decision = rec.verdict.Decision()
	var resp admission.Response
	switch rec.decision {
	case "denied":
		resp = admission.Denied(denialMessage(rec.req, rec.verdict))
		resp.Result.Code = http.StatusForbidden
		resp.Result.Reason = metav1.StatusReasonForbidden
	case "warned":
		resp = admission.Allowed("").WithWarnings(warnings(rec.verdict)...)
	default:
		resp = admission.Allowed("")
	}
	if rec.decision != "allowed" {
		resp.AuditAnnotations = auditAnnotations(rec.decision, rec.verdict)
	}
	return resp, *rec
}

// lenient admits an UPDATE the engine need not judge, warning when the object is uncovered.
func lenient(rec *decisionRecord) (admission.Response, decisionRecord) {
	if rec.verdict.Decision() == "allowed" {
		rec.decision = "allowed"
		return admission.Allowed(""), *rec
	}
	rec.decision = "warned"
	resp := admission.Allowed("").WithWarnings(append([]string{"modelguard: admitted (this update changes nothing modelguard judges), but:"}, warnings(rec.verdict)...)...)
	resp.AuditAnnotations = auditAnnotations(rec.decision, rec.verdict)
	return resp, *rec
}

// meshUnavailable fails closed: without the mesh state nothing can be proven covered.
func meshUnavailable(rec *decisionRecord, err error) (admission.Response, decisionRecord) {
	rec.decision = "denied"
	rec.verdict = policy.Verdict{Mode: policy.ModeEnforce, Findings: []policy.Finding{{Code: policy.CodeMeshStateUnavailable, Severity: policy.SeverityError,
		Message: fmt.Sprintf("modelguard cannot read the mesh state (%v), so it cannot prove this object covered; retry in a moment", err)}}}
	resp := admission.Denied(denialMessage(rec.req, rec.verdict))
	resp.Result.Code = http.StatusServiceUnavailable
	resp.AuditAnnotations = auditAnnotations(rec.decision, rec.verdict)
	return resp, *rec
}

// errored answers a request the handler cannot read: never an allow.
func errored(rec *decisionRecord, err error) (admission.Response, decisionRecord) {
	rec.decision, rec.message = "errored", err.Error()
	code := int32(http.StatusBadRequest)
	var tooBig *errTooLarge
	if errors.As(err, &tooBig) {
		code = http.StatusRequestEntityTooLarge
	}
	resp := admission.Errored(code, err)
	resp.AuditAnnotations = map[string]string{AuditDecision: "errored"}
	return resp, *rec
}

// denialMessage lists each finding that is not informational, its route, and the fixes
// (each distinct fix once), compact enough for kubectl to print whole.
func denialMessage(req admission.Request, v policy.Verdict) string {
	var b strings.Builder
	fmt.Fprintf(&b, "modelguard denied %s %s/%s", req.Kind.Kind, req.Namespace, nameOf(req))
	if v.Rule != "" {
		fmt.Fprintf(&b, " (rule %q, %s)", v.Rule, v.Mode)
	}
	b.WriteString(":")
	var fixes []string
	for _, f := range v.Findings {
		if f.Severity == policy.SeverityInfo {
			continue
		}
		fmt.Fprintf(&b, "\n- [%s] %s", f.Code, clip(f.Message, 700))
		if f.Route != "" {
			fmt.Fprintf(&b, "\n  route: %s", f.Route)
		}
		if f.Fix != "" && !contains(fixes, f.Fix) {
			fixes = append(fixes, f.Fix)
		}
	}
	for _, fix := range fixes {
		b.WriteString("\nfix:\n" + indent(clip(fix, 2000), "  "))
	}
	return b.String()
}

// warnings renders findings as kubectl warnings: short (the API server truncates warnings
// past 4 KiB in all), one per finding, the most important first.
func warnings(v policy.Verdict) []string {
	var out []string
	for _, f := range v.Findings {
		if f.Severity == policy.SeverityInfo {
			continue
		}
		w := fmt.Sprintf("[%s] %s", f.Code, f.Message)
		if f.Route != "" {
			w += " (route: " + f.Route + ")"
		}
		out = append(out, clip(w, 250))
	}
	return out
}

func nameOf(req admission.Request) string {
	if req.Name != "" {
		return req.Name
	}
	return "(generated name)"
}

func indent(s, pad string) string {
	return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
}

func contains(xs []string, x string) bool {
	for _, s := range xs {
		if s == x {
			return true
		}
	}
	return false
}
