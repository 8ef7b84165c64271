package integration_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/modelguard/modelguard/policy"
	"github.com/modelguard/modelguard/test/envtest"
	"github.com/modelguard/modelguard/test/fleet"
	"github.com/modelguard/modelguard/webhook"
)

// scopeInterval is how often the test's webhook scope re-reads the configuration.
const scopeInterval = 300 * time.Millisecond

// TestMutatingWebhookScope runs the leader's webhook scope against the API server: the
// installed mutating webhook (every model write) is replaced by webhooks on the namespaces a
// rule injects in and on annotated objects; the API server accepts their CEL match
// conditions and calls the mutator exactly where it has something to do; a GuardConfig
// change and a re-applied manifest are followed; and the scope settles (no write loop
// against the API server's defaults).
func TestMutatingWebhookScope(t *testing.T) {
	env := startEnv(t)
	config, err := os.ReadFile(testdataFile("scope/guard.yaml"))
	require.NoError(t, err)
	mg := startModelguardWith(t, &modelguard{env: env, reconcile: true, scope: true}, string(config))
	mg.mustApply(t, testdataFile("scope/namespaces.yaml"))
	rule0 := webhook.RuleWebhookName(0)
	waitScope(t, env, webhook.AnnotatedWebhookName, rule0)

	t.Run("the scoped webhooks are the ones ScopedMutatingWebhooks plans", func(t *testing.T) {
		live := mutatingConfiguration(t, env)
		want := webhook.ScopedMutatingWebhooks(mg.server.Config.Get(), webhook.ConfigurationOptions{Name: "modelguard", Namespace: "modelguard-system",
			Client: func(string) admissionregistrationv1.WebhookClientConfig { return live.Webhooks[0].ClientConfig }})
		require.Len(t, live.Webhooks, len(want))
		for i := range want {
			assert.Equal(t, want[i].NamespaceSelector, live.Webhooks[i].NamespaceSelector, want[i].Name)
			assert.Equal(t, want[i].MatchConditions, live.Webhooks[i].MatchConditions, want[i].Name)
		}
		assert.Contains(t, live.Webhooks[1].NamespaceSelector.MatchExpressions[0].Values, "scope-exempt", "exempt namespaces are left out of the rule's webhook")
	})

	t.Run("a namespace with inject is annotated", func(t *testing.T) {
		isvc := createModel(t, env, "scope-inject", "injected", nil)
		assert.Equal(t, "true", isvc.GetAnnotations()[policy.AnnotationInject])
		assert.Equal(t, "inject", isvc.GetAnnotations()[policy.AnnotationRule])
	})

	t.Run("hand-set annotations are still removed where nothing is injected", func(t *testing.T) {
		isvc := createModel(t, env, "scope-plain", "forged", map[string]string{policy.AnnotationInject: "true"})
		assert.NotContains(t, isvc.GetAnnotations(), policy.AnnotationInject, "the annotated-objects webhook called the mutator")
	})

	t.Run("no mutating call where nothing can change", func(t *testing.T) {
		before := webhookCalls(t, env)
		for _, ns := range []string{"scope-plain", "scope-exempt"} {
			isvc := createModel(t, env, ns, "plain", nil)
			assert.Empty(t, isvc.GetAnnotations(), ns)
		}
		after := webhookCalls(t, env)
		for _, name := range []string{webhook.AnnotatedWebhookName, rule0, webhook.MutatingWebhookName} {
			assert.Equal(t, before[name], after[name], "calls of %s", name)
		}
		assert.Equal(t, before[webhook.ValidatingWebhookName]+2, after[webhook.ValidatingWebhookName], "the validator judged both")
		createModel(t, env, "scope-inject", "counted", nil)
		assert.Greater(t, webhookCalls(t, env)[rule0], after[rule0], "the rule's webhook is called in its namespace")
	})

	t.Run("the scope settles", func(t *testing.T) {
		labels := map[string]string{"kind": "MutatingWebhookConfiguration", "result": "applied"}
		writes := mg.counter(t, "modelguard_reconcile_total", labels)
		time.Sleep(5 * scopeInterval)
		assert.Equal(t, writes, mg.counter(t, "modelguard_reconcile_total", labels), "no write once the configuration is scoped")
	})

	t.Run("a re-applied manifest is scoped again", func(t *testing.T) {
		live := mutatingConfiguration(t, env)
		installed, _ := webhook.Configurations(webhook.ConfigurationOptions{Name: "modelguard", Namespace: "modelguard-system",
			Client: func(string) admissionregistrationv1.WebhookClientConfig { return live.Webhooks[0].ClientConfig }})
		live.Webhooks = installed.Webhooks
		require.NoError(t, env.Client.Update(t.Context(), live))
		waitScope(t, env, webhook.AnnotatedWebhookName, rule0)
	})

	t.Run("a GuardConfig without inject keeps only the annotated-objects webhook", func(t *testing.T) {
		noInject, err := os.ReadFile(testdataFile("scope/guard-no-inject.yaml"))
		require.NoError(t, err)
		mg.setConfig(t, string(noInject), "rest-only")
		waitScope(t, env, webhook.AnnotatedWebhookName)
		isvc := createModel(t, env, "scope-inject", "after-change", nil)
		assert.Empty(t, isvc.GetAnnotations())
	})
}

func mutatingConfiguration(t *testing.T, env *testenv.Env) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	require.NoError(t, env.Client.Get(t.Context(), types.NamespacedName{Name: "modelguard"}, mwc))
	return mwc
}

// waitScope waits until the mutating configuration holds exactly the named webhooks, and
// then for the API server to act on them (a short pause: its webhook informer follows within
// milliseconds, and a model created before it would be judged by the old set).
func waitScope(t *testing.T, env *testenv.Env, names ...string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := env.Client.Get(ctx, types.NamespacedName{Name: "modelguard"}, mwc); err != nil {
			return err
		}
		var got []string
		for _, w := range mwc.Webhooks {
			got = append(got, w.Name)
		}
		if !slices.Equal(got, names) {
			return fmt.Errorf("mutating webhooks %v, want %v", got, names)
		}
		return nil
	})
	time.Sleep(time.Second)
}

// createModel creates an InferenceService with the annotations given and returns it as
// stored (after the mutating webhooks).
func createModel(t *testing.T, env *testenv.Env, ns, name string, annotations map[string]string) *unstructured.Unstructured {
	t.Helper()
	isvc := fleet.InferenceService(ns, name)
	isvc.SetAnnotations(annotations)
	require.NoError(t, env.Client.Create(t.Context(), isvc), "creating %s/%s", ns, name)
	return isvc
}

// webhookCalls is how often kube-apiserver has called each webhook, by name.
func webhookCalls(t *testing.T, env *testenv.Env) map[string]float64 {
	t.Helper()
	calls, err := testenv.WebhookCalls(t.Context(), env.Config)
	require.NoError(t, err)
	out := map[string]float64{}
	for name, c := range calls {
		out[name] = c.Count
	}
	return out
}
