package policy_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	securityapi "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

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

// relabelConfig hands namespaces rules by label, the way an operator rolls rules out.
const relabelConfig = `apiVersion: modelguard.io/v1alpha1
kind: GuardConfig
rules:
- {name: sandbox, namespaceSelector: {matchLabels: {tier: sandbox}}, mode: Warn}
- {name: observe, namespaceSelector: {matchLabels: {tier: observe}}, mode: Audit}
- {name: plaintext, namespaceSelector: {matchLabels: {tier: plaintext}}, requireMTLS: false}
- {name: restricted, namespaceSelector: {matchLabels: {tier: restricted}}, allowedIssuers: ["https://issuer.example.com"]}
- {name: plain, namespaceSelector: {matchLabels: {tier: plain}}}
- name: inject
  namespaceSelector: {matchLabels: {tier: inject}}
  inject: {issuer: "https://issuer.example.com", jwksUri: "https://issuer.example.com/jwks", audiences: [models]}
- name: inject-renamed
  namespaceSelector: {matchLabels: {tier: inject-renamed}}
  inject: {issuer: "https://issuer.example.com", jwksUri: "https://issuer.example.com/jwks", audiences: [models]}
- name: inject-other
  namespaceSelector: {matchLabels: {tier: inject-other}}
  inject: {issuer: "https://other.example.org", jwksUri: "https://other.example.org/jwks", audiences: [models]}
- name: default
  namespaceSelector: {matchExpressions: [{key: unguarded, operator: DoesNotExist}]}
`

func relabel(ns string, from, to map[string]string) policy.Change {
	return policy.Change{
		Old: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: from}},
		New: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: to}},
	}
}

// A relabel that hands exposed models a laxer rule is refused in the mode of the rule that
// guards them now; one that keeps the rule, tightens it, or touches no exposed model passes.
func TestUncoversRelabel(t *testing.T) {
	_, objs := loadCase(t, "testdata/cases/seed-kserve-namespace-token.yaml")
	cfg, err := policy.ParseConfig("relabel.yaml", []byte(relabelConfig))
	require.NoError(t, err)
	snap := policy.NewSnapshot(cfg)
	for _, o := range objs {
		require.NoError(t, snap.Upsert(o))
	}
	none := map[string]string{}
	for name, tc := range map[string]struct {
		to   map[string]string
		want string // "" when the relabel passes
	}{
		"to a Warn rule":                {map[string]string{"tier": "sandbox"}, `rule "sandbox" (Warn) apply to exposed InferenceService models/sample instead of rule "default" (Enforce): mode Warn instead of Enforce`},
		"to an Audit rule":              {map[string]string{"tier": "observe"}, "mode Audit instead of Enforce"},
		"to a rule without mTLS":        {map[string]string{"tier": "plaintext"}, "mTLS no longer required"},
		"to no rule at all":             {map[string]string{"unguarded": "yes"}, "no rule would guard the namespace"},
		"an unrelated label":            {map[string]string{"team": "ml"}, ""},
		"to a stricter rule":            {map[string]string{"tier": "restricted"}, ""},
		"to another rule just as tight": {map[string]string{"tier": "plain"}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			u, err := policy.Uncovers(cfg, snap, relabel("models", none, tc.to))
			require.NoError(t, err)
			if tc.want == "" {
				assert.Empty(t, u)
				return
			}
			require.Len(t, u, 1)
			assert.Equal(t, "InferenceService models/sample", u[0].Ref)
			assert.Equal(t, policy.ModeEnforce, u[0].Mode, "the mode of the rule that stops applying decides")
			assert.Equal(t, "default", u[0].Rule)
			assert.Equal(t, policy.CodeNamespaceRuleWeakened, u[0].Findings[0].Code)
			assert.Contains(t, u[0].Findings[0].Message, tc.want)
		})
	}
	t.Run("from a laxer rule back to the default", func(t *testing.T) {
		u, err := policy.Uncovers(cfg, snap, relabel("models", map[string]string{"tier": "sandbox"}, none))
		require.NoError(t, err)
		assert.Empty(t, u)
	})
	t.Run("a namespace with no exposed model", func(t *testing.T) {
		u, err := policy.Uncovers(cfg, snap, relabel("elsewhere", none, map[string]string{"unguarded": "yes"}))
		require.NoError(t, err)
		assert.Empty(t, u)
	})
	t.Run("an exempt namespace", func(t *testing.T) {
		cfg, err := policy.ParseConfig("relabel.yaml", []byte(relabelConfig+"exemptNamespaces: [models]\n"))
		require.NoError(t, err)
		u, err := policy.Uncovers(cfg, snap, relabel("models", none, map[string]string{"tier": "observe"}))
		require.NoError(t, err)
		assert.Empty(t, u)
	})
	t.Run("a half change is an error", func(t *testing.T) {
		c := relabel("models", none, none)
		c.New = nil
		_, err := policy.Uncovers(cfg, snap, c)
		assert.Error(t, err)
	})
}

// A model covered only by the policies its inject rule plans: the relabel swaps the plan.
func TestUncoversRelabelInjected(t *testing.T) {
	cfg, err := policy.ParseConfig("relabel.yaml", []byte(relabelConfig))
	require.NoError(t, err)
	_, objs := loadCase(t, "testdata/cases/inject-plan-counts.yaml")
	isvc := findObject(objs, "InferenceService models/sample").(*unstructured.Unstructured).DeepCopy()
	inject := map[string]string{"tier": "inject"}
	plan, err := policy.PlanFor(cfg.RuleFor(map[string]string{"tier": "inject"}), isvc)
	require.NoError(t, err)
	isvc.SetAnnotations(mergeMaps(isvc.GetAnnotations(), plan.Annotations))
	build := func(reconciled bool) *policy.Snapshot {
		snap := policy.NewSnapshot(cfg)
		for _, o := range objs {
			require.NoError(t, snap.Upsert(o))
		}
		require.NoError(t, snap.Upsert(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "models", Labels: inject}}))
		require.NoError(t, snap.Upsert(isvc))
		if reconciled { // what the reconciler created for the plan
			require.NoError(t, snap.Upsert(plan.RequestAuthentication))
			require.NoError(t, snap.Upsert(plan.AuthorizationPolicy))
		}
		return snap
	}
	for _, reconciled := range []bool{false, true} {
		snap := build(reconciled)
		v := policy.Evaluate(cfg, snap, isvc, policy.Options{})
		require.Equal(t, "allowed", v.Decision(), "covered by the plan: %v", v.Findings)
		require.True(t, v.Exposed)
		t.Run(fmt.Sprintf("reconciled=%v", reconciled), func(t *testing.T) {
			u, err := policy.Uncovers(cfg, snap, relabel("models", inject, map[string]string{"tier": "inject-renamed"}))
			require.NoError(t, err)
			assert.Empty(t, u, "the same plan under another name")

			u, err = policy.Uncovers(cfg, snap, relabel("models", inject, map[string]string{"tier": "inject-other"}))
			require.NoError(t, err)
			require.Len(t, u, 1)
			assert.Contains(t, u[0].Findings[0].Message, "tokens of issuer https://other.example.org instead of https://issuer.example.com")

			// Bypass: a rule without inject has the reconciler delete the generated policies
			// (as a trusted user the guard lets through), leaving the model open.
			u, err = policy.Uncovers(cfg, snap, relabel("models", inject, map[string]string{"tier": "plain"}))
			require.NoError(t, err)
			require.Len(t, u, 1)
			assert.Equal(t, policy.ModeEnforce, u[0].Mode)
			codes := []policy.Code{}
			for _, f := range u[0].Findings {
				if !slices.Contains(codes, f.Code) {
					codes = append(codes, f.Code)
				}
			}
			assert.Equal(t, []policy.Code{policy.CodeNamespaceRuleWeakened, policy.CodeJWTRouteUncovered}, codes)
			assert.Contains(t, u[0].Findings[0].Message, `the policies rule "plain" (Enforce) plans in place of those of rule "inject" would leave it uncovered`)
		})
	}
}

func mergeMaps(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}
