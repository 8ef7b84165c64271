package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
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

// namespaceUpdate is the AdmissionRequest of a relabel, as the API server sends it (for a
// Namespace, request.namespace is the namespace's own name).
func namespaceUpdate(t *testing.T, name string, from, to map[string]string) admission.Request {
	t.Helper()
	raw := func(l map[string]string) []byte {
		b, err := json.Marshal(&corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}})
		require.NoError(t, err)
		return b
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "uid-ns", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Namespace"}, Name: name, Namespace: name,
		Operation: admissionv1.Update, Object: runtime.RawExtension{Raw: raw(to)}, OldObject: runtime.RawExtension{Raw: raw(from)},
		UserInfo: authenticationv1.UserInfo{Username: "cluster-admin", Groups: []string{"system:masters"}},
	}}
}

// A relabel that hands an exposed model a laxer rule is refused, naming the rule that would
// apply and the model; other namespace updates pass without a judgement.
func TestGuardRefusesWeakeningRelabel(t *testing.T) {
	f := newFixture(t, "config-relabel.yaml", "kserve.yaml", "kserve-seed-policies.yaml", "kserve-seed-ra.yaml")
	resp := f.guardHandle(namespaceUpdate(t, "models", nil, map[string]string{"tier": "sandbox"}))
	require.False(t, resp.Allowed)
	assert.EqualValues(t, http.StatusForbidden, resp.Result.Code)
	assert.Contains(t, resp.Result.Message, "[NAMESPACE_RULE_WEAKENED]")
	assert.Contains(t, resp.Result.Message, `relabelling namespace models would make rule "sandbox" (Warn) apply to exposed InferenceService models/sample instead of rule "default" (Enforce)`)
	l := f.auditLines(t)
	assert.Equal(t, "denied", l[len(l)-1]["decision"])
	assert.Equal(t, "Namespace", l[len(l)-1]["kind"])

	for name, req := range map[string]admission.Request{
		"an unrelated label":        namespaceUpdate(t, "models", nil, map[string]string{"team": "ml"}),
		"back to the stricter rule": namespaceUpdate(t, "models", map[string]string{"tier": "sandbox"}, nil),
		"no exposed model there":    namespaceUpdate(t, "elsewhere", nil, map[string]string{"tier": "sandbox"}),
		"labels unchanged (no-op)":  namespaceUpdate(t, "models", map[string]string{"tier": "x"}, map[string]string{"tier": "x"}),
	} {
		t.Run(name, func(t *testing.T) {
			assert.True(t, f.guardHandle(req).Allowed)
		})
	}
	// Terminating: never held up.
	require.NoError(t, f.mesh.snap.Upsert(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "models", DeletionTimestamp: &metav1.Time{}},
		Status: corev1.NamespaceStatus{Phase: corev1.NamespaceTerminating}}))
	assert.True(t, f.guardHandle(namespaceUpdate(t, "models", nil, map[string]string{"tier": "sandbox"})).Allowed)
}
