package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	securityapi "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/lru"
)

// Annotations the mutating webhook sets for the reconciler (a stable contract, DESIGN.md).
const (
	AnnotationPrefix    = "modelguard.io/"
	AnnotationInject    = "modelguard.io/inject"
	AnnotationIssuer    = "modelguard.io/jwt-issuer"
	AnnotationJWKS      = "modelguard.io/jwks-uri"
	AnnotationAudiences = "modelguard.io/audiences"
	AnnotationRule      = "modelguard.io/rule"
	LabelManagedBy      = "app.kubernetes.io/managed-by"
	ManagedByValue      = "modelguard"
)

// Plan is what the rule's inject section makes of one model: the annotations the mutating
// webhook sets and the policies the reconciler creates. Webhook, reconciler and validator all
// use this one function, so what gets created is exactly what the validator counts.
type Plan struct {
	Annotations           map[string]string
	RequestAuthentication *securityv1.RequestAuthentication
	AuthorizationPolicy   *securityv1.AuthorizationPolicy
}

// PlanFor plans the policies for an InferenceService or Model under a rule with inject.
func PlanFor(rule *Rule, obj *unstructured.Unstructured) (*Plan, error) {
	if rule == nil || rule.Inject == nil {
		return nil, nil
	}
	in := rule.Inject
	var kind, short string
	switch obj.GroupVersionKind() {
	case GVKInferenceService:
		kind, short = "InferenceService", "isvc"
	case GVKModel:
		kind, short = "Model", "model"
	default:
		return nil, fmt.Errorf("cannot plan policies for a %s", obj.GroupVersionKind())
	}
	p := &Plan{Annotations: map[string]string{
		AnnotationInject: "true", AnnotationIssuer: in.Issuer, AnnotationJWKS: in.JwksURI,
		AnnotationAudiences: strings.Join(in.Audiences, ","), AnnotationRule: rule.Name,
	}}
	meta := generatedMeta(obj, kind, short)
	p.RequestAuthentication = &securityv1.RequestAuthentication{
		TypeMeta:   metav1.TypeMeta{APIVersion: "security.istio.io/v1", Kind: "RequestAuthentication"},
		ObjectMeta: meta,
	}
	p.RequestAuthentication.Spec.JwtRules = []*securityapi.JWTRule{{
		Issuer: in.Issuer, JwksUri: in.JwksURI, Audiences: in.Audiences,
		// Seldon's mesh forwards to the model server, which needs the token as well.
		ForwardOriginalToken: kind == "Model",
	}}
	p.AuthorizationPolicy = &securityv1.AuthorizationPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "security.istio.io/v1", Kind: "AuthorizationPolicy"},
		ObjectMeta: *meta.DeepCopy(),
	}
	p.AuthorizationPolicy.Spec.Action = securityapi.AuthorizationPolicy_DENY
	p.AuthorizationPolicy.Spec.Rules = []*securityapi.Rule{planDenyRule(in, obj, kind)}
	if kind == "InferenceService" {
		sel := &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{LabelKServeISVC: obj.GetName()}}
		p.RequestAuthentication.Spec.Selector = sel
		p.AuthorizationPolicy.Spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: maps.Clone(sel.MatchLabels)}
	}
	return p, nil
}

// planDenyRule denies requests without a principal from the planned issuer (a token from any
// other issuer counts as none). For a Seldon model the rule holds only for requests Seldon
// routes to this model, so other models behind the same mesh Service are left as they were.
func planDenyRule(in *Inject, obj *unstructured.Unstructured, kind string) *securityapi.Rule {
	src := &securityapi.Source{NotRequestPrincipals: []string{in.Issuer + "/*"}}
	if in.AllowSameNamespace {
		src.NotNamespaces = []string{obj.GetNamespace()}
	}
	r := &securityapi.Rule{From: []*securityapi.Rule_From{{Source: src}}}
	if kind == "Model" {
		r.When = []*securityapi.Condition{{Key: "request.headers[" + seldonModelHeader + "]", Values: []string{obj.GetName()}}}
	}
	return r
}

// GeneratedName is the name of the RequestAuthentication and AuthorizationPolicy planned for
// a model of the given kind (InferenceService or Model): deterministic, and within
// Kubernetes' 63-character limit (a hash of the model's name keeps truncated names apart).
func GeneratedName(kind, model string) string {
	short := "isvc"
	if kind == "Model" {
		short = "model"
	}
	name := "modelguard-" + short + "-" + model
	if len(name) > 63 {
		sum := sha256.Sum256([]byte(model))
		name = name[:52] + "-" + hex.EncodeToString(sum[:])[:10]
	}
	return name
}

// generatedMeta names generated objects after their model and ties them to it for garbage
// collection.
func generatedMeta(obj *unstructured.Unstructured, kind, _ string) metav1.ObjectMeta {
	name := GeneratedName(kind, obj.GetName())
	m := metav1.ObjectMeta{Name: name, Namespace: obj.GetNamespace(), Labels: map[string]string{LabelManagedBy: ManagedByValue}}
	if uid := obj.GetUID(); uid != "" {
		controller := true
		m.OwnerReferences = []metav1.OwnerReference{{APIVersion: obj.GetAPIVersion(), Kind: kind, Name: obj.GetName(), UID: uid, Controller: &controller}}
	}
	return m
}

// AnnotationsMatch reports whether the object's modelguard.io/* annotations are exactly the plan's.
func AnnotationsMatch(obj *unstructured.Unstructured, p *Plan) bool {
	got := map[string]string{}
	for k, v := range obj.GetAnnotations() {
		if strings.HasPrefix(k, AnnotationPrefix) {
			got[k] = v
		}
	}
	return maps.Equal(got, p.Annotations)
}

// planFor adds the planned policies of a model to the evaluation when they count: the object
// carries exactly the planned annotations, or the evaluation simulates the mutating webhook.
func (ev *evaluation) planFor(owner any) {
	var u *unstructured.Unstructured
	switch o := owner.(type) {
	case InferenceService:
		u = o.U
	case SeldonModel:
		u = o.U
	default:
		return
	}
	key := u.GetKind() + "/" + u.GetNamespace() + "/" + u.GetName()
	if ev.planned[key] {
		return
	}
	ev.planned[key] = true
	rule := ev.ruleFor(u.GetNamespace())
	p, err := PlanFor(rule, u)
	if err != nil {
		ev.invalid(err)
		return
	}
	if p == nil {
		return
	}
	if u == ev.subject {
		ev.plan = p
	}
	ref := objectRef(u.GetKind(), u.GetNamespace(), u.GetName())
	if !ev.opts.SimulateMutation && !AnnotationsMatch(u, p) {
		ev.add(Finding{Code: CodeAnnotationMismatch, Severity: SeverityWarning, Route: ref,
			Message: fmt.Sprintf("%s: the modelguard.io/* annotations differ from what rule %q plans, so the policies modelguard would generate are not counted", ref, rule.Name),
			Fix:     "Remove the modelguard.io/* annotations and let the mutating webhook set them."})
		return
	}
	if v := ev.opts.view; v != nil && v.plan != nil && v.name == u.GetNamespace() {
		// A relabelling: the plan of the rule the new labels select replaces this one.
		rule = ev.cfg.ruleFor(nsLabels{name: v.name, labels: v.plan})
		if p, err = PlanFor(rule, u); err != nil || p == nil {
			return // no inject under the new rule: the reconciler removes the generated policies
		}
	}
	ev.extraAP = append(ev.extraAP, p.AuthorizationPolicy)
	ev.extraRA = append(ev.extraRA, p.RequestAuthentication)
	ev.add(Finding{Code: CodeInjectPlanned, Severity: SeverityInfo, Route: ref,
		Message: fmt.Sprintf("%s is judged with the RequestAuthentication and AuthorizationPolicy %s/%s that rule %q has modelguard create", ref, u.GetNamespace(), p.AuthorizationPolicy.Name, rule.Name)})
}

// fixFor renders the policies that would cover a target, as YAML a user can apply.
func (ev *evaluation) fixFor(t *target) string {
	var u *unstructured.Unstructured
	switch o := t.owner.(type) {
	case InferenceService:
		u = o.U
	case SeldonModel:
		u = o.U
	}
	if u == nil {
		return "Add a RequestAuthentication for your issuer and a DENY AuthorizationPolicy with `from: [{source: {notRequestPrincipals: [\"*\"]}}]` that select the model's pods."
	}
	rule := &Rule{Name: "fix", Inject: &Inject{Issuer: "<ISSUER>", JwksURI: "<JWKS_URI>"}}
	if r := ev.ruleFor(u.GetNamespace()); r != nil && r.Inject != nil {
		rule.Inject = r.Inject
	}
	key := fixKey(rule.Inject, u)
	if out, ok := fixes.Get(key); ok {
		return out.(string)
	}
	p, err := PlanFor(rule, u)
	if err != nil || p == nil {
		return ""
	}
	out, err := p.YAML()
	if err != nil {
		return ""
	}
	fixes.Add(key, out)
	return out
}

// fixes memoises rendered fixes. Rendering goes through JSON and a YAML parse and emit: in
// the webhook's CPU and allocation profiles it was half of what a denial cost, and the same
// fix is rendered for each finding of a model and again whenever the same object is retried.
// The YAML depends only on what fixKey holds; the cache is a bounded LRU.
var fixes = lru.New(4096)

// fixKey is everything the rendered fix depends on: the model's kind, namespace and name and
// the inject settings (the YAML leaves out owner references, hence the UID).
func fixKey(in *Inject, u *unstructured.Unstructured) string {
	return strings.Join([]string{u.GetKind(), u.GetNamespace(), u.GetName(), in.Issuer, in.JwksURI,
		strings.Join(in.Audiences, ","), strconv.FormatBool(in.AllowSameNamespace)}, "\x00")
}

// YAML renders the planned objects as a YAML stream a user can apply (owner references and
// server-set fields left out).
func (p *Plan) YAML() (string, error) {
	ra, err := readableYAML(p.RequestAuthentication.TypeMeta, p.RequestAuthentication.ObjectMeta, &p.RequestAuthentication.Spec)
	if err != nil {
		return "", err
	}
	ap, err := readableYAML(p.AuthorizationPolicy.TypeMeta, p.AuthorizationPolicy.ObjectMeta, &p.AuthorizationPolicy.Spec)
	if err != nil {
		return "", err
	}
	return ra + "---\n" + ap, nil
}

// readableYAML renders an object the way people write it: apiVersion, kind, metadata, then
// the spec in its API's field order (a plain YAML marshal would sort every key).
func readableYAML(tm metav1.TypeMeta, om metav1.ObjectMeta, spec any) (string, error) {
	js, err := json.Marshal(spec)
	if err != nil {
		return "", fmt.Errorf("rendering spec: %w", err)
	}
	var node yamlv3.Node
	if err := yamlv3.Unmarshal(js, &node); err != nil {
		return "", fmt.Errorf("rendering spec: %w", err)
	}
	blockStyle(&node)
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: %s\nkind: %s\nmetadata:\n  name: %s\n  namespace: %s\n", tm.APIVersion, tm.Kind, om.Name, om.Namespace)
	if len(om.Labels) > 0 {
		b.WriteString("  labels:\n")
		for _, k := range sortedLabelKeys(om.Labels) {
			fmt.Fprintf(&b, "    %s: %s\n", k, om.Labels[k])
		}
	}
	b.WriteString("spec:\n")
	var body strings.Builder
	benc := yamlv3.NewEncoder(&body)
	benc.SetIndent(2)
	if err := benc.Encode(&node); err != nil {
		return "", fmt.Errorf("rendering spec: %w", err)
	}
	for _, line := range strings.Split(strings.TrimRight(body.String(), "\n"), "\n") {
		b.WriteString("  " + line + "\n")
	}
	return b.String(), nil
}

// blockStyle drops JSON's styles (flow collections, quoted strings): the encoder then picks
// block style and quotes only what needs quoting.
func blockStyle(n *yamlv3.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
}

func sortedLabelKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
