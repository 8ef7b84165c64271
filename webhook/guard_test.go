package webhook

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// seed002 is the covered KServe setup of seeds/002.
func seed002(t *testing.T) *fixture {
	return newFixture(t, "", "kserve.yaml", "kserve-seed-policies.yaml", "kserve-seed-ra.yaml")
}

func update(t *testing.T, oldFile, newFile string) admission.Request {
	req := request(t, admissionv1.Update, newFile)
	req.OldObject = request(t, admissionv1.Update, oldFile).Object
	return req
}

func deletion(t *testing.T, file, user string) admission.Request {
	req := request(t, admissionv1.Delete, file)
	req.OldObject, req.Object = req.Object, req.OldObject
	req.UserInfo.Username = user
	return req
}

func TestGuardRefusesWeakening(t *testing.T) {
	f := seed002(t)
	for name, req := range map[string]admission.Request{
		"dropping the when of the ALLOW":   update(t, "ap-require-token.yaml", "ap-require-token-no-when.yaml"),
		"deleting the STRICT mTLS":         deletion(t, "pa-default.yaml", "bob"),
		"adding an ALLOW of every request": request(t, admissionv1.Create, "ap-allow-all.yaml"),
	} {
		t.Run(name, func(t *testing.T) {
			resp := f.guardHandle(req)
			require.False(t, resp.Allowed)
			assert.EqualValues(t, http.StatusForbidden, resp.Result.Code)
			assert.Contains(t, resp.Result.Message, "this change would leave InferenceService models/sample uncovered")
		})
	}
}

func TestGuardAllowsHarmlessChanges(t *testing.T) {
	f := seed002(t)
	for name, req := range map[string]admission.Request{
		"an unrelated policy":              request(t, admissionv1.Create, "ap-unrelated.yaml"),
		"deleting an unrelated policy":     deletion(t, "ap-unrelated.yaml", "bob"),
		"a no-op update":                   update(t, "ap-require-token.yaml", "ap-require-token.yaml"),
		"the namespace controller deletes": deletion(t, "pa-default.yaml", "system:serviceaccount:kube-system:namespace-controller"),
		"the garbage collector deletes":    deletion(t, "pa-default.yaml", "system:serviceaccount:kube-system:generic-garbage-collector"),
		"the reconciler's service account": deletion(t, "pa-default.yaml", "system:serviceaccount:modelguard-system:modelguard"),
	} {
		t.Run(name, func(t *testing.T) {
			f.guard().TrustedUsers = []string{"system:serviceaccount:modelguard-system:modelguard"}
			assert.True(t, f.guardHandle(req).Allowed)
		})
	}
	// In a namespace being deleted nothing is refused, or it could never finish.
	require.NoError(t, f.mesh.snap.Upsert(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "models", DeletionTimestamp: &metav1.Time{}},
		Status: corev1.NamespaceStatus{Phase: corev1.NamespaceTerminating}}))
	assert.True(t, f.guardHandle(deletion(t, "pa-default.yaml", "bob")).Allowed)
}

func TestGuardFailsClosed(t *testing.T) {
	f := seed002(t)
	f.mesh.err = ErrNotReady
	resp := f.guardHandle(deletion(t, "pa-default.yaml", "bob"))
	assert.False(t, resp.Allowed)
	assert.Contains(t, resp.Result.Message, "MESH_STATE_UNAVAILABLE")
}

func (f *fixture) guard() *Guard {
	if f.guardHandler == nil {
		f.guardHandler = &Guard{Config: f.validator.Config, Mesh: f.mesh, Audit: f.validator.Audit}
	}
	return f.guardHandler
}

func (f *fixture) guardHandle(req admission.Request) admission.Response {
	return f.guard().Handle(context.Background(), req)
}

// Generated policies are modelguard's: nobody else may change what they do.
func TestGuardProtectsGeneratedPolicies(t *testing.T) {
	f := seed002(t)
	f.guard().TrustedUsers = []string{"system:serviceaccount:modelguard-system:modelguard"}
	for name, req := range map[string]admission.Request{
		"deleted by a user": deletion(t, "generated-ap.yaml", "bob"),
		"narrowed by a user": func() admission.Request {
			r := update(t, "generated-ap.yaml", "generated-ap-narrowed.yaml")
			r.UserInfo.Username = "bob"
			return r
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			resp := f.guardHandle(req)
			require.False(t, resp.Allowed)
			assert.Contains(t, resp.Result.Message, "GENERATED_POLICY_CHANGED")
		})
	}
	assert.True(t, f.guardHandle(deletion(t, "generated-ap.yaml", "system:serviceaccount:modelguard-system:modelguard")).Allowed, "the reconciler may")
	labelled := update(t, "generated-ap.yaml", "generated-ap-labelled.yaml")
	labelled.UserInfo.Username = "bob"
	assert.True(t, f.guardHandle(labelled).Allowed, "a label is not a change of what the policy does")
}
