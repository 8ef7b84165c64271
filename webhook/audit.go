package webhook

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
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
	kind := d.req.Kind.Kind
	a.Metrics.Decisions.WithLabelValues(kind, string(d.req.Operation), d.decision).Inc()
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
	findings := make([]map[string]string, 0, len(d.verdict.Findings))
	for _, f := range d.verdict.Findings {
		findings = append(findings, map[string]string{"code": string(f.Code), "severity": string(f.Severity), "message": f.Message, "route": f.Route})
	}
	attrs := []slog.Attr{
		slog.String("uid", string(d.req.UID)),
		slog.String("operation", string(d.req.Operation)),
		slog.String("kind", d.req.Kind.Kind),
		slog.String("namespace", d.req.Namespace),
		slog.String("name", d.req.Name),
		slog.String("user", d.req.UserInfo.Username),
		slog.Any("groups", nonNil(d.req.UserInfo.Groups)),
		slog.Bool("dryRun", dryRun),
		slog.String("decision", d.decision),
		slog.String("mode", string(d.verdict.Mode)),
		slog.String("rule", d.verdict.Rule),
		slog.Any("codes", nonNil(d.verdict.Codes())),
		slog.Any("findings", findings),
	}
	if d.message != "" {
		attrs = append(attrs, slog.String("error", d.message))
	}
	return attrs
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

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// auditAnnotations are added to every non-plain response so the API server's audit log holds
// the decision too.
func auditAnnotations(decision string, v policy.Verdict) map[string]string {
	return map[string]string{AuditDecision: decision, AuditCodes: strings.Join(v.Codes(), ",")}
}
