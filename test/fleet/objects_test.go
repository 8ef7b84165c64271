package fleet_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelguard/modelguard/policy"
	"github.com/modelguard/modelguard/test/fleet"
)

// TestMeshVerdicts pins what the benchmarks rely on: the InferenceService "model" is covered
// in every namespace, the Seldon Model wherever fleet.SeldonCovered says so and only there,
// and a model no policy selects is denied.
func TestMeshVerdicts(t *testing.T) {
	const n = 20
	cfg, snap := meshSnapshot(t, n)
	for i := range n {
		ns := fleet.Namespace(i)
		v := policy.Evaluate(cfg, snap, fleet.InferenceService(ns, "model"), policy.Options{})
		require.True(t, v.Allowed, "%s/model: %v", ns, v.Codes())
		v = policy.Evaluate(cfg, snap, fleet.SeldonModel(ns, "seldon-model"), policy.Options{})
		require.Equal(t, fleet.SeldonCovered(i), v.Allowed, "%s/seldon-model: %v", ns, v.Codes())
		require.True(t, v.Exposed, "%s/seldon-model is published by the seldon VirtualService", ns)
		v = policy.Evaluate(cfg, snap, fleet.InferenceService(ns, "open"), policy.Options{})
		require.False(t, v.Allowed, "%s/open: no policy selects it", ns)
	}
}

// MeshRange pieces add up to Mesh.
func TestMeshRange(t *testing.T) {
	whole := fleet.Mesh(25)
	pieces := append(fleet.MeshRange(0, 10), fleet.MeshRange(10, 25)...)
	require.Equal(t, whole, pieces)
}

// Mix admits MixAdmitted in ten, each as the engine judges it, and spreads over the mesh.
func TestMixVerdicts(t *testing.T) {
	const n = 30
	cfg, snap := meshSnapshot(t, n)
	admitted, namespaces := 0, map[string]bool{}
	for k := range 100 {
		obj, want := fleet.Mix(k, n)
		v := policy.Evaluate(cfg, snap, obj, policy.Options{})
		require.Equal(t, want, v.Allowed, "mix %d (%s %s/%s): %v", k, obj.GetObjectKind().GroupVersionKind().Kind, obj.GetNamespace(), obj.GetName(), v.Codes())
		if want {
			admitted++
		}
		namespaces[obj.GetNamespace()] = true
	}
	require.Equal(t, 10*fleet.MixAdmitted, admitted)
	require.Greater(t, len(namespaces), n/2, "the mix should spread over the mesh")
}

// meshSnapshot is the engine's snapshot of fleet.Mesh(n) under the default configuration.
func meshSnapshot(t *testing.T, n int) (*policy.GuardConfig, *policy.Snapshot) {
	t.Helper()
	cfg := policy.DefaultConfig()
	snap := policy.NewSnapshot(cfg)
	for _, o := range fleet.Mesh(n) {
		require.NoError(t, snap.Upsert(o))
	}
	return cfg, snap
}
