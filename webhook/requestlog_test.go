package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// The lines controller-runtime writes about a request still name it, through WithValues and
// WithName too, although nothing is built until a line is written.
func TestRequestLoggerNamesTheRequest(t *testing.T) {
	var buf bytes.Buffer
	base := logr.FromSlogHandler(slog.NewJSONHandler(&buf, nil))
	req := &admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{UID: "uid-1", Namespace: "team-a", Name: "model",
		Kind: metav1.GroupVersionKind{Kind: "InferenceService"}, UserInfo: authenticationv1.UserInfo{Username: "alice"}}}

	log := requestLogger(base, req)
	log.WithName("admission").WithValues("extra", 1).Error(errors.New("boom"), "panic recovered")
	log.Info("wrote the response")

	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	require.Len(t, lines, 2)
	for _, l := range lines {
		var m map[string]any
		require.NoError(t, json.Unmarshal(l, &m))
		assert.Equal(t, "uid-1", m["requestID"])
		assert.Equal(t, "InferenceService", m["kind"])
		assert.Equal(t, "team-a", m["namespace"])
		assert.Equal(t, "model", m["name"])
		assert.Equal(t, "alice", m["user"])
	}
	assert.Contains(t, string(lines[0]), `"extra":1`)
	assert.Equal(t, base, requestLogger(base, nil), "outside a request: the base logger")
}
