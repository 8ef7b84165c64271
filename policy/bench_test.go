package policy_test

import (
	"fmt"
	"testing"

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
