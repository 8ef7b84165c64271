package integration_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/modelguard/modelguard/policy"
	"github.com/modelguard/modelguard/test/envtest"
)

var update = flag.Bool("update", false, "rewrite golden files")

// reconcileConfig injects everywhere; namespace "rebuilt" rolls out in Audit mode, so that
// edits of its generated policies are audited rather than refused and the reconciler's
// restoring can be measured.
const reconcileConfig = `apiVersion: modelguard.io/v1alpha1
kind: GuardConfig
rules:
- name: rollout
  namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: rebuilt}}
  mode: Audit
  inject: {issuer: "https://issuer.example.com", jwksUri: "https://issuer.example.com/.well-known/jwks.json", audiences: [models]}
- name: inject
  namespaceSelector: {}
  inject: {issuer: "https://issuer.example.com", jwksUri: "https://issuer.example.com/.well-known/jwks.json", audiences: [models]}
`

// TestReconcilerSeed002 rebuilds seeds/002 with the reconciler: a namespace with only a
// STRICT PeerAuthentication and a GuardConfig with inject; the generated policies appear, the
// engine judges the model covered by them alone, drift is undone, and they go with the model.
func TestReconcilerSeed002(t *testing.T) {
	env := startEnv(t)
	mg := startModelguardWith(t, &modelguard{env: env, reconcile: true}, reconcileConfig)
	mg.mustApply(t, testdataFile("kserve/mesh.yaml"), testdataFile("reconcile/namespace.yaml"), testdataFile("reconcile/model.yaml"))
	name := types.NamespacedName{Namespace: "rebuilt", Name: policy.GeneratedName("InferenceService", "sample")}

	ra, ap := &securityv1.RequestAuthentication{}, &securityv1.AuthorizationPolicy{}
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		if err := env.Client.Get(ctx, name, ra); err != nil {
			return err
		}
		return env.Client.Get(ctx, name, ap)
	})

	t.Run("the generated objects are the golden ones", func(t *testing.T) {
		// The typed client drops apiVersion and kind from what it reads.
		ra.APIVersion, ra.Kind = "security.istio.io/v1", "RequestAuthentication"
		ap.APIVersion, ap.Kind = "security.istio.io/v1", "AuthorizationPolicy"
		text, err := (&policy.Plan{RequestAuthentication: ra, AuthorizationPolicy: ap}).YAML()
		require.NoError(t, err)
		golden(t, "reconcile/generated.golden.yaml", text)
		require.Len(t, ap.OwnerReferences, 1)
		assert.Equal(t, "sample", ap.OwnerReferences[0].Name)
		assert.Equal(t, "modelguard", ap.Labels[policy.LabelManagedBy])
	})

	t.Run("the engine judges the model covered by the generated objects alone", func(t *testing.T) {
		snap, err := mg.server.Mesh.Snapshot()
		require.NoError(t, err)
		isvc := testenv.NewUnstructured(policy.GVKInferenceService, "rebuilt", "sample")
		require.NoError(t, env.Client.Get(context.Background(), client.ObjectKeyFromObject(isvc), isvc))
		testenv.Eventually(t, 10*time.Second, func(context.Context) error {
			// No inject rule here: nothing planned is counted, only what exists.
			v := policy.Evaluate(policy.DefaultConfig(), snap, isvc, policy.Options{})
			if !v.Allowed || v.Decision() != "allowed" {
				return fmt.Errorf("not covered yet: %v", v.Findings)
			}
			return nil
		})
	})

	t.Run("drift is undone", func(t *testing.T) {
		var lat []time.Duration
		for i := range 10 {
			patch := `{"spec":{"rules":[{"to":[{"operation":{"paths":["/nothing"]}}]}]}}`
			if i%2 == 1 {
				lat = append(lat, deleteAndTime(t, env, ap))
				continue
			}
			lat = append(lat, patchAndTime(t, env, ap, patch))
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		t.Logf("drift restored in: median %s, max %s (10 changes: 5 edits, 5 deletions)", lat[len(lat)/2], lat[len(lat)-1])
		assert.Less(t, lat[len(lat)-1], 2*time.Second, "p99 target")
		for _, r := range []string{"applied", "restored", "unchanged", "removed", "error"} {
			t.Logf("reconcile %s: %v", r, mg.counter(t, "modelguard_reconcile_total", map[string]string{"kind": "InferenceService", "result": r}))
		}
		assert.GreaterOrEqual(t, mg.counter(t, "modelguard_reconcile_total", map[string]string{"kind": "InferenceService", "result": "restored"}), 5.0)
		assert.GreaterOrEqual(t, mg.counter(t, "modelguard_reconcile_total", map[string]string{"kind": "InferenceService", "result": "applied"}), 1.0)
	})

	t.Run("events on the model", func(t *testing.T) {
		out, _, _ := env.Kubectl(t, "get", "events.events.k8s.io", "-n", "rebuilt", "-o", "jsonpath={range .items[*]}{.reason}: {.note}{\"\\n\"}{end}")
		t.Logf("events:\n%s", out)
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			out, _, err := env.Kubectl(t, "get", "events.events.k8s.io", "-n", "rebuilt", "-o", "jsonpath={.items[*].reason}")
			if err != nil || !strings.Contains(out, "PoliciesApplied") || !strings.Contains(out, "PolicyRestored") {
				return fmt.Errorf("events so far: %q %v", out, err)
			}
			return nil
		})
	})

	t.Run("deleting the model deletes the generated objects", func(t *testing.T) {
		_, errOut, err := env.Kubectl(t, "delete", "inferenceservice", "-n", "rebuilt", "sample")
		require.NoError(t, err, errOut)
		testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
			for _, o := range []client.Object{&securityv1.RequestAuthentication{}, &securityv1.AuthorizationPolicy{}} {
				if err := env.Client.Get(ctx, name, o); !apierrors.IsNotFound(err) {
					return fmt.Errorf("%T still there (%v)", o, err)
				}
			}
			return nil
		})
	})
}

// patchAndTime edits the generated policy as someone else would and returns how long the
// reconciler takes to put the plan back.
func patchAndTime(t *testing.T, env *testenv.Env, want *securityv1.AuthorizationPolicy, patch string) time.Duration {
	t.Helper()
	live := &securityv1.AuthorizationPolicy{}
	live.Namespace, live.Name = want.Namespace, want.Name
	start := time.Now()
	require.NoError(t, env.Client.Patch(context.Background(), live, client.RawPatch(types.MergePatchType, []byte(patch))))
	return waitRestored(t, env, want, start)
}

func deleteAndTime(t *testing.T, env *testenv.Env, want *securityv1.AuthorizationPolicy) time.Duration {
	t.Helper()
	live := &securityv1.AuthorizationPolicy{}
	live.Namespace, live.Name = want.Namespace, want.Name
	start := time.Now()
	require.NoError(t, env.Client.Delete(context.Background(), live))
	return waitRestored(t, env, want, start)
}

func waitRestored(t *testing.T, env *testenv.Env, want *securityv1.AuthorizationPolicy, start time.Time) time.Duration {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		live := &securityv1.AuthorizationPolicy{}
		err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(want), live)
		if err == nil && live.Spec.String() == want.Spec.String() {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s/%s not restored within 30s", want.Namespace, want.Name)
	return 0
}

func golden(t *testing.T, file, got string) {
	t.Helper()
	path := testdataFile(file)
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run `go test ./test/integration -run %s -update` to create it", t.Name())
	assert.Equal(t, string(want), got, "golden file %s (-update to accept)", path)
}

// TestReconcilerSeldon: the policy generated for one Seldon model covers its REST and gRPC
// routes and leaves a second model behind the same mesh Service exactly as it was; removing
// the inject annotation removes the model's generated objects.
func TestReconcilerSeldon(t *testing.T) {
	env := startEnv(t)
	mg := startModelguardWith(t, &modelguard{env: env, reconcile: true}, reconcileConfig)
	mg.mustApply(t, testdataFile("seldon/mesh.yaml"), testdataFile("reconcile/seldon-models.yaml"))
	irisAP := waitGenerated(t, env, "seldon-rec", "Model", "iris")
	waitGenerated(t, env, "seldon-rec", "Model", "wine")

	snap, err := mg.server.Mesh.Snapshot()
	require.NoError(t, err)
	model := func(name string) client.Object {
		m := testenv.NewUnstructured(policy.GVKModel, "seldon-rec", name)
		require.NoError(t, env.Client.Get(context.Background(), client.ObjectKeyFromObject(m), m))
		return m
	}
	cfg := policy.DefaultConfig() // no inject: only the objects that exist count

	t.Run("iris is covered on REST and gRPC by what was generated", func(t *testing.T) {
		testenv.Eventually(t, 10*time.Second, func(context.Context) error {
			v := policy.Evaluate(cfg, snap, model("iris"), policy.Options{})
			if hasCode(v, policy.CodeJWTRouteUncovered) {
				return fmt.Errorf("uncovered: %v", v.Findings)
			}
			return nil
		})
		assert.Equal(t, []string{"iris"}, irisAP.Spec.GetRules()[0].GetWhen()[0].GetValues(), "the rule only holds for requests routed to iris")
	})

	t.Run("iris's policy changes nothing for wine", func(t *testing.T) {
		with := policy.Evaluate(cfg, snap, model("wine"), policy.Options{})
		without := policy.Evaluate(cfg, snap, model("wine"), policy.Options{Change: &policy.Change{Old: irisAP}})
		assert.Equal(t, without.Findings, with.Findings)
		assert.Equal(t, without.Decision(), with.Decision())
	})

	t.Run("in Enforce mode nobody but modelguard may change a generated policy", func(t *testing.T) {
		_, errOut, err := env.Kubectl(t, "delete", "authorizationpolicy", "-n", "seldon-rec", policy.GeneratedName("Model", "wine"))
		require.Error(t, err)
		assert.Contains(t, errOut, "GENERATED_POLICY_CHANGED")
		assert.Contains(t, errOut, "change the GuardConfig instead")
	})

	t.Run("a config without inject removes every model's generated objects", func(t *testing.T) {
		// No model changes: the config change alone sends every model back through the
		// reconciler (the plan depends on the config).
		mg.setConfig(t, "apiVersion: modelguard.io/v1alpha1\nkind: GuardConfig\nrules: [{name: plain, namespaceSelector: {}, mode: Audit}]\n", "plain")
		for _, m := range []string{"iris", "wine"} {
			name := types.NamespacedName{Namespace: "seldon-rec", Name: policy.GeneratedName("Model", m)}
			testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
				if err := env.Client.Get(ctx, name, &securityv1.AuthorizationPolicy{}); !apierrors.IsNotFound(err) {
					return fmt.Errorf("%s still there: %v", name, err)
				}
				return nil
			})
		}
		assert.GreaterOrEqual(t, mg.counter(t, "modelguard_reconcile_total", map[string]string{"kind": "Model", "result": "removed"}), 2.0)
		mg.mustApply(t, testdataFile("reconcile/iris-relabelled.yaml")) // the mutator now strips the annotations
		out, _, err := env.Kubectl(t, "get", "model", "-n", "seldon-rec", "iris", "-o", "jsonpath={.metadata.annotations}")
		require.NoError(t, err)
		assert.NotContains(t, out, "modelguard.io/inject")
	})
}

func waitGenerated(t *testing.T, env *testenv.Env, ns, kind, model string) *securityv1.AuthorizationPolicy {
	t.Helper()
	ap := &securityv1.AuthorizationPolicy{}
	name := types.NamespacedName{Namespace: ns, Name: policy.GeneratedName(kind, model)}
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error { return env.Client.Get(ctx, name, ap) })
	ap.APIVersion, ap.Kind = "security.istio.io/v1", "AuthorizationPolicy"
	return ap
}

func hasCode(v policy.Verdict, c policy.Code) bool {
	for _, f := range v.Findings {
		if f.Code == c {
			return true
		}
	}
	return false
}
