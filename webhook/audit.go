package webhook

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/modelguard/modelguard/policy"
)

// Audit annotation keys, prefixed by the API server with the webhook's name.
const (
	AuditDecision = "modelguard.io/decision"
	AuditCodes    = "modelguard.io/codes"
)

// Auditor records every decision that is not a plain allow: one JSON line (DESIGN.md's audit
// contract), the metrics, and a Kubernetes Event on the object (not on dry-run).
type Auditor struct {
	Log      *slog.Logger
	Metrics  *Metrics
	Recorder events.EventRecorder // nil: no Events
}

// decisionRecord is what one admission decided.
type decisionRecord struct {
	req      admission.Request
	obj      runtime.Object // the object judged, for the Event; may be nil
	decision string         // allowed, denied, warned, audited, errored
	verdict  policy.Verdict
	message  string // for errored decisions
}

// decide runs one handler's decision, then records it (audit line, metrics, Event) and the
// time it took: every handler answers through here.
func (a *Auditor) decide(ctx context.Context, req admission.Request, fn func(admission.Request) (admission.Response, decisionRecord)) admission.Response {
	start := time.Now()
	resp, rec := fn(req)
	a.record(ctx, rec)
	a.Metrics.Duration.Observe(time.Since(start).Seconds())
	return resp
}

// record writes the audit line, the metrics and the Event of one decision.
func (a *Auditor) record(ctx context.Context, d decisionRecord) {
	a.Metrics.Decisions.WithLabelValues(metricKind(d.req), metricOperation(d.req), d.decision).Inc()
	if d.decision == "allowed" {
		return
	}
	for _, f := range d.verdict.Findings {
		if f.Severity != policy.SeverityInfo {
			a.Metrics.Findings.WithLabelValues(string(f.Code)).Inc()
		}
	}
	a.Log.LogAttrs(ctx, levelOf(d.decision), "admission", a.attrs(d)...)
	a.event(d)
}

func (a *Auditor) attrs(d decisionRecord) []slog.Attr {
	dryRun := d.req.DryRun != nil && *d.req.DryRun
	// A hostile object can draw tens of thousands of findings, or a route naming 100,000
	// hosts: the line lists the first maxAuditFindings, each clipped, and counts the rest
	// (codes lists them all), so that one decision never writes megabytes.
	findings := make([]auditFinding, 0, min(len(d.verdict.Findings), maxAuditFindings))
	omitted := 0
	for _, f := range d.verdict.Findings {
		if len(findings) == maxAuditFindings {
			omitted++
			continue
		}
		findings = append(findings, auditFinding{Code: string(f.Code), Severity: string(f.Severity), Message: clip(f.Message, 1000), Route: clip(f.Route, 500)})
	}
	attrs := []slog.Attr{
		// Request fields are clipped: a request that did not come from an API server may hold
		// anything, and its refusal is audited too.
		slog.String("uid", clip(string(d.req.UID), 256)),
		slog.String("operation", clip(string(d.req.Operation), 64)),
		slog.String("kind", clip(d.req.Kind.Kind, 256)),
		slog.String("namespace", clip(d.req.Namespace, 256)),
		slog.String("name", clip(d.req.Name, 256)),
		slog.String("user", clip(d.req.UserInfo.Username, 256)),
		slog.Any("groups", clipAll(nonNil(d.req.UserInfo.Groups), 64, 256)),
		slog.Bool("dryRun", dryRun),
		slog.String("decision", d.decision),
		slog.String("mode", string(d.verdict.Mode)),
		slog.String("rule", d.verdict.Rule),
		slog.Any("codes", nonNil(d.verdict.Codes())),
		slog.Any("findings", findings),
	}
	if omitted > 0 {
		attrs = append(attrs, slog.Int("findingsOmitted", omitted))
	}
	if d.message != "" {
		attrs = append(attrs, slog.String("error", clip(d.message, 4000)))
	}
	return attrs
}

// auditFinding is one finding as the audit line lists it. A struct rather than a map: the
// encoder writes its fields without sorting keys or boxing values (same keys, same order).
type auditFinding struct {
	Code     string `json:"code"`
	Message  string `json:"message"`
	Route    string `json:"route"`
	Severity string `json:"severity"`
}

// maxAuditFindings caps the findings one audit line lists.
const maxAuditFindings = 50

// clipAll keeps at most n strings of s, each clipped to size.
func clipAll(s []string, n, size int) []string {
	out := make([]string, 0, min(len(s), n+1))
	for i, x := range s {
		if i == n {
			out = append(out, fmt.Sprintf("... and %d more", len(s)-n))
			break
		}
		out = append(out, clip(x, size))
	}
	return out
}

// metricKind is the kind label of a decision: a kind some handler owns, else "other". Labels
// must come from a bounded set: anyone who can reach the webhook can send any kind, and each
// new label value is a new series held in memory for good.
func metricKind(req admission.Request) string {
	gk := schema.GroupKind{Group: req.Kind.Group, Kind: req.Kind.Kind}
	if judgedKinds[gk] || modelKinds[gk] || guardedKinds[gk] {
		return gk.Kind
	}
	return "other"
}

// metricOperation is the operation label of a decision: CREATE, UPDATE, DELETE or "other".
func metricOperation(req admission.Request) string {
	switch op := req.Operation; op {
	case admissionv1.Create, admissionv1.Update, admissionv1.Delete:
		return string(op)
	}
	return "other"
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func levelOf(decision string) slog.Level {
	switch decision {
	case "denied", "errored":
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// event records a Kubernetes Event on the object, unless the request is a dry run (which
// must have no side effects) or there is no object to point at.
func (a *Auditor) event(d decisionRecord) {
	if a.Recorder == nil || d.obj == nil || (d.req.DryRun != nil && *d.req.DryRun) {
		return
	}
	eventType, reason := corev1.EventTypeWarning, "ExposureDenied"
	switch d.decision {
	case "warned":
		reason = "ExposureWarning"
	case "audited":
		eventType, reason = corev1.EventTypeNormal, "ExposureAudited"
	case "errored":
		reason = "AdmissionError"
	}
	note := summary(d)
	a.Recorder.Eventf(d.obj, nil, eventType, reason, string(d.req.Operation), "%s", note)
}

// summary is a one-line account of a decision, for Events (capped: Events hold 1 KiB notes).
func summary(d decisionRecord) string {
	if d.message != "" {
		return clip(d.message, 1000)
	}
	return clip(fmt.Sprintf("modelguard %s %s %s/%s: %s", d.decision, d.req.Kind.Kind, d.req.Namespace, d.req.Name, strings.Join(d.verdict.Codes(), ", ")), 1000)
}

// clip shortens s to at most n bytes, ending in "...", without cutting a UTF-8 sequence (the
// result stays valid UTF-8 when s is).
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - 3
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// auditAnnotations are added to every non-plain response so the API server's audit log holds
// the decision too.
func auditAnnotations(decision string, v policy.Verdict) map[string]string {
	return map[string]string{AuditDecision: decision, AuditCodes: strings.Join(v.Codes(), ",")}
}
