package policy_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	networkingapi "istio.io/api/networking/v1alpha3"
	securityapi "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/modelguard/modelguard/policy"
	"github.com/modelguard/modelguard/test/fleet"
)

// The snapshot is updated in place by informers: every index must follow updates and
// deletions, or a stale entry would keep counting a policy that is gone.
func TestSnapshotFollowsUpdatesAndDeletes(t *testing.T) {
	cfg := policy.DefaultConfig()
	snap := policy.NewSnapshot(cfg)
	w := &world{strict: true, vs: benchVS("ml")}
	w.vs.Name = "m"
	w.vs.Spec.Gateways = []string{"istio-system/gw"}
	w.vs.Spec.Http[0].Route[0].Destination.Host = "m-predictor"
	require.NoError(t, snap.Upsert(deployment("istio-system", "gw", map[string]string{"istio": "ingressgateway"}, "gw-sa")))
	require.NoError(t, snap.Upsert(deployment("ml", "m-predictor", map[string]string{"serving.kserve.io/inferenceservice": "m"}, "default")))
	require.NoError(t, snap.Upsert(gateway()))
	require.NoError(t, snap.Upsert(isvc()))
	require.NoError(t, snap.Upsert(peerAuth(true)))
	require.NoError(t, snap.Upsert(w.vs))
	judge := func() policy.Verdict { return policy.Evaluate(cfg, snap, isvc(), policy.Options{}) }

	require.True(t, hasCode(judge(), policy.CodeJWTRouteUncovered), "no policy yet")

	deny := benchAP("ml", 0)
	deny.Spec.Selector.MatchLabels = map[string]string{"serving.kserve.io/inferenceservice": "m"}
	require.NoError(t, snap.Upsert(deny))
	assert.False(t, hasCode(judge(), policy.CodeJWTRouteUncovered), "the DENY covers the route")

	moved := deny.DeepCopy()
	moved.Spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "other"}}
	require.NoError(t, snap.Upsert(moved))
	assert.True(t, hasCode(judge(), policy.CodeJWTRouteUncovered), "the updated selector no longer matches")

	require.NoError(t, snap.Upsert(deny))
	require.NoError(t, snap.Delete(deny))
	assert.True(t, hasCode(judge(), policy.CodeJWTRouteUncovered), "deleted policies stop counting")

	rootDeny := deny.DeepCopy()
	rootDeny.Namespace = "istio-system"
	require.NoError(t, snap.Upsert(rootDeny))
	assert.False(t, hasCode(judge(), policy.CodeJWTRouteUncovered), "a root-namespace selector policy applies across namespaces")
	require.NoError(t, snap.Delete(rootDeny))
	assert.True(t, hasCode(judge(), policy.CodeJWTRouteUncovered))

	// The VirtualService is re-pointed away from the model: the model is no longer exposed.
	away := w.vs.DeepCopy()
	away.Spec.Http = []*networkingapi.HTTPRoute{{Route: []*networkingapi.HTTPRouteDestination{{Destination: &networkingapi.Destination{Host: "frontend"}}}}}
	require.NoError(t, snap.Upsert(away))
	v := judge()
	assert.False(t, v.Exposed, "stale destination index: %v", v.Findings)

	// Namespace labels drive rule selection; deleting the namespace falls back to its name label.
	require.NoError(t, snap.Upsert(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ml", Labels: map[string]string{"team": "a"}}}))
	assert.Equal(t, "a", snap.NamespaceLabels("ml")["team"])
	assert.Equal(t, "ml", snap.NamespaceLabels("ml")["kubernetes.io/metadata.name"])
	require.NoError(t, snap.Delete(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ml"}}))
	assert.Empty(t, snap.NamespaceLabels("ml")["team"])
}

func TestSnapshotRejectsMalformedModels(t *testing.T) {
	snap := policy.NewSnapshot(policy.DefaultConfig())
	u := isvc()
	u.Object["spec"] = "predictor"
	err := snap.Upsert(u)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "InferenceService ml/m: spec: must be an object, not a string")
	v := policy.Evaluate(policy.DefaultConfig(), snap, u, policy.Options{})
	assert.False(t, v.Allowed, "a malformed object is never admitted")
	assert.True(t, hasCode(v, policy.CodeInvalidObject))
}

func TestEvaluateRefusesWhatItCannotJudge(t *testing.T) {
	cfg := policy.DefaultConfig()
	snap := policy.NewSnapshot(cfg)
	var nilVS *networkingv1.VirtualService
	for name, obj := range map[string]runtime.Object{"nil": nil, "nil VirtualService": nilVS, "Namespace": &corev1.Namespace{}, "empty unstructured": &unstructured.Unstructured{}} {
		v := policy.Evaluate(cfg, snap, obj, policy.Options{})
		assert.False(t, v.Allowed, name)
		assert.True(t, hasCode(v, policy.CodeInvalidObject), name)
	}
}

func benchVS(ns string) *networkingv1.VirtualService {
	vs := &networkingv1.VirtualService{TypeMeta: metav1.TypeMeta{APIVersion: "networking.istio.io/v1", Kind: "VirtualService"}, ObjectMeta: metav1.ObjectMeta{Name: "model", Namespace: ns}}
	vs.Spec.Gateways = []string{"istio-system/public"}
	vs.Spec.Hosts = []string{"model." + ns + ".example.com"}
	vs.Spec.Http = []*networkingapi.HTTPRoute{{Route: []*networkingapi.HTTPRouteDestination{{Destination: &networkingapi.Destination{Host: "model-predictor"}}}}}
	return vs
}

func benchAP(ns string, _ int) *securityv1.AuthorizationPolicy {
	p := &securityv1.AuthorizationPolicy{TypeMeta: metav1.TypeMeta{APIVersion: "security.istio.io/v1", Kind: "AuthorizationPolicy"}, ObjectMeta: metav1.ObjectMeta{Name: "ap-0", Namespace: ns}}
	p.Spec.Action = securityapi.AuthorizationPolicy_DENY
	p.Spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"serving.kserve.io/inferenceservice": "model"}}
	p.Spec.Rules = []*securityapi.Rule{{From: []*securityapi.Rule_From{{Source: &securityapi.Source{NotRequestPrincipals: []string{"*"}}}}}}
	return p
}

// Informers write the snapshot while admissions read it: run both at once (under -race in
// CI's race runs, this is what catches a missing lock).
func TestSnapshotConcurrentUse(t *testing.T) {
	cfg := policy.DefaultConfig()
	snap := policy.NewSnapshot(cfg)
	objs := fleet.Mesh(20)
	for _, o := range objs {
		require.NoError(t, snap.Upsert(o))
	}
	subject := fleet.InferenceService(fleet.Namespace(3), "model")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			o := objs[i%len(objs)]
			if i%3 == 0 {
				_ = snap.Delete(o)
			}
			_ = snap.Upsert(o)
		}
	}()
	for range 200 {
		_ = policy.Evaluate(cfg, snap, subject, policy.Options{})
		_ = snap.NamespaceLabels(fleet.Namespace(3))
	}
	<-done
	assert.True(t, policy.Evaluate(cfg, snap, subject, policy.Options{}).Allowed, "every object is back: covered again")
}
