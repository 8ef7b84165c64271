package policy_test

import (
	"fmt"
	"testing"

	securityapi "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/modelguard/modelguard/policy"
	"github.com/modelguard/modelguard/test/fleet"
)

// BenchmarkEvaluateInferenceService judges one InferenceService against snapshots of growing
// size (fleet.Mesh: per namespace 10 AuthorizationPolicies, 10 RequestAuthentications, 1
// PeerAuthentication, a model and its VirtualService). The cost must follow the policies that
// apply to the object, not the snapshot's size.
func BenchmarkEvaluateInferenceService(b *testing.B) {
	for _, policies := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("policies=%d", policies), func(b *testing.B) {
			cfg := policy.DefaultConfig()
			namespaces := policies / fleet.PoliciesPerNamespace
			snap := snapshotOf(b, cfg, fleet.Mesh(namespaces))
			subject := fleet.InferenceService(fleet.Namespace(namespaces/2), "model")
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

// BenchmarkEvaluateMix judges the load generator's mix (fleet.Mix: InferenceServices,
// Seldon Models and VirtualServices, 30% denied) against the 10,000-policy mesh, one object
// after another over 1,000 namespaces: the engine's share of a served admission.
func BenchmarkEvaluateMix(b *testing.B) {
	cfg := policy.DefaultConfig()
	const namespaces = 10_000 / fleet.PoliciesPerNamespace
	snap := snapshotOf(b, cfg, fleet.Mesh(namespaces))
	type subject struct {
		obj      runtime.Object
		admitted bool
	}
	subjects := make([]subject, 1000)
	for k := range subjects {
		obj, admitted := fleet.Mix(k, namespaces)
		subjects[k] = subject{obj, admitted}
	}
	b.ReportAllocs()
	k := 0
	for b.Loop() {
		s := subjects[k%len(subjects)]
		if v := policy.Evaluate(cfg, snap, s.obj, policy.Options{}); v.Allowed != s.admitted {
			b.Fatalf("mix %d: allowed=%v, want %v: %v", k, v.Allowed, s.admitted, v.Codes())
		}
		k++
	}
}

func snapshotOf(b *testing.B, cfg *policy.GuardConfig, objs []runtime.Object) *policy.Snapshot {
	b.Helper()
	snap := policy.NewSnapshot(cfg)
	for _, o := range objs {
		if err := snap.Upsert(o); err != nil {
			b.Fatal(err)
		}
	}
	return snap
}

// BenchmarkEvaluateManyJWTRules judges a model whose RequestAuthentication holds 40,000
// jwtRules (about 1 MiB, within what the API server stores): the cost must stay linear in
// the rules (a quadratic issuer scan once took seconds here).
func BenchmarkEvaluateManyJWTRules(b *testing.B) {
	cfg := policy.DefaultConfig()
	objs := fleet.Mesh(1)
	for _, o := range objs {
		if ra, ok := o.(*securityv1.RequestAuthentication); ok && ra.Name == "ra-0" {
			for i := range 40_000 {
				ra.Spec.JwtRules = append(ra.Spec.JwtRules, &securityapi.JWTRule{Issuer: fmt.Sprintf("https://issuer-%d.example.com", i)})
			}
		}
	}
	snap := snapshotOf(b, cfg, objs)
	subject := fleet.InferenceService(fleet.Namespace(0), "model")
	b.ReportAllocs()
	for b.Loop() {
		policy.Evaluate(cfg, snap, subject, policy.Options{})
	}
}

// BenchmarkGuardRootPolicyChange is the guard's worst case: a change of an
// AuthorizationPolicy in the root namespace with no selector applies to every workload, so
// every model in the cluster is judged before and after (here 1,000 and 10,000 models).
func BenchmarkGuardRootPolicyChange(b *testing.B) {
	for _, models := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("models=%d", models), func(b *testing.B) {
			cfg := policy.DefaultConfig()
			snap := snapshotOf(b, cfg, fleet.Mesh(models))
			old := &securityv1.AuthorizationPolicy{TypeMeta: metav1.TypeMeta{APIVersion: "security.istio.io/v1", Kind: "AuthorizationPolicy"},
				ObjectMeta: metav1.ObjectMeta{Name: "mesh-wide", Namespace: "istio-system"}}
			old.Spec.Action = securityapi.AuthorizationPolicy_AUDIT
			old.Spec.Rules = []*securityapi.Rule{{}}
			if err := snap.Upsert(old); err != nil {
				b.Fatal(err)
			}
			changed := old.DeepCopy()
			changed.Spec.Action = securityapi.AuthorizationPolicy_ALLOW
			b.ReportAllocs()
			for b.Loop() {
				if _, err := policy.Uncovers(cfg, snap, policy.Change{Old: old, New: changed}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
