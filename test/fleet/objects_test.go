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
	cfg := policy.DefaultConfig()
	snap := policy.NewSnapshot(cfg)
	const n = 20
	for _, o := range fleet.Mesh(n) {
		require.NoError(t, snap.Upsert(o))
	}
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
