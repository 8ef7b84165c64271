package webhook

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/modelguard/modelguard/policy"
)

func TestWriteIndented(t *testing.T) {
	for in, want := range map[string]string{
		"":                 "  ",
		"one line":         "  one line",
		"a:\n  b: c\n":     "  a:\n    b: c\n  ",
		"\n\nafter blanks": "  \n  \n  after blanks",
	} {
		var b strings.Builder
		writeIndented(&b, in, "  ")
		assert.Equal(t, want, b.String(), "input %q", in)
	}
}

// TestDenialSizeBounds: the estimate covers what denialMessage writes (one allocation), and
// stays bounded for a verdict with thousands of findings.
func TestDenialSizeBounds(t *testing.T) {
	f := policy.Finding{Code: "JWT_NOT_REQUIRED", Severity: policy.SeverityError, Message: strings.Repeat("m", 900),
		Route: strings.Repeat("r", 400), Fix: strings.Repeat("apiVersion: v1\n", 100)}
	v := policy.Verdict{Findings: []policy.Finding{f, f}}
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{UID: "u", Kind: metav1.GroupVersionKind{Kind: "InferenceService"}, Namespace: "models", Name: "m"}}
	msg := denialMessage(req, v)
	assert.GreaterOrEqual(t, denialSize(v), len(msg))
	many := policy.Verdict{Findings: make([]policy.Finding, 10_000)}
	for i := range many.Findings {
		many.Findings[i] = f
	}
	assert.LessOrEqual(t, denialSize(many), maxDenialBytes+256)
}
