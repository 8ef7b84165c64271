// Package integration_test runs modelguard's inputs against a real kube-apiserver and etcd
// (test/envtest). These tests need the envtest binaries: `make test` provides them.
package integration_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	istiosecurity "istio.io/api/security/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	testenv "github.com/modelguard/modelguard/test/envtest"
)

// TestSeedObjectsApply applies the seed mesh states with kubectl and reads objects back: the
// CRDs must accept, and keep, everything modelguard judges.
func TestSeedObjectsApply(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	fixtures := seedFixtures(t)

	// Namespaces first; the CRDs are established already (Start waits for it).
	env.Apply(t, namespacesManifest(fixtures))
	for _, f := range fixtures {
		t.Logf("applying %s", filepath.Base(f.path))
		env.Apply(t, f.content)
	}

	t.Run("every object exists", func(t *testing.T) {
		for _, f := range fixtures {
			for _, want := range f.objects {
				got := testenv.NewUnstructured(want.GroupVersionKind(), want.GetNamespace(), want.GetName())
				assert.NoError(t, env.Client.Get(t.Context(), client.ObjectKeyFromObject(got), got),
					"%s: %s %s/%s", filepath.Base(f.path), want.GetKind(), want.GetNamespace(), want.GetName())
			}
		}
	})
	t.Run("istio policies", func(t *testing.T) { checkIstioPolicies(t, env.Client) })
	t.Run("virtual service", func(t *testing.T) { checkVirtualService(t, env.Client) })
	t.Run("seldon model", func(t *testing.T) { checkModel(t, env.Client) })
	t.Run("kserve inference service", func(t *testing.T) { checkInferenceService(t, env.Client) })
	t.Run("workloads", func(t *testing.T) { checkWorkloads(t, env.Client) })
}

// checkIstioPolicies reads the policies the seed verdicts hinge on: the DENY on tokenless
// requests (seeds/000) and the ALLOW that requires a principal (seeds/002).
func checkIstioPolicies(t *testing.T, c client.Client) {
	var deny securityv1.AuthorizationPolicy
	require.NoError(t, c.Get(t.Context(), client.ObjectKey{Namespace: "istio-system", Name: "core-v2-ingress"}, &deny))
	assert.Equal(t, istiosecurity.AuthorizationPolicy_DENY, deny.Spec.GetAction())
	assert.Equal(t, map[string]string{"app": "istio-ingressgateway"}, deny.Spec.GetSelector().GetMatchLabels())
	require.Len(t, deny.Spec.GetRules(), 1)
	rule := deny.Spec.GetRules()[0]
	require.Len(t, rule.GetFrom(), 1)
	assert.Equal(t, []string{"*"}, rule.GetFrom()[0].GetSource().GetNotRequestPrincipals())
	require.Len(t, rule.GetTo(), 1)
	assert.Equal(t, []string{"/v2/*"}, rule.GetTo()[0].GetOperation().GetPaths())

	var allow securityv1.AuthorizationPolicy
	require.NoError(t, c.Get(t.Context(), client.ObjectKey{Namespace: "models", Name: "require-token-for-external"}, &allow))
	assert.Equal(t, istiosecurity.AuthorizationPolicy_ALLOW, allow.Spec.GetAction())
	require.Len(t, allow.Spec.GetRules(), 1)
	require.Len(t, allow.Spec.GetRules()[0].GetWhen(), 1)
	when := allow.Spec.GetRules()[0].GetWhen()[0]
	assert.Equal(t, "request.auth.principal", when.GetKey())
	assert.Equal(t, []string{"*"}, when.GetValues())

	var ra securityv1.RequestAuthentication
	require.NoError(t, c.Get(t.Context(), client.ObjectKey{Namespace: "istio-system", Name: "ingress-jwt-auth"}, &ra))
	require.Len(t, ra.Spec.GetJwtRules(), 1)
	assert.Equal(t, "https://issuer.example.com", ra.Spec.GetJwtRules()[0].GetIssuer())

	var pa securityv1.PeerAuthentication
	require.NoError(t, c.Get(t.Context(), client.ObjectKey{Namespace: "models", Name: "default"}, &pa))
	assert.Equal(t, istiosecurity.PeerAuthentication_MutualTLS_STRICT, pa.Spec.GetMtls().GetMode())
}

// checkVirtualService reads the Seldon route pair: the gRPC route is the one seeds/000 leaves
// uncovered, and the seldon-model header is how the engine finds the model.
func checkVirtualService(t *testing.T, c client.Client) {
	var vs networkingv1.VirtualService
	require.NoError(t, c.Get(t.Context(), client.ObjectKey{Namespace: "seldon-mesh", Name: "iris-route"}, &vs))
	assert.Equal(t, []string{"istio-system/seldon-gateway"}, vs.Spec.GetGateways())
	require.Len(t, vs.Spec.GetHttp(), 2)
	grpc := vs.Spec.GetHttp()[1]
	assert.Equal(t, "iris-grpc", grpc.GetName())
	require.Len(t, grpc.GetMatch(), 1)
	assert.Equal(t, "/inference.GRPCInferenceService", grpc.GetMatch()[0].GetUri().GetPrefix())
	require.Len(t, grpc.GetRoute(), 1)
	assert.Equal(t, "seldon-mesh.seldon-mesh.svc.cluster.local", grpc.GetRoute()[0].GetDestination().GetHost())
	assert.Equal(t, map[string]string{"seldon-model": "iris"}, grpc.GetRoute()[0].GetHeaders().GetRequest().GetSet())
}

func checkModel(t *testing.T, c client.Client) {
	m := testenv.NewUnstructured(testenv.ModelGVK, "seldon-mesh", "iris")
	require.NoError(t, c.Get(t.Context(), client.ObjectKeyFromObject(m), m))
	assert.Equal(t, "gs://seldon-models/scv2/samples/mlserver_1.3.5/iris-sklearn", nestedString(t, m, "spec", "storageUri"))
	reqs, found, err := unstructured.NestedStringSlice(m.Object, "spec", "requirements")
	require.NoError(t, err)
	require.True(t, found, "spec.requirements was pruned")
	assert.Equal(t, []string{"sklearn"}, reqs)
}

// checkInferenceService checks that the predictor, whose schema is mostly open, came back
// whole, and that the annotation the engine reads for the deployment mode is there.
func checkInferenceService(t *testing.T, c client.Client) {
	isvc := testenv.NewUnstructured(testenv.InferenceServiceGVK, "models", "sample")
	require.NoError(t, c.Get(t.Context(), client.ObjectKeyFromObject(isvc), isvc))
	assert.Equal(t, "sklearn", nestedString(t, isvc, "spec", "predictor", "model", "modelFormat", "name"))
	assert.Equal(t, "gs://kfserving-examples/models/sklearn/1.0/model",
		nestedString(t, isvc, "spec", "predictor", "model", "storageUri"))
	assert.Equal(t, "RawDeployment", isvc.GetAnnotations()["serving.kserve.io/deploymentMode"])
}

// checkWorkloads reads the labels the engine matches policy selectors against.
func checkWorkloads(t *testing.T, c client.Client) {
	var predictor appsv1.Deployment
	require.NoError(t, c.Get(t.Context(), client.ObjectKey{Namespace: "models", Name: "sample-predictor"}, &predictor))
	assert.Equal(t, "sample", predictor.Spec.Template.Labels["serving.kserve.io/inferenceservice"])
	assert.Equal(t, "predictor", predictor.Spec.Template.Labels["component"])

	var mesh corev1.Service
	require.NoError(t, c.Get(t.Context(), client.ObjectKey{Namespace: "seldon-mesh", Name: "seldon-mesh"}, &mesh))
	assert.Equal(t, map[string]string{"app": "seldon-envoy"}, mesh.Spec.Selector)
	require.Len(t, mesh.Spec.Ports, 1)
	assert.Equal(t, int32(80), mesh.Spec.Ports[0].Port)
	// No type given: the API server defaults ClusterIP, i.e. not an exposure by itself.
	assert.Equal(t, corev1.ServiceTypeClusterIP, mesh.Spec.Type)
}

func nestedString(t *testing.T, u *unstructured.Unstructured, fields ...string) string {
	t.Helper()
	s, found, err := unstructured.NestedString(u.Object, fields...)
	require.NoError(t, err)
	require.True(t, found, "%v missing from %s %s", fields, u.GetKind(), u.GetName())
	return s
}
