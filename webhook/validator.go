package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/modelguard/modelguard/policy"
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
	obj, old, err := decodeObjects(req, judgedKinds)
	if err != nil {
		return errored(&rec, err)
	}
	rec.obj = obj
	if req.Operation == admissionv1.Delete {
		rec.decision = "allowed" // removing an object exposes nothing
		return admission.Allowed(""), rec
	}
	if obj.GetName() == "" {
		// Only mutating admission sees a generateName without a name; the engine matches
		// workloads by name, so an unnamed object cannot be judged.
		return errored(&rec, fmt.Errorf("the %s has no name: validating admission runs after the API server names it", req.Kind.Kind))
	}
	snap, err := v.Mesh.Snapshot()
	if err != nil {
		return meshUnavailable(&rec, err)
	}
	rec.verdict = v.judge(snap, obj)
	if req.Operation == admissionv1.Update && !judgedChange(old, obj) {
		return lenient(&rec)
	}
	return respond(&rec)
}

// judge evaluates the object, refusing first the VirtualServices the engine must not
// expand: an empty one, and one whose routes multiply past MaxRoutes.
func (v *Validator) judge(snap *policy.Snapshot, obj runtime.Object) policy.Verdict {
	if vs, ok := obj.(*networkingv1.VirtualService); ok {
		if msg := unjudgeableVS(vs); msg != "" {
			return policy.Verdict{Mode: policy.ModeEnforce, Findings: []policy.Finding{{Code: policy.CodeInvalidObject, Severity: policy.SeverityError,
				Message: fmt.Sprintf("VirtualService %s/%s %s", vs.Namespace, vs.Name, msg),
				Fix:     "Correct the VirtualService; modelguard refuses objects it cannot judge rather than judge them on a guess."}}}
		}
	}
	return policy.Evaluate(v.Config.Get(), snap, obj, policy.Options{})
}

// MaxRoutes caps the routes one VirtualService may expand to (each HTTP match on each of its
// gateways to each destination and mirror, and each TCP or TLS destination on each gateway).
// The engine judges every one (about 90 µs each), and the product grows fast: 300 gateways,
// 100 matches and 10 destinations are 300,000 routes in 9 KB of JSON, which took half a
// minute and wrote a 15 MB denial. At the cap a judgement takes about half a second; real
// VirtualServices expand to a few hundred routes at most.
const MaxRoutes = 5_000

// unjudgeableVS says why a VirtualService cannot be judged, or "".
func unjudgeableVS(vs *networkingv1.VirtualService) string {
	s := &vs.Spec
	if len(s.GetHosts()) == 0 && len(s.GetGateways()) == 0 && len(s.GetHttp()) == 0 && len(s.GetTcp()) == 0 && len(s.GetTls()) == 0 {
		return "has no spec (no hosts, gateways or routes): refused as malformed"
	}
	if n, over := expandedRoutes(vs); over {
		return fmt.Sprintf("expands to more than %d routes (gateways x matches x destinations; %d counted so far), more than modelguard judges in one admission: split it into several VirtualServices", MaxRoutes, n)
	}
	return ""
}

// expandedRoutes counts the routes the engine expands vs to, as policy's rootRoutes and
// l4Routes do, counting every gateway (mesh and internal ones too) and a delegating route
// once per gateway (the delegate's own routes are counted when it is judged). It stops
// counting past MaxRoutes; each step adds at most (3 MiB)^2, so nothing overflows.
func expandedRoutes(vs *networkingv1.VirtualService) (n int, over bool) {
	gws := len(vs.Spec.GetGateways())
	for _, hr := range vs.Spec.GetHttp() {
		if hr.GetDelegate() != nil {
			n += gws
		} else {
			dests := len(hr.GetRoute()) + len(hr.GetMirrors())
			if hr.GetMirror() != nil {
				dests++
			}
			if len(hr.GetMatch()) == 0 {
				n += gws * dests
			}
			for _, m := range hr.GetMatch() {
				g := gws
				if len(m.GetGateways()) > 0 {
					g = len(m.GetGateways())
				}
				n += g * dests
				if n > MaxRoutes {
					return n, true
				}
			}
		}
		if n > MaxRoutes {
			return n, true
		}
	}
	for _, r := range vs.Spec.GetTcp() {
		if n += gws * len(r.GetRoute()); n > MaxRoutes {
			return n, true
		}
	}
	for _, r := range vs.Spec.GetTls() {
		if n += gws * len(r.GetRoute()); n > MaxRoutes {
			return n, true
		}
	}
	return n, false
}

// judgedChange reports whether an UPDATE changes what the engine reads. Metadata-only updates
// by controllers (finalizers, owner references, other annotations) and updates of an object
// being deleted pass, so that a controller can always finish a deletion. decodeObjects has
// checked that old is the same object, decoded strictly.
func judgedChange(old, obj runtime.Object) bool {
	m, ok := obj.(metav1.Object)
	if !ok || m.GetDeletionTimestamp() != nil {
		return false
	}
	if old == nil {
		return true // never for an UPDATE that decodeObjects accepted; judge in full
	}
	return !sameJudgedFields(old, obj)
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

// Bounds of what one answer repeats. A hostile object can make the engine report tens of
// thousands of findings (one per port of a PeerAuthentication, say), or a route naming
// 100,000 hosts; the answer must stay small enough for kubectl to print and for the API
// server to pass on. The audit annotations list every code; the audit line more findings.
const (
	maxListedFindings = 20       // findings a denial lists
	maxListedFixes    = 5        // distinct fixes a denial lists
	maxDenialBytes    = 16 << 10 // a denial message
	maxRouteShown     = 300      // a finding's route, in a denial or a warning
	maxWarnings       = 10       // warnings in one answer
	maxWarningsBytes  = 3500     // the findings' warnings: with a lead and a tail line, under the 4 KiB the API server keeps
)

// denialMessage lists each finding that is not informational, its route, and the fixes
// (each distinct fix once), compact enough for kubectl to print whole.
func denialMessage(req admission.Request, v policy.Verdict) string {
	var b strings.Builder
	b.Grow(denialSize(v))
	fmt.Fprintf(&b, "modelguard denied %s %s/%s", req.Kind.Kind, req.Namespace, nameOf(req))
	if v.Rule != "" {
		fmt.Fprintf(&b, " (rule %q, %s)", v.Rule, v.Mode)
	}
	b.WriteString(":")
	var fixes []string
	listed, omitted := 0, 0
	for _, f := range v.Findings {
		if f.Severity == policy.SeverityInfo {
			continue
		}
		if listed == maxListedFindings || b.Len() > maxDenialBytes/2 {
			omitted++
			continue
		}
		listed++
		fmt.Fprintf(&b, "\n- [%s] %s", f.Code, clip(f.Message, 700))
		if f.Route != "" {
			fmt.Fprintf(&b, "\n  route: %s", clip(f.Route, maxRouteShown))
		}
		if f.Fix != "" && len(fixes) < maxListedFixes && !contains(fixes, f.Fix) {
			fixes = append(fixes, f.Fix)
		}
	}
	if omitted > 0 {
		fmt.Fprintf(&b, "\n- ... and %d more findings (codes: %s)", omitted, strings.Join(v.Codes(), ","))
	}
	for _, fix := range fixes {
		b.WriteString("\nfix:\n")
		writeIndented(&b, clip(fix, 2000), "  ")
	}
	return clip(b.String(), maxDenialBytes)
}

// denialSize is a little more than the length of the message denialMessage writes for v, so
// that its builder is allocated once (a denial is 30% of a busy webhook's answers).
func denialSize(v policy.Verdict) int {
	n := 256
	for _, f := range v.Findings {
		n += 16 + len(f.Code) + min(len(f.Message), 700) + min(len(f.Route), maxRouteShown)
		if f.Fix != "" {
			clipped := min(len(f.Fix), 2000)
			n += 8 + clipped + clipped/8 // "\nfix:\n" and the indentation of its lines
		}
		if n > maxDenialBytes {
			return maxDenialBytes + 256
		}
	}
	return n
}

// warnings renders findings as kubectl warnings: short (the API server truncates warnings
// past 4 KiB in all), one per finding, the most important first.
func warnings(v policy.Verdict) []string {
	var out []string
	total, omitted := 0, 0
	for _, f := range v.Findings {
		if f.Severity == policy.SeverityInfo {
			continue
		}
		if len(out) == maxWarnings || total+250 > maxWarningsBytes {
			omitted++
			continue
		}
		w := fmt.Sprintf("[%s] %s", f.Code, f.Message)
		if f.Route != "" {
			w += " (route: " + clip(f.Route, maxRouteShown) + ")"
		}
		w = clip(w, 250)
		total += len(w)
		out = append(out, w)
	}
	if omitted > 0 {
		out = append(out, fmt.Sprintf("modelguard: %d more findings (codes: %s)", omitted, clip(strings.Join(v.Codes(), ","), 200)))
	}
	return out
}

func nameOf(req admission.Request) string {
	if req.Name != "" {
		return req.Name
	}
	return "(generated name)"
}

// writeIndented writes s to b with pad before each of its lines.
func writeIndented(b *strings.Builder, s, pad string) {
	first := true
	for line := range strings.SplitSeq(s, "\n") {
		if !first {
			b.WriteByte('\n')
		}
		first = false
		b.WriteString(pad)
		b.WriteString(line)
	}
}

func contains(xs []string, x string) bool {
	for _, s := range xs {
		if s == x {
			return true
		}
	}
	return false
}
