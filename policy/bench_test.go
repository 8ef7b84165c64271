package policy_test

import (
	"fmt"
	"testing"

	networkingapi "istio.io/api/networking/v1alpha3"
	securityapi "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/modelguard/modelguard/policy"
)

// BenchmarkEvaluateInferenceService judges one InferenceService against snapshots of growing
// size: per namespace 10 AuthorizationPolicies, 10 RequestAuthentications, 1
// PeerAuthentication, an InferenceService with its predictor and a VirtualService. The cost
// must follow the policies that apply to the object, not the snapshot's size.
func BenchmarkEvaluateInferenceService(b *testing.B) {
	for _, policies := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("policies=%d", policies), func(b *testing.B) {
			cfg := policy.DefaultConfig()
			snap, subject := benchSnapshot(b, cfg, policies/10)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if v := policy.Evaluate(cfg, snap, subject, policy.Options{}); !v.Allowed {
					b.Fatalf("benchmark subject should be covered: %v", v.Findings)
				}
			}
		})
	}
}

func benchSnapshot(b *testing.B, cfg *policy.GuardConfig, namespaces int) (*policy.Snapshot, *unstructured.Unstructured) {
	b.Helper()
	snap := policy.NewSnapshot(cfg)
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	must(snap.Upsert(deployment("istio-system", "istio-ingressgateway", map[string]string{"istio": "ingressgateway", "app": "istio-ingressgateway"}, "gw")))
	g := gateway()
	g.Name = "public"
	must(snap.Upsert(g))
	var subject *unstructured.Unstructured
	for n := range namespaces {
		ns := fmt.Sprintf("team-%04d", n)
		u := isvc()
		u.SetNamespace(ns)
		u.SetName("model")
		u.SetLabels(nil)
		must(snap.Upsert(u))
		must(snap.Upsert(deployment(ns, "model-predictor", map[string]string{"serving.kserve.io/inferenceservice": "model", "component": "predictor"}, "default")))
		must(snap.Upsert(benchVS(ns)))
		pa := peerAuth(true)
		pa.Namespace = ns
		must(snap.Upsert(pa))
		for i := range 10 {
			must(snap.Upsert(benchAP(ns, i)))
			must(snap.Upsert(benchRA(ns, i)))
		}
		if n == namespaces/2 {
			subject = u
		}
	}
	return snap, subject
}

func benchVS(ns string) *networkingv1.VirtualService {
	vs := &networkingv1.VirtualService{TypeMeta: metav1.TypeMeta{APIVersion: "networking.istio.io/v1", Kind: "VirtualService"}, ObjectMeta: metav1.ObjectMeta{Name: "model", Namespace: ns}}
	vs.Spec.Gateways = []string{"istio-system/public"}
	vs.Spec.Hosts = []string{"model." + ns + ".example.com"}
	vs.Spec.Http = []*networkingapi.HTTPRoute{{
		Match: []*networkingapi.HTTPMatchRequest{{Uri: &networkingapi.StringMatch{MatchType: &networkingapi.StringMatch_Prefix{Prefix: "/"}}}},
		Route: []*networkingapi.HTTPRouteDestination{{Destination: &networkingapi.Destination{Host: "model-predictor"}}},
	}}
	return vs
}

// benchAP: policy 0 covers the model; the others select other apps of the namespace.
func benchAP(ns string, i int) *securityv1.AuthorizationPolicy {
	p := &securityv1.AuthorizationPolicy{TypeMeta: metav1.TypeMeta{APIVersion: "security.istio.io/v1", Kind: "AuthorizationPolicy"}, ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ap-%d", i), Namespace: ns}}
	p.Spec.Action = securityapi.AuthorizationPolicy_DENY
	p.Spec.Rules = []*securityapi.Rule{{From: []*securityapi.Rule_From{{Source: &securityapi.Source{NotRequestPrincipals: []string{"*"}}}}}}
	sel := map[string]string{"serving.kserve.io/inferenceservice": "model"}
	if i > 0 {
		sel = map[string]string{"app": fmt.Sprintf("svc-%d", i)}
	}
	p.Spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: sel}
	return p
}

func benchRA(ns string, i int) *securityv1.RequestAuthentication {
	p := &securityv1.RequestAuthentication{TypeMeta: metav1.TypeMeta{APIVersion: "security.istio.io/v1", Kind: "RequestAuthentication"}, ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ra-%d", i), Namespace: ns}}
	sel := map[string]string{"serving.kserve.io/inferenceservice": "model"}
	if i > 0 {
		sel = map[string]string{"app": fmt.Sprintf("svc-%d", i)}
	}
	p.Spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: sel}
	p.Spec.JwtRules = []*securityapi.JWTRule{{Issuer: "https://issuer.example.com", JwksUri: "https://issuer.example.com/jwks"}}
	return p
}
