package policy_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	securityapi "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"

	"github.com/modelguard/modelguard/policy"
)

// A change of a covering policy is judged against every model it can affect, before and
// after: weakening is named, harmless edits pass.
func TestUncovers(t *testing.T) {
	hdr, objs := loadCase(t, "testdata/cases/seed-kserve-namespace-token.yaml")
	_ = hdr
	cfg := policy.DefaultConfig()
	snap := policy.NewSnapshot(cfg)
	for _, o := range objs {
		require.NoError(t, snap.Upsert(o))
	}
	allow := findObject(objs, "AuthorizationPolicy models/require-token-for-external").(*securityv1.AuthorizationPolicy)
	pa := findObject(objs, "PeerAuthentication models/default").(*securityv1.PeerAuthentication)

	t.Run("dropping the when uncovers the model", func(t *testing.T) {
		weaker := allow.DeepCopy()
		weaker.Spec.Rules[0].When = nil
		u, err := policy.Uncovers(cfg, snap, policy.Change{Old: allow, New: weaker})
		require.NoError(t, err)
		require.Len(t, u, 1)
		assert.Equal(t, "InferenceService models/sample", u[0].Ref)
		assert.Equal(t, policy.CodeJWTRouteUncovered, u[0].Findings[0].Code)
	})
	t.Run("DENY to AUDIT is not a weakening here (ALLOW)", func(t *testing.T) {
		same := allow.DeepCopy()
		same.Labels = map[string]string{"team": "ml"}
		u, err := policy.Uncovers(cfg, snap, policy.Change{Old: allow, New: same})
		require.NoError(t, err)
		assert.Empty(t, u)
	})
	t.Run("deleting the PeerAuthentication uncovers mTLS", func(t *testing.T) {
		u, err := policy.Uncovers(cfg, snap, policy.Change{Old: pa})
		require.NoError(t, err)
		require.Len(t, u, 1)
		assert.Equal(t, policy.CodeMTLSNotStrict, u[0].Findings[0].Code)
	})
	t.Run("PERMISSIVE port override", func(t *testing.T) {
		weaker := pa.DeepCopy()
		weaker.Spec.Selector = nil
		weaker.Spec.Mtls = &securityapi.PeerAuthentication_MutualTLS{Mode: securityapi.PeerAuthentication_MutualTLS_PERMISSIVE}
		u, err := policy.Uncovers(cfg, snap, policy.Change{Old: pa, New: weaker})
		require.NoError(t, err)
		require.Len(t, u, 1)
	})
	t.Run("a new unrelated policy changes nothing", func(t *testing.T) {
		other := allow.DeepCopy()
		other.Namespace, other.Name = "elsewhere", "x"
		u, err := policy.Uncovers(cfg, snap, policy.Change{New: other})
		require.NoError(t, err)
		assert.Empty(t, u)
	})
	t.Run("adding a broad ALLOW uncovers", func(t *testing.T) {
		broad := allow.DeepCopy()
		broad.Name = "allow-everything"
		broad.Spec.Rules = []*securityapi.Rule{{}}
		u, err := policy.Uncovers(cfg, snap, policy.Change{New: broad})
		require.NoError(t, err)
		require.Len(t, u, 1)
	})
}
