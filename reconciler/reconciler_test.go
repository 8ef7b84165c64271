package reconciler

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	securityapi "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/modelguard/modelguard/policy"
)

func planFor(t *testing.T, gvkModel bool) *policy.Plan {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{}}}
	u.SetGroupVersionKind(policy.GVKInferenceService)
	if gvkModel {
		u.SetGroupVersionKind(policy.GVKModel)
	}
	u.SetNamespace("ml")
	u.SetName("iris")
	u.SetUID("uid-1")
	rule := &policy.Rule{Name: "inject", Inject: &policy.Inject{Issuer: "https://issuer.example.com", JwksURI: "https://issuer.example.com/jwks"}}
	p, err := policy.PlanFor(rule, u)
	require.NoError(t, err)
	return p
}

// Server-side apply needs the API's field names (camelCase, enums by name): Istio's spec
// types only produce them through protobuf JSON.
func TestToUnstructuredUsesAPIFieldNames(t *testing.T) {
	p := planFor(t, true)
	u, err := toUnstructured(p.AuthorizationPolicy)
	require.NoError(t, err)
	assert.Equal(t, "DENY", u.Object["spec"].(map[string]any)["action"])
	rules, found, err := unstructured.NestedSlice(u.Object, "spec", "rules")
	require.NoError(t, err)
	require.True(t, found)
	src := rules[0].(map[string]any)["from"].([]any)[0].(map[string]any)["source"].(map[string]any)
	assert.Equal(t, []any{"https://issuer.example.com/*"}, src["notRequestPrincipals"])
	assert.NotContains(t, u.Object, "status")
	_, hasCreation, _ := unstructured.NestedFieldNoCopy(u.Object, "metadata", "creationTimestamp")
	assert.False(t, hasCreation)

	ra, err := toUnstructured(p.RequestAuthentication)
	require.NoError(t, err)
	jwt, _, _ := unstructured.NestedSlice(ra.Object, "spec", "jwtRules")
	assert.Equal(t, true, jwt[0].(map[string]any)["forwardOriginalToken"], "a Seldon model's token travels on to the server")
}

// matchesPlan notices every kind of drift the reconciler must undo.
func TestMatchesPlan(t *testing.T) {
	p := planFor(t, false)
	want := p.AuthorizationPolicy
	assert.True(t, matchesPlan(want.DeepCopy(), want))

	for name, drift := range map[string]func(*securityv1.AuthorizationPolicy){
		"rule narrowed": func(a *securityv1.AuthorizationPolicy) {
			a.Spec.Rules[0].To = []*securityapi.Rule_To{{Operation: &securityapi.Operation{Paths: []string{"/x"}}}}
		},
		"action changed": func(a *securityv1.AuthorizationPolicy) { a.Spec.Action = securityapi.AuthorizationPolicy_AUDIT },
		"selector label added": func(a *securityv1.AuthorizationPolicy) {
			a.Spec.Selector.MatchLabels["extra"] = "1"
		},
		"dry-run annotation": func(a *securityv1.AuthorizationPolicy) { a.Annotations = map[string]string{"istio.io/dry-run": "true"} },
		"label removed":      func(a *securityv1.AuthorizationPolicy) { a.Labels = nil },
		"owner removed":      func(a *securityv1.AuthorizationPolicy) { a.OwnerReferences = nil },
	} {
		live := want.DeepCopy()
		drift(live)
		assert.False(t, matchesPlan(live, want), name)
	}
}
