package fleet

import (
	"fmt"

	networkingapi "istio.io/api/networking/v1alpha3"
	securityapi "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// PoliciesPerNamespace is how many AuthorizationPolicies and RequestAuthentications Mesh puts
// in each namespace: policy 0 covers the namespace's model, the others select other apps.
const PoliciesPerNamespace = 10

// Mesh returns typed objects for a mesh of n namespaces "team-NNNN" (the Namespace objects
// included), each with
//   - an InferenceService "model" (published by KServe and by the VirtualService "model" on
//     istio-system/public) and its predictor Deployment;
//   - a Seldon Core v2 stack: the seldon-mesh Service and its envoy Deployment, a Model
//     "seldon-model" and the VirtualService "seldon" that publishes it on istio-system/public;
//   - a STRICT PeerAuthentication and PoliciesPerNamespace AuthorizationPolicies and
//     RequestAuthentications: policy 0 covers the InferenceService, policy 1 the Seldon envoy
//     (except in every UncoveredSeldonEvery-th namespace, where it selects nothing), the others
//     select other apps;
//
// plus the ingress gateway. The InferenceService is covered everywhere, so judging it costs
// what a clean admission costs; so is the Seldon Model outside the uncovered namespaces.
func Mesh(n int) []runtime.Object { return MeshRange(0, n) }

// MeshRange is the part of Mesh(to) that Mesh(from) does not hold: namespaces from..to-1, and
// the shared ingress objects when from is 0. A large mesh can be built in pieces.
func MeshRange(from, to int) []runtime.Object {
	var out []runtime.Object
	if from == 0 {
		out = append(out,
			namespace("istio-system"), namespace("knative-serving"),
			deployment("istio-system", "istio-ingressgateway", map[string]string{"istio": "ingressgateway", "app": "istio-ingressgateway"}, "istio-ingressgateway"),
			gateway("istio-system", "public"),
			gateway("knative-serving", "knative-ingress-gateway"))
	}
	for i := from; i < to; i++ {
		ns := Namespace(i)
		out = append(out, namespace(ns), InferenceService(ns, "model"),
			deployment(ns, "model-predictor", map[string]string{"serving.kserve.io/inferenceservice": "model", "component": "predictor"}, "default"),
			ModelVirtualService(ns), strictPeerAuthentication(ns),
			SeldonModel(ns, "seldon-model"), seldonMeshService(ns),
			deployment(ns, "seldon-envoy", map[string]string{"app": "seldon-envoy"}, "default"),
			SeldonVirtualService(ns, "seldon-model"))
		for j := range PoliciesPerNamespace {
			out = append(out, authorizationPolicy(ns, i, j), requestAuthentication(ns, i, j))
		}
	}
	return out
}

// UncoveredSeldonEvery: in namespaces i with i%UncoveredSeldonEvery == UncoveredSeldonEvery-1
// no policy selects the Seldon envoy, so the Seldon Model there is exposed without a JWT.
const UncoveredSeldonEvery = 10

// SeldonCovered reports whether Mesh covers the Seldon Model of namespace i.
func SeldonCovered(i int) bool { return i%UncoveredSeldonEvery != UncoveredSeldonEvery-1 }

// SeldonModel returns a minimal Seldon Core v2 Model.
func SeldonModel(ns, name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Model",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     map[string]any{"storageUri": "gs://bucket/" + name, "requirements": []any{"sklearn"}},
	}}
}

func namespace(name string) *corev1.Namespace {
	return &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/metadata.name": name}}}
}

func seldonMeshService(ns string) *corev1.Service {
	s := &corev1.Service{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"}, ObjectMeta: metav1.ObjectMeta{Name: "seldon-mesh", Namespace: ns}}
	s.Spec.Selector = map[string]string{"app": "seldon-envoy"}
	s.Spec.Ports = []corev1.ServicePort{{Name: "data", Port: 80, TargetPort: intstr.FromInt32(9000)}}
	return s
}

// SeldonVirtualService publishes one Seldon model's REST and gRPC routes, as Seldon's guide does.
func SeldonVirtualService(ns, model string) *networkingv1.VirtualService {
	vs := &networkingv1.VirtualService{TypeMeta: metav1.TypeMeta{APIVersion: "networking.istio.io/v1", Kind: "VirtualService"}, ObjectMeta: metav1.ObjectMeta{Name: "seldon", Namespace: ns}}
	vs.Spec.Gateways = []string{"istio-system/public"}
	vs.Spec.Hosts = []string{"seldon." + ns + ".example.com"}
	headers := &networkingapi.Headers{Request: &networkingapi.Headers_HeaderOperations{Set: map[string]string{"seldon-model": model}}}
	for _, prefix := range []string{"/v2/", "/inference.GRPCInferenceService/"} {
		vs.Spec.Http = append(vs.Spec.Http, &networkingapi.HTTPRoute{
			Match: []*networkingapi.HTTPMatchRequest{{Uri: &networkingapi.StringMatch{MatchType: &networkingapi.StringMatch_Prefix{Prefix: prefix}}}},
			Route: []*networkingapi.HTTPRouteDestination{{Destination: &networkingapi.Destination{Host: "seldon-mesh." + ns + ".svc.cluster.local"}, Headers: headers}},
		})
	}
	return vs
}

// Namespace is the name of the i-th namespace of Mesh.
func Namespace(i int) string { return fmt.Sprintf("team-%04d", i) }

// InferenceService returns a minimal KServe InferenceService.
func InferenceService(ns, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     map[string]any{"predictor": map[string]any{"model": map[string]any{"modelFormat": map[string]any{"name": "sklearn"}, "storageUri": "gs://bucket/" + name}}},
	}}
	return u
}

func deployment(ns, name string, labels map[string]string, sa string) *appsv1.Deployment {
	d := &appsv1.Deployment{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"}, ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	d.Spec.Selector = &metav1.LabelSelector{MatchLabels: labels}
	d.Spec.Template.Labels = labels
	d.Spec.Template.Spec.ServiceAccountName = sa
	d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "main", Image: "example/" + name}}
	return d
}

func gateway(ns, name string) *networkingv1.Gateway {
	g := &networkingv1.Gateway{TypeMeta: metav1.TypeMeta{APIVersion: "networking.istio.io/v1", Kind: "Gateway"}, ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	g.Spec.Selector = map[string]string{"istio": "ingressgateway"}
	g.Spec.Servers = []*networkingapi.Server{{Port: &networkingapi.Port{Number: 80, Name: "http", Protocol: "HTTP"}, Hosts: []string{"*"}}}
	return g
}

// ModelVirtualService publishes the InferenceService "model" of ns on istio-system/public.
func ModelVirtualService(ns string) *networkingv1.VirtualService {
	vs := &networkingv1.VirtualService{TypeMeta: metav1.TypeMeta{APIVersion: "networking.istio.io/v1", Kind: "VirtualService"}, ObjectMeta: metav1.ObjectMeta{Name: "model", Namespace: ns}}
	vs.Spec.Gateways = []string{"istio-system/public"}
	vs.Spec.Hosts = []string{"model." + ns + ".example.com"}
	vs.Spec.Http = []*networkingapi.HTTPRoute{{
		Match: []*networkingapi.HTTPMatchRequest{{Uri: &networkingapi.StringMatch{MatchType: &networkingapi.StringMatch_Prefix{Prefix: "/"}}}},
		Route: []*networkingapi.HTTPRouteDestination{{Destination: &networkingapi.Destination{Host: "model-predictor"}}},
	}}
	return vs
}

func strictPeerAuthentication(ns string) *securityv1.PeerAuthentication {
	p := &securityv1.PeerAuthentication{TypeMeta: metav1.TypeMeta{APIVersion: "security.istio.io/v1", Kind: "PeerAuthentication"}, ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}
	p.Spec.Mtls = &securityapi.PeerAuthentication_MutualTLS{Mode: securityapi.PeerAuthentication_MutualTLS_STRICT}
	return p
}

func selectorFor(i, j int) *typev1beta1.WorkloadSelector {
	switch {
	case j == 0:
		return &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"serving.kserve.io/inferenceservice": "model"}}
	case j == 1 && SeldonCovered(i):
		return &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "seldon-envoy"}}
	}
	return &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("svc-%d", j)}}
}

func authorizationPolicy(ns string, i, j int) *securityv1.AuthorizationPolicy {
	p := &securityv1.AuthorizationPolicy{TypeMeta: metav1.TypeMeta{APIVersion: "security.istio.io/v1", Kind: "AuthorizationPolicy"}, ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ap-%d", j), Namespace: ns}}
	p.Spec.Action = securityapi.AuthorizationPolicy_DENY
	p.Spec.Selector = selectorFor(i, j)
	p.Spec.Rules = []*securityapi.Rule{{From: []*securityapi.Rule_From{{Source: &securityapi.Source{NotRequestPrincipals: []string{"*"}}}}}}
	return p
}

func requestAuthentication(ns string, i, j int) *securityv1.RequestAuthentication {
	p := &securityv1.RequestAuthentication{TypeMeta: metav1.TypeMeta{APIVersion: "security.istio.io/v1", Kind: "RequestAuthentication"}, ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ra-%d", j), Namespace: ns}}
	p.Spec.Selector = selectorFor(i, j)
	p.Spec.JwtRules = []*securityapi.JWTRule{{Issuer: "https://issuer.example.com", JwksUri: "https://issuer.example.com/jwks"}}
	return p
}
