package webhook

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/modelguard/modelguard/policy"
)

// The webhook configurations are a contract (DESIGN.md): pin every setting.
func TestConfigurationsMatchDesign(t *testing.T) {
	url := func(path string) admissionregistrationv1.WebhookClientConfig {
		u := "https://modelguard.example:9443" + path
		return admissionregistrationv1.WebhookClientConfig{URL: &u}
	}
	mut, val := Configurations(ConfigurationOptions{Name: "modelguard", Namespace: "modelguard-system", Client: url})

	require.Len(t, mut.Webhooks, 1)
	m := mut.Webhooks[0]
	assert.Equal(t, admissionregistrationv1.Ignore, *m.FailurePolicy, "the mutator is best effort")
	assert.Equal(t, admissionregistrationv1.IfNeededReinvocationPolicy, *m.ReinvocationPolicy)
	assert.Equal(t, "https://modelguard.example:9443/mutate", *m.ClientConfig.URL)
	checkCommon(t, m.SideEffects, m.TimeoutSeconds, m.MatchPolicy, m.AdmissionReviewVersions, m.NamespaceSelector.MatchExpressions[0].Values)

	require.Len(t, val.Webhooks, 2)
	for _, w := range val.Webhooks {
		assert.Equal(t, admissionregistrationv1.Fail, *w.FailurePolicy, "validators fail closed: %s", w.Name)
		checkCommon(t, w.SideEffects, w.TimeoutSeconds, w.MatchPolicy, w.AdmissionReviewVersions, w.NamespaceSelector.MatchExpressions[0].Values)
	}
	assert.ElementsMatch(t, []string{"inferenceservices", "models", "virtualservices"}, resources(val.Webhooks[0].Rules))
	assert.ElementsMatch(t, []string{"v1", "v1beta1", "v1alpha3"}, val.Webhooks[0].Rules[2].APIVersions)
	assert.ElementsMatch(t, []string{"authorizationpolicies", "requestauthentications", "peerauthentications", "destinationrules",
		"namespaces", "namespaces/status", "namespaces/finalize"}, resources(val.Webhooks[1].Rules))
	assert.Contains(t, val.Webhooks[1].Rules[0].Operations, admissionregistrationv1.Delete)
	// Namespaces: updates, cluster-scoped, with the subresources that also take labels; only
	// label changes are sent (the namespace controller's writes never depend on modelguard).
	ns := val.Webhooks[1].Rules[2]
	assert.Equal(t, []string{"namespaces", "namespaces/status", "namespaces/finalize"}, ns.Resources)
	assert.Equal(t, []string{""}, ns.APIGroups)
	assert.Equal(t, []admissionregistrationv1.OperationType{admissionregistrationv1.Update}, ns.Operations)
	assert.Equal(t, admissionregistrationv1.ClusterScope, *ns.Scope)
	require.Len(t, val.Webhooks[1].MatchConditions, 1)
	assert.Equal(t, NamespaceLabelsChanged, val.Webhooks[1].MatchConditions[0].Expression)
	assert.Empty(t, val.Webhooks[0].MatchConditions, "the validator sees every write of its kinds")
}

func checkCommon(t *testing.T, se *admissionregistrationv1.SideEffectClass, timeout *int32, mp *admissionregistrationv1.MatchPolicyType, versions, excluded []string) {
	t.Helper()
	assert.Equal(t, admissionregistrationv1.SideEffectClassNone, *se, "server-side dry-run must work")
	assert.EqualValues(t, 5, *timeout)
	assert.Equal(t, admissionregistrationv1.Equivalent, *mp)
	assert.Equal(t, []string{"v1"}, versions)
	assert.ElementsMatch(t, []string{"modelguard-system", "kube-system"}, excluded)
}

func resources(rules []admissionregistrationv1.RuleWithOperations) []string {
	var out []string
	for _, r := range rules {
		out = append(out, r.Resources...)
	}
	return out
}

// ScopedMutatingWebhooks: the annotated-objects webhook always, one webhook per rule that
// injects, on its namespaces less the exempt ones, each with the mutator's settings.
func TestScopedMutatingWebhooks(t *testing.T) {
	url := func(path string) admissionregistrationv1.WebhookClientConfig {
		u := "https://modelguard.example:9443" + path
		return admissionregistrationv1.WebhookClientConfig{URL: &u}
	}
	opts := ConfigurationOptions{Name: "modelguard", Namespace: "modelguard-system", Client: url}
	notIn := func(values ...string) metav1.LabelSelectorRequirement {
		return metav1.LabelSelectorRequirement{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: values}
	}
	for _, tc := range []struct {
		file      string
		names     []string
		selectors []*metav1.LabelSelector
	}{
		{file: "", names: []string{AnnotatedWebhookName},
			selectors: []*metav1.LabelSelector{{MatchExpressions: []metav1.LabelSelectorRequirement{notIn("modelguard-system", "kube-system")}}}},
		{file: "two-inject-rules.yaml", names: []string{AnnotatedWebhookName, RuleWebhookName(1), RuleWebhookName(2)},
			selectors: []*metav1.LabelSelector{
				{MatchExpressions: []metav1.LabelSelectorRequirement{notIn("modelguard-system", "kube-system")}},
				{MatchLabels: map[string]string{"team": "a"}, MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: "stage", Operator: metav1.LabelSelectorOpIn, Values: []string{"prod", "staging"}}, notIn("modelguard-system", "kube-system", "sandbox")}},
				{MatchExpressions: []metav1.LabelSelectorRequirement{notIn("modelguard-system", "kube-system", "sandbox")}},
			}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			cfg := policy.DefaultConfig()
			if tc.file != "" {
				data, err := os.ReadFile(filepath.Join("testdata", "scope", tc.file))
				require.NoError(t, err)
				cfg, err = policy.ParseConfig(tc.file, data)
				require.NoError(t, err)
			}
			hooks := ScopedMutatingWebhooks(cfg, opts)
			require.Len(t, hooks, len(tc.names))
			for i, w := range hooks {
				assert.Equal(t, tc.names[i], w.Name)
				assert.Equal(t, tc.selectors[i], w.NamespaceSelector, w.Name)
				assert.Equal(t, admissionregistrationv1.Ignore, *w.FailurePolicy, "the mutator is best effort")
				assert.Equal(t, admissionregistrationv1.IfNeededReinvocationPolicy, *w.ReinvocationPolicy)
				assert.Equal(t, "https://modelguard.example:9443/mutate", *w.ClientConfig.URL)
				assert.ElementsMatch(t, []string{"inferenceservices", "models"}, resources(w.Rules))
				assert.Equal(t, admissionregistrationv1.SideEffectClassNone, *w.SideEffects, "server-side dry-run must work")
				assert.EqualValues(t, 5, *w.TimeoutSeconds)
				assert.Equal(t, admissionregistrationv1.Equivalent, *w.MatchPolicy)
				assert.Equal(t, []string{"v1"}, w.AdmissionReviewVersions)
				require.Len(t, w.MatchConditions, 1)
				want := NoModelguardAnnotation
				if i == 0 {
					want = HasModelguardAnnotation
				}
				assert.Equal(t, want, w.MatchConditions[0].Expression, "each object goes to one webhook: annotated ones to the first")
			}
			// The rule's own selector is not modified in place.
			if len(cfg.Rules) > 1 {
				assert.Len(t, cfg.Rules[1].NamespaceSelector.MatchExpressions, 1)
			}
		})
	}
}
