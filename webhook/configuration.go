package webhook

import (
	"fmt"
	"slices"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/modelguard/modelguard/policy"
)

// ConfigurationOptions say where the API server reaches the webhook server.
type ConfigurationOptions struct {
	Name      string // object name of both configurations, e.g. "modelguard"
	Namespace string // modelguard's own namespace: never sent to the webhooks
	// Client returns the clientConfig for a path: a Service reference in a cluster, a URL
	// in tests; CABundle is filled by cert-manager's CA injector (or the test).
	Client func(path string) admissionregistrationv1.WebhookClientConfig
}

// Configurations returns the mutating and validating webhook configurations exactly as
// DESIGN.md states them: the validators fail closed, the mutator is best effort
// (failurePolicy Ignore, reinvocation IfNeeded: safety never depends on it); all have no side
// effects (server-side dry-run works), a 5 s timeout, Equivalent matching, admissionReview v1,
// and a namespaceSelector on kubernetes.io/metadata.name, which the API server sets and no
// namespace owner can forge, keeping kube-system and modelguard's own namespace out.
func Configurations(o ConfigurationOptions) (*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration) {
	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{mutatingWebhook(MutatingWebhookName, o, excludedNamespaces(o.Namespace), nil)},
	}
	validating := &admissionregistrationv1.ValidatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{
			validatingWebhook(ValidatingWebhookName, o, PathValidate, append(modelRules(), virtualServiceRules())),
			guardWebhook(o),
		},
	}
	return mutating, validating
}

// Names of the mutating webhooks. MutatingWebhookName is the one of the installed manifest:
// every Model and InferenceService write. ScopedMutatingWebhooks replaces it with
// AnnotatedWebhookName and one RuleWebhookName per rule that injects.
const (
	ValidatingWebhookName = "validate.models.modelguard.io" // the validator's, of the models and VirtualServices
	MutatingWebhookName   = "mutate.models.modelguard.io"
	AnnotatedWebhookName  = "annotated.mutate.models.modelguard.io"
)

// RuleWebhookName is the mutating webhook of the i-th rule of the GuardConfig (from 0).
func RuleWebhookName(i int) string { return fmt.Sprintf("rule-%d.mutate.models.modelguard.io", i) }

// CEL match conditions of the scoped mutating webhooks: whether the object carries a
// modelguard.io/* annotation (set by hand, or by an earlier pass of the mutator).
const (
	HasModelguardAnnotation = `has(object.metadata.annotations) && object.metadata.annotations.exists(k, k.startsWith("` + policy.AnnotationPrefix + `"))`
	NoModelguardAnnotation  = `!(` + HasModelguardAnnotation + `)`
)

// ScopedMutatingWebhooks are the mutating webhooks cfg needs: the mutator is called only where
// it can change something, so that a create it would leave alone does not pay for a webhook
// call (README "Performance"). It changes an object in two cases:
//   - a rule with inject plans annotations: one webhook per such rule, on the namespaces of
//     its namespaceSelector (less the exempt ones) and the objects without modelguard.io/*
//     annotations; a namespace an earlier rule takes is called in vain, never missed;
//   - the object carries modelguard.io/* annotations, which the mutator sets to the plan or
//     removes: one webhook in every namespace, for those objects only.
//
// Safety never depends on these (DESIGN.md): the validator recomputes the plan and counts
// annotations only where they equal it.
func ScopedMutatingWebhooks(cfg *policy.GuardConfig, o ConfigurationOptions) []admissionregistrationv1.MutatingWebhook {
	out := []admissionregistrationv1.MutatingWebhook{mutatingWebhook(AnnotatedWebhookName, o, excludedNamespaces(o.Namespace), &admissionregistrationv1.MatchCondition{
		Name: "has-modelguard-annotations", Expression: HasModelguardAnnotation})}
	for i, r := range cfg.Rules {
		if r.Inject == nil || r.NamespaceSelector == nil {
			continue
		}
		sel := r.NamespaceSelector.DeepCopy()
		sel.MatchExpressions = append(sel.MatchExpressions, excludedNamespaces(o.Namespace, cfg.ExemptNamespaces...).MatchExpressions...)
		out = append(out, mutatingWebhook(RuleWebhookName(i), o, sel, &admissionregistrationv1.MatchCondition{
			Name: "no-modelguard-annotations", Expression: NoModelguardAnnotation}))
	}
	return out
}

// mutatingWebhook is the mutator's webhook on the namespaces of sel, for the objects cond
// admits (nil: all).
func mutatingWebhook(name string, o ConfigurationOptions, sel *metav1.LabelSelector, cond *admissionregistrationv1.MatchCondition) admissionregistrationv1.MutatingWebhook {
	w := admissionregistrationv1.MutatingWebhook{
		Name:                    name,
		ClientConfig:            o.Client(PathMutate),
		Rules:                   modelRules(),
		FailurePolicy:           ptr(admissionregistrationv1.Ignore),
		ReinvocationPolicy:      ptr(admissionregistrationv1.IfNeededReinvocationPolicy),
		SideEffects:             ptr(admissionregistrationv1.SideEffectClassNone),
		TimeoutSeconds:          ptr(int32(5)),
		MatchPolicy:             ptr(admissionregistrationv1.Equivalent),
		AdmissionReviewVersions: []string{"v1"},
		NamespaceSelector:       sel,
	}
	if cond != nil {
		w.MatchConditions = []admissionregistrationv1.MatchCondition{*cond}
	}
	return w
}

// guardWebhook receives changes of the policies models rely on, and namespace relabels. Of
// the namespace writes only those that change labels are sent (matchConditions): the
// namespace controller's status and finalize writes during a deletion, and annotation edits,
// never depend on modelguard being up.
func guardWebhook(o ConfigurationOptions) admissionregistrationv1.ValidatingWebhook {
	w := validatingWebhook("guard.policies.modelguard.io", o, PathGuard, append(policyRules(), namespaceRule()))
	w.MatchConditions = []admissionregistrationv1.MatchCondition{{
		Name:       "namespace-labels-changed",
		Expression: NamespaceLabelsChanged,
	}}
	return w
}

// NamespaceLabelsChanged is the guard's CEL match condition: every request that is not for a
// Namespace, and the namespace updates that change its labels.
const NamespaceLabelsChanged = `request.resource.group != "" || request.resource.resource != "namespaces" || ` +
	`(has(object.metadata.labels) ? object.metadata.labels : {}) != (has(oldObject.metadata.labels) ? oldObject.metadata.labels : {})`

func validatingWebhook(name string, o ConfigurationOptions, path string, rules []admissionregistrationv1.RuleWithOperations) admissionregistrationv1.ValidatingWebhook {
	return admissionregistrationv1.ValidatingWebhook{
		Name:                    name,
		ClientConfig:            o.Client(path),
		Rules:                   rules,
		FailurePolicy:           ptr(admissionregistrationv1.Fail),
		SideEffects:             ptr(admissionregistrationv1.SideEffectClassNone),
		TimeoutSeconds:          ptr(int32(5)),
		MatchPolicy:             ptr(admissionregistrationv1.Equivalent),
		AdmissionReviewVersions: []string{"v1"},
		NamespaceSelector:       excludedNamespaces(o.Namespace),
	}
}

func modelRules() []admissionregistrationv1.RuleWithOperations {
	return []admissionregistrationv1.RuleWithOperations{
		rule([]string{"serving.kserve.io"}, []string{"v1beta1"}, []string{"inferenceservices"}, createUpdate()),
		rule([]string{"mlops.seldon.io"}, []string{"v1alpha1"}, []string{"models"}, createUpdate()),
	}
}

func virtualServiceRules() admissionregistrationv1.RuleWithOperations {
	return rule([]string{"networking.istio.io"}, []string{"v1", "v1beta1", "v1alpha3"}, []string{"virtualservices"}, createUpdate())
}

// policyRules guard the policies models rely on; CREATE too, since adding an ALLOW policy can
// admit what the others left out.
func policyRules() []admissionregistrationv1.RuleWithOperations {
	ops := []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete}
	return []admissionregistrationv1.RuleWithOperations{
		rule([]string{"security.istio.io"}, []string{"v1", "v1beta1"}, []string{"authorizationpolicies", "requestauthentications", "peerauthentications"}, ops),
		rule([]string{"networking.istio.io"}, []string{"v1", "v1beta1", "v1alpha3"}, []string{"destinationrules"}, ops),
	}
}

// namespaceRule sends namespace updates to the guard: a namespace's labels select the
// GuardConfig rule of its models, so a relabel can weaken their rule. UPDATE only (a new
// namespace holds no model; a deletion is never refused), of the namespace and of its status
// and finalize subresources, which accept label changes too (a relabel through them was a
// bypass). The match condition of the guard keeps out every write that leaves the labels
// alone. The common namespaceSelector applies to a Namespace's own labels, so kube-system and
// modelguard's namespace stay out here too.
func namespaceRule() admissionregistrationv1.RuleWithOperations {
	return admissionregistrationv1.RuleWithOperations{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
		Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"},
			Resources: []string{"namespaces", "namespaces/status", "namespaces/finalize"}, Scope: ptr(admissionregistrationv1.ClusterScope)},
	}
}

func createUpdate() []admissionregistrationv1.OperationType {
	return []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}
}

func rule(groups, versions, resources []string, ops []admissionregistrationv1.OperationType) admissionregistrationv1.RuleWithOperations {
	return admissionregistrationv1.RuleWithOperations{
		Operations: ops,
		Rule:       admissionregistrationv1.Rule{APIGroups: groups, APIVersions: versions, Resources: resources, Scope: ptr(admissionregistrationv1.NamespacedScope)},
	}
}

// excludedNamespaces selects every namespace but modelguard's own, kube-system and more.
func excludedNamespaces(own string, more ...string) *metav1.LabelSelector {
	values := []string{own, "kube-system"}
	for _, ns := range more {
		if !slices.Contains(values, ns) {
			values = append(values, ns)
		}
	}
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: values,
	}}}
}

func ptr[T any](v T) *T { return &v }
