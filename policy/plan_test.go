package policy_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/modelguard/modelguard/policy"
	"github.com/modelguard/modelguard/policy/decode"
	"github.com/modelguard/modelguard/test/fleet"
)

func injectRule(sameNS bool) *policy.Rule {
	return &policy.Rule{Name: "inject", Inject: &policy.Inject{Issuer: "https://issuer.example.com",
		JwksURI: "https://issuer.example.com/jwks", Audiences: []string{"models", "batch"}, AllowSameNamespace: sameNS}}
}

func modelObject(gvkKind string, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{}}}
	if gvkKind == "Model" {
		u.SetGroupVersionKind(policy.GVKModel)
	} else {
		u.SetGroupVersionKind(policy.GVKInferenceService)
	}
	u.SetNamespace("ml")
	u.SetName(name)
	u.SetUID("0b9c6d0e-1111-2222-3333-444455556666")
	return u
}

// The rendered plan is what the reconciler will create: parsed back with the strict decoder
// it must equal the planned objects, so the fix a finding shows is exactly the plan.
func TestPlanYAMLRoundTrips(t *testing.T) {
	for _, kind := range []string{"InferenceService", "Model"} {
		for _, sameNS := range []bool{false, true} {
			p, err := policy.PlanFor(injectRule(sameNS), modelObject(kind, "iris"))
			require.NoError(t, err)
			text, err := p.YAML()
			require.NoError(t, err)
			objs, _, err := decode.Decode("plan.yaml", []byte(text))
			require.NoError(t, err, text)
			require.Len(t, objs, 2)
			ra, ok := objs[0].Obj.(*securityv1.RequestAuthentication)
			require.True(t, ok)
			ap, ok := objs[1].Obj.(*securityv1.AuthorizationPolicy)
			require.True(t, ok)
			assert.True(t, proto.Equal(&p.RequestAuthentication.Spec, &ra.Spec), "%s:\n%s", kind, text)
			assert.True(t, proto.Equal(&p.AuthorizationPolicy.Spec, &ap.Spec), "%s:\n%s", kind, text)
			assert.Equal(t, p.AuthorizationPolicy.Name, ap.Name)
			assert.Equal(t, "modelguard", ap.Labels[policy.LabelManagedBy])
		}
	}
}

func TestPlanShape(t *testing.T) {
	p, err := policy.PlanFor(injectRule(false), modelObject("InferenceService", "sklearn"))
	require.NoError(t, err)
	assert.Equal(t, map[string]string{
		policy.AnnotationInject: "true", policy.AnnotationIssuer: "https://issuer.example.com",
		policy.AnnotationJWKS: "https://issuer.example.com/jwks", policy.AnnotationAudiences: "models,batch",
		policy.AnnotationRule: "inject",
	}, p.Annotations)
	assert.Equal(t, "modelguard-isvc-sklearn", p.AuthorizationPolicy.Name)
	require.Len(t, p.AuthorizationPolicy.OwnerReferences, 1)
	assert.Equal(t, "InferenceService", p.AuthorizationPolicy.OwnerReferences[0].Kind)
	assert.Equal(t, map[string]string{policy.LabelKServeISVC: "sklearn"}, p.AuthorizationPolicy.Spec.GetSelector().GetMatchLabels())
	assert.Equal(t, []string{"https://issuer.example.com/*"}, p.AuthorizationPolicy.Spec.GetRules()[0].GetFrom()[0].GetSource().GetNotRequestPrincipals())

	long := strings.Repeat("m", 60)
	p, err = policy.PlanFor(injectRule(false), modelObject("Model", long))
	require.NoError(t, err)
	assert.LessOrEqual(t, len(p.AuthorizationPolicy.Name), 63)
	p2, err := policy.PlanFor(injectRule(false), modelObject("Model", long+"x"))
	require.NoError(t, err)
	assert.NotEqual(t, p.AuthorizationPolicy.Name, p2.AuthorizationPolicy.Name, "hash suffix keeps truncated names distinct")

	none, err := policy.PlanFor(&policy.Rule{Name: "plain"}, modelObject("Model", "iris"))
	require.NoError(t, err)
	assert.Nil(t, none, "no inject, no plan")
}

func TestAnnotationsMatch(t *testing.T) {
	u := modelObject("InferenceService", "sklearn")
	p, err := policy.PlanFor(injectRule(false), u)
	require.NoError(t, err)
	assert.False(t, policy.AnnotationsMatch(u, p))
	ann := map[string]string{"unrelated": "x"}
	for k, v := range p.Annotations {
		ann[k] = v
	}
	u.SetAnnotations(ann)
	assert.True(t, policy.AnnotationsMatch(u, p), "other annotations do not matter")
	ann[policy.AnnotationPrefix+"extra"] = "1"
	u.SetAnnotations(ann)
	assert.False(t, policy.AnnotationsMatch(u, p), "an unplanned modelguard.io/ annotation is a mismatch")
}

// Fixes are memoised across evaluations: a second denial of the same model must show the
// same fix, and a change of the rule's inject settings or of the model must show a new one.
func TestFixFollowsConfigAndModel(t *testing.T) {
	config := func(issuer string) *policy.GuardConfig {
		cfg, err := policy.ParseConfig("test", []byte(`apiVersion: modelguard.io/v1alpha1
kind: GuardConfig
rules:
- name: inject
  namespaceSelector: {}
  mode: Enforce
  inject: {issuer: "`+issuer+`", jwksUri: "`+issuer+`/jwks"}
`))
		require.NoError(t, err)
		return cfg
	}
	fixOf := func(cfg *policy.GuardConfig, name string) string {
		snap := policy.NewSnapshot(cfg)
		for _, o := range fleet.Mesh(0) { // the ingress gateway
			require.NoError(t, snap.Upsert(o))
		}
		v := policy.Evaluate(cfg, snap, fleet.InferenceService("ml", name), policy.Options{})
		require.False(t, v.Allowed, "an InferenceService without its annotations is denied")
		for _, f := range v.Findings {
			if f.Fix != "" && strings.Contains(f.Fix, "RequestAuthentication") {
				return f.Fix
			}
		}
		t.Fatalf("no planned fix among %v", v.Codes())
		return ""
	}
	a := config("https://a.example.com")
	first := fixOf(a, "iris")
	assert.Equal(t, first, fixOf(a, "iris"))
	assert.Contains(t, first, "issuer: https://a.example.com")
	assert.Contains(t, first, "name: modelguard-isvc-iris")
	b := fixOf(config("https://b.example.com"), "iris")
	assert.Contains(t, b, "issuer: https://b.example.com")
	assert.NotContains(t, b, "a.example.com")
	assert.Contains(t, fixOf(a, "rose"), "name: modelguard-isvc-rose")
}
