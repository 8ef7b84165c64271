package integration_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/modelguard/modelguard/policy"
	testenv "github.com/modelguard/modelguard/test/envtest"
)

// bypassConfig hands namespaces rules by label, as an operator rolling modelguard out does:
// a Warn and an Audit rule, a rule that restricts issuers, one that does not require mTLS,
// two inject rules with different issuers, and a default (Enforce) rule for every namespace
// without the "unguarded" label.
const bypassConfig = `apiVersion: modelguard.io/v1alpha1
kind: GuardConfig
rules:
- {name: sandbox, namespaceSelector: {matchLabels: {bypass.modelguard.io/tier: sandbox}}, mode: Warn}
- {name: observe, namespaceSelector: {matchLabels: {bypass.modelguard.io/tier: observe}}, mode: Audit}
- {name: restricted, namespaceSelector: {matchLabels: {bypass.modelguard.io/tier: restricted}}, allowedIssuers: ["https://issuer.example.com"]}
- {name: plaintext, namespaceSelector: {matchLabels: {bypass.modelguard.io/tier: plaintext}}, requireMTLS: false}
- name: inject
  namespaceSelector: {matchLabels: {bypass.modelguard.io/tier: inject}}
  inject: {issuer: "https://issuer.example.com", jwksUri: "https://issuer.example.com/.well-known/jwks.json", audiences: [models]}
- name: inject-other
  namespaceSelector: {matchLabels: {bypass.modelguard.io/tier: inject-other}}
  inject: {issuer: "https://other-issuer.example.org", jwksUri: "https://other-issuer.example.org/jwks", audiences: [models]}
- name: default
  namespaceSelector: {matchExpressions: [{key: bypass.modelguard.io/unguarded, operator: DoesNotExist}]}
`

const (
	tierLabel      = "bypass.modelguard.io/tier"
	unguardedLabel = "bypass.modelguard.io/unguarded"
)

// bypassCase is one scenario a determined namespace owner would try. Its namespace (and the
// second one, when the scenario needs two) is its own. setup must be admitted; then each step
// is refused with a message naming what it breaks, or admitted where admitting is right (the
// step says why). After the last step, no model of the case may be exposed and uncovered.
type bypassCase struct {
	name    string
	labels  map[string]string // of the case's namespace
	ns2     map[string]string // labels of a second namespace; nil: none
	setup   []string          // fixture templates under testdata/bypass
	covered bool              // after setup, InferenceService "sample" is exposed and covered
	steps   []bypassStep
	// gap, when set, names a bypass this suite found and that is not fixed yet: the case is
	// skipped with it, and runs as written once the gap is closed.
	gap string
}

type bypassStep struct {
	what    string
	do      func(ctx context.Context, c *bypassCtx) error
	refused []string // substrings of the refusal; none: the step must be admitted
	why     string   // for an admitted step: why admitting is right
	check   func(t *testing.T, c *bypassCtx)
}

// refuse marks a step as one that must be refused with these message parts.
func refuse(s bypassStep, parts ...string) bypassStep {
	s.refused = parts
	return s
}

// admit marks a step as one that must be admitted, and says why that is right.
func admit(s bypassStep, why string) bypassStep {
	s.why = why
	return s
}

// bypassCtx is one running case.
type bypassCtx struct {
	t       *testing.T
	b       *bypassSuite
	ns, ns2 string
}

// bypassSuite is the API server and modelguard the cases share.
type bypassSuite struct {
	env *testenv.Env
	mg  *modelguard
	// mutator is the MutatingWebhookConfiguration while a case has taken it out.
	mutator *admissionregistrationv1.MutatingWebhookConfiguration
}

const bypassFieldManager = "bypass-suite"

// TestBypass runs the bypass suite of issue 7 through the real kube-apiserver with
// modelguard's webhooks registered.
func TestBypass(t *testing.T) {
	began := time.Now()
	env := startEnv(t)
	mg := startModelguard(t, env, bypassConfig)
	b := &bypassSuite{env: env, mg: mg}
	ready := time.Since(began)
	c0 := &bypassCtx{t: t, b: b}
	require.NoError(t, c0.applyFile(t.Context(), "base.yaml"))

	ran := time.Now()
	for i, bc := range bypassCases() {
		t.Run(bc.name, func(t *testing.T) {
			start := time.Now()
			b.run(t, fmt.Sprintf("bp-%02d", i), bc)
			t.Logf("%s", time.Since(start).Round(time.Millisecond))
		})
	}
	t.Logf("bypass suite: API server and modelguard ready in %s, %d cases in %s", ready.Round(time.Millisecond),
		len(bypassCases()), time.Since(ran).Round(time.Millisecond))
}

func (b *bypassSuite) run(t *testing.T, ns string, bc bypassCase) {
	if bc.gap != "" {
		t.Skipf("KNOWN GAP, not fixed yet: %s", bc.gap)
	}
	ctx := t.Context()
	c := &bypassCtx{t: t, b: b, ns: ns}
	require.NoError(t, c.namespace(ctx, ns, bc.labels))
	if bc.ns2 != nil {
		c.ns2 = ns + "-b"
		require.NoError(t, c.namespace(ctx, c.ns2, bc.ns2))
	}
	for _, f := range bc.setup {
		require.NoError(t, c.applyFile(ctx, f), "setup %s", f)
	}
	if bc.covered {
		v, ok := c.verdict(ctx, ns, "sample")
		require.True(t, ok, "no InferenceService %s/sample after the setup", ns)
		require.True(t, v.Exposed, "the setup must expose the model")
		require.Equal(t, "allowed", v.Decision(), "the setup must cover the model: %v", v.Findings)
	}
	for _, s := range bc.steps {
		err := s.do(ctx, c)
		if len(s.refused) > 0 {
			require.Error(t, err, "BYPASS: %s was admitted", s.what)
			t.Logf("%s: refused: %s", s.what, clip(err.Error(), 400))
			for _, part := range s.refused {
				assert.Contains(t, err.Error(), c.expand(part), "%s: the refusal should say so", s.what)
			}
		} else {
			require.NoError(t, err, "%s was refused, but admitting it is right: %s", s.what, s.why)
			t.Logf("%s: admitted (%s)", s.what, s.why)
		}
		if s.check != nil {
			s.check(t, c)
		}
	}
	for _, n := range []string{c.ns, c.ns2} {
		if n != "" {
			c.noExposedGap(ctx, n)
		}
	}
}

// expand fills a fixture or message template with the case's namespaces.
func (c *bypassCtx) expand(s string) string {
	return strings.NewReplacer("${NS}", c.ns, "${NS2}", c.ns2).Replace(s)
}

func (c *bypassCtx) load(file string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(filepath.Join("testdata", "bypass", file))
	if err != nil {
		return nil, err
	}
	return decodeObjects([]byte(c.expand(string(data))))
}

func (c *bypassCtx) applyFile(ctx context.Context, file string) error {
	objs, err := c.load(file)
	if err != nil {
		return err
	}
	return c.apply(ctx, objs...)
}

// apply server-side applies the objects (a later apply of the same object drops the fields it
// no longer holds, like kubectl apply), then waits until modelguard's mesh state holds them.
func (c *bypassCtx) apply(ctx context.Context, objs ...*unstructured.Unstructured) error {
	cl := c.b.env.Client
	for _, u := range objs {
		if err := cl.Apply(ctx, client.ApplyConfigurationFromUnstructured(u.DeepCopy()), client.FieldOwner(bypassFieldManager), client.ForceOwnership); err != nil {
			return fmt.Errorf("%s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	for _, u := range objs {
		c.waitHeld(ctx, u.GroupVersionKind(), u.GetNamespace(), u.GetName())
	}
	return nil
}

// waitHeld waits until modelguard's mesh state holds the object as the API server stores it:
// the informers apply writes asynchronously, and a step judged against a mesh state that
// lags would pass or fail for the wrong reason.
func (c *bypassCtx) waitHeld(ctx context.Context, gvk schema.GroupVersionKind, ns, name string) {
	c.t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	require.NoError(c.t, c.b.env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, u))
	rv := u.GetResourceVersion()
	testenv.Eventually(c.t, 30*time.Second, func(context.Context) error {
		snap, err := c.b.mg.server.Mesh.Snapshot()
		if err != nil {
			return err
		}
		if !snap.Holds(gvk.Kind, ns, name, rv) {
			return fmt.Errorf("the mesh state does not hold %s %s/%s at resourceVersion %s yet", gvk.Kind, ns, name, rv)
		}
		return nil
	})
}

func (c *bypassCtx) namespace(ctx context.Context, name string, labels map[string]string) error {
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(name)
	ns.SetLabels(labels)
	return c.apply(ctx, ns)
}

// verdict judges InferenceService ns/name as stored, against modelguard's live mesh state.
func (c *bypassCtx) verdict(ctx context.Context, ns, name string) (policy.Verdict, bool) {
	c.t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(testenv.InferenceServiceGVK)
	err := c.b.env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, u)
	if apierrors.IsNotFound(err) {
		return policy.Verdict{}, false
	}
	require.NoError(c.t, err)
	snap, err := c.b.mg.server.Mesh.Snapshot()
	require.NoError(c.t, err)
	return policy.Evaluate(c.b.mg.server.Config.Get(), snap, u, policy.Options{}), true
}

// noExposedGap is the suite's invariant: whatever was admitted, no InferenceService of the
// namespace is exposed with a gap (the namespaces of these cases are all in Enforce).
func (c *bypassCtx) noExposedGap(ctx context.Context, ns string) {
	c.t.Helper()
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(testenv.InferenceServiceGVK.GroupVersion().WithKind("InferenceServiceList"))
	require.NoError(c.t, c.b.env.Client.List(ctx, list, client.InNamespace(ns)))
	for i := range list.Items {
		name := list.Items[i].GetName()
		v, ok := c.verdict(ctx, ns, name)
		if !ok || !v.Exposed {
			continue
		}
		for _, f := range v.Findings {
			assert.NotEqual(c.t, policy.SeverityError, f.Severity, "BYPASS: InferenceService %s/%s ends exposed and uncovered: %s", ns, name, f)
		}
	}
}

// Steps.

func apply(file string) bypassStep {
	return bypassStep{what: "apply " + file, do: func(ctx context.Context, c *bypassCtx) error { return c.applyFile(ctx, file) }}
}

var bypassKinds = map[string]schema.GroupVersionKind{
	"AuthorizationPolicy":   {Group: "security.istio.io", Version: "v1", Kind: "AuthorizationPolicy"},
	"RequestAuthentication": {Group: "security.istio.io", Version: "v1", Kind: "RequestAuthentication"},
	"PeerAuthentication":    {Group: "security.istio.io", Version: "v1", Kind: "PeerAuthentication"},
	"InferenceService":      testenv.InferenceServiceGVK,
}

// remove deletes an object of the case's namespace.
func remove(kind, name string) bypassStep {
	return removeIn("", kind, name)
}

// removeIn deletes an object of namespace ns ("": the case's).
func removeIn(ns, kind, name string) bypassStep {
	return bypassStep{what: "delete " + kind + " " + name, do: func(ctx context.Context, c *bypassCtx) error {
		if ns == "" {
			ns = c.ns
		}
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(bypassKinds[kind])
		u.SetNamespace(ns)
		u.SetName(name)
		if err := c.b.env.Client.Delete(ctx, u); err != nil {
			return err
		}
		testenv.Eventually(c.t, 30*time.Second, func(context.Context) error {
			snap, err := c.b.mg.server.Mesh.Snapshot()
			if err == nil && snap.Holds(kind, ns, name, "") {
				err = errors.New("the mesh state still holds it")
			}
			return err
		})
		return nil
	}}
}

// dropAnnotations removes annotations of the case's InferenceService "sample" (a JSON merge
// patch, like kubectl annotate KEY-).
func dropAnnotations(keys ...string) bypassStep {
	return bypassStep{what: "remove the annotations " + strings.Join(keys, ", "), do: func(ctx context.Context, c *bypassCtx) error {
		nulls := make([]string, len(keys))
		for i, k := range keys {
			nulls[i] = fmt.Sprintf("%q:null", k)
		}
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(testenv.InferenceServiceGVK)
		u.SetNamespace(c.ns)
		u.SetName("sample")
		patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{`+strings.Join(nulls, ",")+`}}}`))
		if err := c.b.env.Client.Patch(ctx, u, patch); err != nil {
			return err
		}
		c.waitHeld(ctx, u.GroupVersionKind(), c.ns, "sample")
		return nil
	}}
}

// label relabels the case's namespace with kubectl, as a cluster administrator would.
func label(args ...string) bypassStep {
	return bypassStep{what: "kubectl label namespace " + strings.Join(args, " "), do: func(ctx context.Context, c *bypassCtx) error {
		out, errOut, err := c.b.env.Kubectl(c.t, append([]string{"label", "namespace", c.ns, "--overwrite"}, args...)...)
		if err != nil {
			return fmt.Errorf("%w: %s%s", err, out, errOut)
		}
		ns := &unstructured.Unstructured{}
		ns.SetAPIVersion("v1")
		ns.SetKind("Namespace")
		c.waitHeld(ctx, ns.GroupVersionKind(), "", c.ns)
		return nil
	}}
}

// labelVia relabels the case's namespace through a subresource (status or finalize), which
// takes metadata changes too.
func labelVia(sub, key, value string) bypassStep {
	return bypassStep{what: fmt.Sprintf("label namespace %s=%s through namespaces/%s", key, value, sub), do: func(ctx context.Context, c *bypassCtx) error {
		ns := &corev1.Namespace{}
		if err := c.b.env.Client.Get(ctx, types.NamespacedName{Name: c.ns}, ns); err != nil {
			return err
		}
		if value == "" {
			delete(ns.Labels, key)
		} else {
			ns.Labels[key] = value
		}
		if err := c.b.env.Client.SubResource(sub).Update(ctx, ns); err != nil {
			return err
		}
		c.waitHeld(ctx, corev1.SchemeGroupVersion.WithKind("Namespace"), "", c.ns)
		return nil
	}}
}

// annotateNamespace annotates the case's namespace and checks that modelguard was not asked.
func annotateNamespace(kv string) bypassStep {
	return bypassStep{what: "kubectl annotate namespace " + kv, do: func(ctx context.Context, c *bypassCtx) error {
		before := namespaceDecisions(c.t, c.b.mg)
		if out, errOut, err := c.b.env.Kubectl(c.t, "annotate", "namespace", c.ns, kv); err != nil {
			return fmt.Errorf("%w: %s%s", err, out, errOut)
		}
		assert.Equal(c.t, before, namespaceDecisions(c.t, c.b.mg), "a namespace write that leaves the labels alone is not sent to modelguard")
		return nil
	}}
}

// namespaceDecisions counts modelguard's decisions on Namespaces so far.
func namespaceDecisions(t *testing.T, mg *modelguard) float64 {
	families, err := mg.registry.Gather()
	require.NoError(t, err)
	total := 0.0
	for _, f := range families {
		if f.GetName() != "modelguard_admission_decisions_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if hasLabels(m, map[string]string{"kind": "Namespace"}) {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

// annotationsOfSample checks the stored modelguard.io/* annotations of InferenceService sample.
func annotationsOfSample(want map[string]string) func(t *testing.T, c *bypassCtx) {
	return func(t *testing.T, c *bypassCtx) {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(testenv.InferenceServiceGVK)
		require.NoError(t, c.b.env.Client.Get(t.Context(), types.NamespacedName{Namespace: c.ns, Name: "sample"}, u))
		got := map[string]string{}
		for k, v := range u.GetAnnotations() {
			if strings.HasPrefix(k, policy.AnnotationPrefix) {
				got[k] = v
			}
		}
		assert.Equal(t, want, got, "the stored annotations are the plan")
	}
}

// plannedAnnotations is what rule "inject" of bypassConfig plans for an InferenceService.
var plannedAnnotations = map[string]string{
	policy.AnnotationInject: "true", policy.AnnotationIssuer: "https://issuer.example.com",
	policy.AnnotationJWKS: "https://issuer.example.com/.well-known/jwks.json", policy.AnnotationAudiences: "models",
	policy.AnnotationRule: "inject",
}

// mutator takes modelguard's mutating webhook out (as an outage would: its failurePolicy is
// Ignore, so requests then pass unmutated) or puts it back, and waits until the API server
// acts accordingly. The case's cleanup puts it back in any event.
func mutator(on bool) bypassStep {
	what := "take the mutating webhook out (an outage: failurePolicy Ignore)"
	if on {
		what = "put the mutating webhook back"
	}
	return bypassStep{what: what, why: "setting up the scenario", do: func(ctx context.Context, c *bypassCtx) error {
		if on {
			c.b.restoreMutator(c.t)
			return nil
		}
		mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := c.b.env.Client.Get(ctx, types.NamespacedName{Name: "modelguard"}, mwc); err != nil {
			return err
		}
		if err := c.b.env.Client.Delete(ctx, mwc); err != nil {
			return err
		}
		c.b.mutator = mwc
		c.t.Cleanup(func() { c.b.restoreMutator(c.t) })
		c.waitMutation(false)
		return nil
	}}
}

func (b *bypassSuite) restoreMutator(t *testing.T) {
	if b.mutator == nil {
		return
	}
	mwc := b.mutator.DeepCopy()
	mwc.ResourceVersion, mwc.UID = "", ""
	require.NoError(t, b.env.Client.Create(context.Background(), mwc))
	b.mutator = nil
	(&bypassCtx{t: t, b: b, ns: "bp-mutation-probe"}).waitMutation(true)
}

// waitMutation waits until a dry-run creation of a probe InferenceService in a namespace of
// rule "inject" comes back annotated (on) or not (off).
func (c *bypassCtx) waitMutation(on bool) {
	c.t.Helper()
	probeNS := "bp-mutation-probe"
	require.NoError(c.t, c.namespace(c.t.Context(), probeNS, map[string]string{tierLabel: "inject"}))
	testenv.Eventually(c.t, time.Minute, func(ctx context.Context) error {
		objs, err := (&bypassCtx{t: c.t, b: c.b, ns: probeNS}).load("isvc-private.yaml")
		if err != nil {
			return err
		}
		probe := objs[0]
		if err := c.b.env.Client.Create(ctx, probe, client.DryRunAll); err != nil {
			return err
		}
		if got := probe.GetAnnotations()[policy.AnnotationInject] == "true"; got != on {
			return fmt.Errorf("mutation is %v, want %v", got, on)
		}
		return nil
	})
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func bypassCases() []bypassCase {
	model := []string{"workload.yaml", "policies-deny.yaml", "isvc-published.yaml"} // covered at the model
	private := []string{"workload.yaml", "isvc-private.yaml"}                       // not exposed, no JWT policy
	paths := []string{"workload.yaml", "isvc-private.yaml", "policies-deny-v2.yaml", "vs-path-v2.yaml"}
	leaves := "this change would leave InferenceService ${NS}/sample uncovered"
	weakened := func(name string, s bypassStep, parts ...string) bypassCase {
		return bypassCase{name: name, setup: model, covered: true, steps: []bypassStep{refuse(s, append([]string{leaves}, parts...)...)}}
	}
	routeTrick := func(name, file string) bypassCase {
		return bypassCase{name: name, setup: paths, covered: true,
			steps: []bypassStep{refuse(apply(file), "[JWT_ROUTE_UNCOVERED]", "VirtualService ${NS}/")}}
	}
	policyTrick := func(name, file string) bypassCase {
		return bypassCase{name: name, setup: paths, covered: true,
			steps: []bypassStep{refuse(apply(file), leaves, "[JWT_ROUTE_UNCOVERED]")}}
	}
	return []bypassCase{
		// Updates of the objects the validator judges.
		{name: "UPDATE removes cluster-local from an InferenceService", setup: private,
			steps: []bypassStep{refuse(apply("isvc-published.yaml"), "[JWT_ROUTE_UNCOVERED]", "gateway knative-serving/knative-ingress-gateway")}},
		{name: "UPDATE adds an external gateway to a mesh-only VirtualService", setup: append(private, "vs-mesh-only.yaml"),
			steps: []bypassStep{refuse(apply("vs-add-public-gateway.yaml"), "[JWT_ROUTE_UNCOVERED]", "gateway istio-system/public-gateway")}},
		{name: "UPDATE changes a route's destination to the model", setup: append(private, "vs-app-to-echo.yaml"),
			steps: []bypassStep{refuse(apply("vs-app-to-model.yaml"), "[JWT_ROUTE_UNCOVERED]", "VirtualService ${NS}/app")}},
		{name: "UPDATE mirrors a route's requests to the model", setup: append(private, "vs-app-to-echo.yaml"),
			steps: []bypassStep{refuse(apply("vs-app-mirror-to-model.yaml"), "[JWT_ROUTE_UNCOVERED]", "VirtualService ${NS}/app http[0] mirror")}},
		{name: "UPDATE turns a route into raw TCP to the model", setup: append(private, "vs-app-to-echo.yaml"),
			steps: []bypassStep{refuse(apply("vs-app-tcp-to-model.yaml"), "[TCP_ROUTE_TO_MODEL]", "VirtualService ${NS}/app tcp[0]")}},

		// Order of application.
		{name: "VirtualService applied after the InferenceService", setup: private,
			steps: []bypassStep{refuse(apply("vs-public.yaml"), "[JWT_ROUTE_UNCOVERED]")}},
		{name: "VirtualService applied before the InferenceService", setup: []string{"workload.yaml"},
			steps: []bypassStep{
				admit(apply("vs-public.yaml"), "sample-predictor is no model's Service yet: the route exposes nothing modelguard knows"),
				refuse(apply("isvc-private.yaml"), "modelguard denied InferenceService ${NS}/sample", "[JWT_ROUTE_UNCOVERED]", "VirtualService ${NS}/sample"),
			}},

		// Hosts and gateways.
		{name: "destination as short name, FQDN, name.ns, name.ns.svc, KServe's other Services, odd spelling", setup: private,
			steps: []bypassStep{
				refuse(apply("vs-public.yaml"), "[JWT_ROUTE_UNCOVERED]"),
				refuse(apply("vs-fqdn.yaml"), "[JWT_ROUTE_UNCOVERED]"),
				refuse(apply("vs-partial-names.yaml"), "[JWT_ROUTE_UNCOVERED]", "prefix /a/", "prefix /b/", "prefix /c/", "prefix /d/"),
				refuse(apply("vs-odd-spelling.yaml"), "[JWT_ROUTE_UNCOVERED]"),
			}},
		{name: "hosts * escape a DENY scoped to the model's host", setup: []string{"workload.yaml", "isvc-private.yaml", "policies-deny-host.yaml", "vs-public.yaml"}, covered: true,
			steps: []bypassStep{
				refuse(apply("vs-star-hosts.yaml"), "[JWT_ROUTE_UNCOVERED]", "host *"),
				refuse(apply("vs-wildcard-host.yaml"), "[JWT_ROUTE_UNCOVERED]", "host *.${NS}.example.com"),
			}},
		{name: "VirtualService in another namespace than the model", setup: private, ns2: map[string]string{},
			steps: []bypassStep{refuse(apply("vs-cross-namespace.yaml"), "modelguard denied VirtualService ${NS2}/borrowed-model", "[JWT_ROUTE_UNCOVERED]")}},
		// Bypass found: the VirtualService was judged by its own namespace's rule only (Warn:
		// admitted with warnings; no rule: not judged at all; no mTLS requirement: a plaintext
		// model let through). Fixed in the engine (adoptStricterRule; policy cases
		// rule-stricter-target-namespace, rule-target-namespace-own-has-none and
		// rule-target-namespace-requires-mtls).
		{name: "VirtualService in a Warn namespace exposes a model of an Enforce namespace", setup: private, ns2: map[string]string{tierLabel: "sandbox"},
			steps: []bypassStep{refuse(apply("vs-cross-namespace.yaml"), `modelguard denied VirtualService ${NS2}/borrowed-model (rule "default", Enforce)`, "[JWT_ROUTE_UNCOVERED]")}},
		{name: "VirtualService in a namespace no rule guards exposes a model of an Enforce namespace", setup: private, ns2: map[string]string{unguardedLabel: "yes"},
			steps: []bypassStep{refuse(apply("vs-cross-namespace.yaml"), `(rule "default", Enforce)`, "[JWT_ROUTE_UNCOVERED]")}},
		{name: "VirtualService in a namespace without mTLS requirement exposes a plaintext model of a namespace that requires it",
			setup: []string{"workload-plaintext.yaml", "policies-deny.yaml", "isvc-private.yaml"}, ns2: map[string]string{tierLabel: "plaintext"},
			steps: []bypassStep{refuse(apply("vs-cross-namespace.yaml"), `(rule "default", Enforce)`, "[MTLS_NOT_STRICT]")}},
		{name: "gateway named in another namespace (other-ns/gw)", setup: private,
			steps: []bypassStep{refuse(apply("vs-other-gateway.yaml"), "[JWT_ROUTE_UNCOVERED]", "gateway bp-gateways/other-gw")}},
		{name: "covered at one gateway only: another gateway, a match's gateway, gateways that do not exist", setup: append(private, "vs-guarded-gateway.yaml"), covered: true,
			steps: []bypassStep{
				refuse(apply("vs-guarded-and-other-gateway.yaml"), "[JWT_ROUTE_UNCOVERED]", "gateway bp-gateways/other-gw"),
				refuse(apply("vs-match-gateway.yaml"), "[JWT_ROUTE_UNCOVERED]", "gateway bp-gateways/other-gw"),
				refuse(apply("vs-ghost-gateways.yaml"), "[JWT_ROUTE_UNCOVERED]", "gateway nowhere/ghost-gw", "gateway ${NS}/ghost-gw"),
				// The gateway's own policies, in the mesh root namespace, guard the model too.
				refuse(apply("gateway-ap-audit.yaml"), "this change would leave InferenceService ${NS}/sample uncovered", "[JWT_ROUTE_UNCOVERED]"),
				refuse(removeIn("istio-system", "AuthorizationPolicy", "guarded-gateway-require-jwt"), "this change would leave InferenceService ${NS}/sample uncovered"),
				// (Last: the gateway is no other case's.)
				admit(removeIn("istio-system", "RequestAuthentication", "guarded-gateway-jwt"),
					"without it no request has a principal at the gateway, whose DENY then refuses every request: unreachable, not exposed"),
			}},
		{name: "two VirtualServices combine: the delegate applied after its root", setup: append(private, "vs-delegate-root.yaml"),
			steps: []bypassStep{refuse(apply("vs-delegate-child.yaml"), "[JWT_ROUTE_UNCOVERED]", "VirtualService ${NS}/root http[0] -> VirtualService ${NS}/child")}},
		{name: "two VirtualServices combine: the root applied after its delegate", setup: append(private, "vs-delegate-child.yaml"),
			steps: []bypassStep{refuse(apply("vs-delegate-root.yaml"), "[JWT_ROUTE_UNCOVERED]", "VirtualService ${NS}/root http[0] -> VirtualService ${NS}/child")}},
		{name: "two VirtualServices for one host combine: a catch-all next to the covered /v2/ route", setup: paths, covered: true,
			steps: []bypassStep{refuse(apply("vs-path-same-host-root.yaml"), "[JWT_ROUTE_UNCOVERED]", "VirtualService ${NS}/catch-all")}},

		// Older API versions.
		{name: "VirtualService as networking.istio.io/v1alpha3 and v1beta1", setup: private,
			steps: []bypassStep{
				refuse(apply("vs-v1alpha3.yaml"), "[JWT_ROUTE_UNCOVERED]", "VirtualService ${NS}/old-api"),
				refuse(apply("vs-v1beta1.yaml"), "[JWT_ROUTE_UNCOVERED]", "VirtualService ${NS}/beta-api"),
			}},
		weakened("security.istio.io/v1beta1 AuthorizationPolicy: DENY to AUDIT", apply("ap-audit-v1beta1.yaml"), "[JWT_ROUTE_UNCOVERED]"),
		weakened("security.istio.io/v1beta1 PeerAuthentication: PERMISSIVE", apply("pa-permissive-v1beta1.yaml"), "[MTLS_NOT_STRICT]"),
		weakened("networking.istio.io/v1alpha3 DestinationRule from another namespace: TLS DISABLE for *.ns", apply("dr-wildcard-disable-v1alpha3.yaml"), "[MTLS_DESTINATIONRULE_DISABLE]"),

		// Weakening after admission: the covering AuthorizationPolicy.
		weakened("covering DENY gets notPaths", apply("ap-notpaths.yaml"), "[JWT_ROUTE_UNCOVERED]"),
		weakened("covering DENY gets a when that narrows it", apply("ap-when-header.yaml"), "[JWT_ROUTE_UNCOVERED]"),
		weakened("covering DENY turned AUDIT", apply("ap-audit.yaml"), "[JWT_ROUTE_UNCOVERED]"),
		weakened("covering DENY selects other pods", apply("ap-selector.yaml"), "[JWT_ROUTE_UNCOVERED]"),
		weakened("covering DENY marked istio.io/dry-run", apply("ap-dry-run.yaml"), "[JWT_ROUTE_UNCOVERED]"),
		weakened("covering DENY deleted", remove("AuthorizationPolicy", "require-jwt"), "[JWT_ROUTE_UNCOVERED]"),
		// The RequestAuthentication: without it no request has a principal, so the DENY of
		// requests without one refuses everything. Nothing is exposed; the model is only
		// unreachable, which its own verdict reports (MODEL_UNREACHABLE, a warning).
		{name: "RequestAuthentication's jwtRules deleted", setup: model, covered: true,
			steps: []bypassStep{admit(apply("ra-no-rules.yaml"), "tokenless requests are still denied by the DENY; the model just becomes unreachable")}},
		{name: "RequestAuthentication deleted", setup: model, covered: true,
			steps: []bypassStep{admit(remove("RequestAuthentication", "sample-jwt"), "tokenless requests are still denied by the DENY; the model just becomes unreachable")}},
		{name: "RequestAuthentication for an issuer the rule does not allow", labels: map[string]string{tierLabel: "restricted"}, setup: model, covered: true,
			steps: []bypassStep{refuse(apply("ra-other-issuer.yaml"), leaves, "[ISSUER_NOT_ALLOWED]", "https://partner.example.org")}},
		// mTLS.
		weakened("PeerAuthentication PERMISSIVE", apply("pa-permissive.yaml"), "[MTLS_NOT_STRICT]"),
		weakened("PeerAuthentication deleted", remove("PeerAuthentication", "default"), "[MTLS_NOT_STRICT]"),
		weakened("portLevelMtls PERMISSIVE override", apply("pa-port-permissive.yaml"), "[MTLS_PORT_OVERRIDE]", "port 8080: PERMISSIVE"),
		weakened("portLevelMtls DISABLE override", apply("pa-port-disable.yaml"), "[MTLS_PORT_OVERRIDE]", "port 8080: DISABLE"),
		weakened("DestinationRule with TLS DISABLE", apply("dr-disable.yaml"), "[MTLS_DESTINATIONRULE_DISABLE]"),
		// Broad ALLOW policies.
		{name: "broad ALLOW next to a covering DENY", setup: model, covered: true,
			steps: []bypassStep{admit(apply("ap-allow-all.yaml"), "Istio evaluates DENY before ALLOW: the DENY still refuses every tokenless request")}},
		{name: "broad ALLOW in the namespace of a model covered by ALLOW policies", setup: []string{"workload.yaml", "policies-allow.yaml", "isvc-published.yaml"}, covered: true,
			steps: []bypassStep{refuse(apply("ap-allow-all.yaml"), leaves, "[JWT_ROUTE_UNCOVERED]")}},
		{name: "broad ALLOW in the mesh root namespace", setup: []string{"workload.yaml", "policies-allow.yaml", "isvc-published.yaml"}, covered: true,
			steps: []bypassStep{refuse(apply("ap-allow-all-root.yaml"), leaves, "[JWT_ROUTE_UNCOVERED]")}},

		// modelguard.io/* annotations set by hand, under a rule with inject. With the mutating
		// webhook up they are overwritten to the plan; with it out (an outage), the validator
		// must not count annotations that differ from the plan.
		{name: "annotations naming another issuer (mutating webhook up)", labels: map[string]string{tierLabel: "inject"}, setup: []string{"workload.yaml"},
			steps: []bypassStep{func() bypassStep {
				s := admit(apply("isvc-forged-issuer.yaml"), "the mutating webhook overwrites them with the plan, which covers the model")
				s.check = annotationsOfSample(plannedAnnotations)
				return s
			}()}},
		{name: `annotation inject: "false" (mutating webhook up)`, labels: map[string]string{tierLabel: "inject"}, setup: []string{"workload.yaml"},
			steps: []bypassStep{func() bypassStep {
				s := admit(apply("isvc-inject-false.yaml"), "the mutating webhook overwrites it with the plan, which covers the model")
				s.check = annotationsOfSample(plannedAnnotations)
				return s
			}()}},
		{name: "annotations removed on UPDATE (mutating webhook up)", labels: map[string]string{tierLabel: "inject"}, setup: []string{"workload.yaml", "isvc-published.yaml"}, covered: true,
			steps: []bypassStep{func() bypassStep {
				s := admit(dropAnnotations(policy.AnnotationInject, policy.AnnotationIssuer), "the mutating webhook sets them again")
				s.check = annotationsOfSample(plannedAnnotations)
				return s
			}()}},
		{name: "annotations by hand while the mutating webhook is out", labels: map[string]string{tierLabel: "inject"}, setup: []string{"workload.yaml", "isvc-published.yaml"}, covered: true,
			steps: []bypassStep{
				mutator(false),
				refuse(dropAnnotations(policy.AnnotationInject, policy.AnnotationIssuer), "[ANNOTATIONS_DIFFER_FROM_PLAN]", "[JWT_ROUTE_UNCOVERED]"),
				refuse(apply("isvc-forged-issuer.yaml"), "[ANNOTATIONS_DIFFER_FROM_PLAN]", "[JWT_ROUTE_UNCOVERED]"),
				refuse(apply("isvc-inject-false.yaml"), "[ANNOTATIONS_DIFFER_FROM_PLAN]", "[JWT_ROUTE_UNCOVERED]"),
				admit(apply("isvc-exact-plan.yaml"), "annotations equal to the plan count: the reconciler creates exactly the planned policies"),
				mutator(true),
			}},

		// Relabelling the namespace so that a laxer rule applies. Bypass found: namespace
		// updates were not sent to modelguard at all. Fixed: the guard receives them and the
		// engine judges them (policy.Uncovers, relabelUncovers; TestUncoversRelabel*).
		{name: "relabel to a Warn rule", setup: model, covered: true,
			steps: []bypassStep{func() bypassStep {
				s := refuse(label(tierLabel+"=sandbox"), "[NAMESPACE_RULE_WEAKENED]",
					`relabelling namespace ${NS} would make rule "sandbox" (Warn) apply to exposed InferenceService ${NS}/sample instead of rule "default" (Enforce): mode Warn instead of Enforce`)
				s.check = func(t *testing.T, c *bypassCtx) {
					lines := c.b.mg.audit.lines(t)
					require.NotEmpty(t, lines)
					l := lines[len(lines)-1]
					assert.Equal(t, "Namespace", l["kind"])
					assert.Equal(t, "UPDATE", l["operation"])
					assert.Equal(t, c.ns, l["name"])
					assert.Equal(t, "denied", l["decision"])
					assert.Equal(t, "default", l["rule"])
					assert.Equal(t, []any{"NAMESPACE_RULE_WEAKENED"}, l["codes"])
					assert.Positive(t, namespaceDecisions(t, c.b.mg))
				}
				return s
			}()}},
		{name: "relabel through the status and finalize subresources", setup: model, covered: true,
			steps: []bypassStep{
				refuse(labelVia("status", tierLabel, "sandbox"), "[NAMESPACE_RULE_WEAKENED]", `rule "sandbox" (Warn)`),
				refuse(labelVia("finalize", tierLabel, "observe"), "[NAMESPACE_RULE_WEAKENED]", `rule "observe" (Audit)`),
				admit(labelVia("finalize", "team", "ml"), "the same rule still applies"),
			}},
		// The guard's match condition: namespace writes that leave the labels alone (the
		// namespace controller's, annotation edits) never reach modelguard.
		{name: "namespace annotated: not sent to modelguard", setup: model, covered: true,
			steps: []bypassStep{admit(annotateNamespace("owner=ml-team"), "annotations choose no rule")}},
		{name: "relabel to an Audit rule", setup: model, covered: true,
			steps: []bypassStep{refuse(label(tierLabel+"=observe"), "[NAMESPACE_RULE_WEAKENED]", `rule "observe" (Audit)`, "mode Audit instead of Enforce")}},
		{name: "relabel to a rule that does not require mTLS", setup: model, covered: true,
			steps: []bypassStep{refuse(label(tierLabel+"=plaintext"), "[NAMESPACE_RULE_WEAKENED]", `rule "plaintext" (Enforce)`, "mTLS no longer required")}},
		{name: "relabel out of every rule", setup: model, covered: true,
			steps: []bypassStep{refuse(label(unguardedLabel+"=yes"), "[NAMESPACE_RULE_WEAKENED]", "no rule would guard the namespace")}},
		{name: "relabel to an inject rule with another issuer", labels: map[string]string{tierLabel: "inject"}, setup: []string{"workload.yaml", "isvc-published.yaml"}, covered: true,
			steps: []bypassStep{refuse(label(tierLabel+"=inject-other"), "[NAMESPACE_RULE_WEAKENED]", `rule "inject-other" (Enforce)`,
				"tokens of issuer https://other-issuer.example.org instead of https://issuer.example.com")}},
		{name: "relabel from an inject rule to a rule without inject", labels: map[string]string{tierLabel: "inject"}, setup: []string{"workload.yaml", "isvc-published.yaml"}, covered: true,
			steps: []bypassStep{refuse(label(tierLabel+"-"), "[NAMESPACE_RULE_WEAKENED]",
				`the policies rule "default" (Enforce) plans in place of those of rule "inject" would leave it uncovered`, "[JWT_ROUTE_UNCOVERED]")}},
		{name: "relabel with an unrelated label", setup: model, covered: true,
			steps: []bypassStep{admit(label("team=ml"), "the same rule still applies")}},
		{name: "relabel to a stricter rule", setup: model, covered: true,
			steps: []bypassStep{admit(label(tierLabel+"=restricted"), "the new rule demands more (allowedIssuers), and the model meets it")}},
		// Making a namespace a sandbox before anything in it is exposed is how the operator's
		// Warn rule is meant to be used; who may label namespaces (cluster-scoped RBAC) is the
		// boundary there. Whatever is exposed afterwards is judged by the sandbox rule.
		{name: "relabel a namespace that exposes nothing", setup: private,
			steps: []bypassStep{admit(label(tierLabel+"=sandbox"), "no exposed model loses its rule")}},

		// Mesh state the webhooks do not receive at all. Both are refused by nothing today;
		// the model's own verdict reports them at its next update.
		{name: "LoadBalancer Service selecting the model's pods", setup: append(private, "vs-guarded-gateway.yaml"), covered: true,
			gap:   "Services are not sent to modelguard: a LoadBalancer/NodePort Service (or externalIPs) exposes the pods past every gateway (DIRECT_EXPOSURE_UNCOVERED) unrefused",
			steps: []bypassStep{refuse(apply("svc-loadbalancer.yaml"), "[DIRECT_EXPOSURE_UNCOVERED]")}},
		{name: "Gateway moved to the pods of an unguarded gateway", setup: append(private, "gateway-own.yaml"), covered: true,
			gap:   "Gateways are not sent to modelguard: changing a Gateway's selector moves every route bound to it onto other pods unrefused",
			steps: []bypassStep{refuse(apply("gateway-own-moved.yaml"), "this change would leave InferenceService ${NS}/sample uncovered", "[JWT_ROUTE_UNCOVERED]")}},

		// Path tricks in routes (the model is covered on /v2/* only).
		routeTrick("route path in other case (/V2/)", "vs-path-upper.yaml"),
		routeTrick("route prefix without its trailing slash (/v2)", "vs-path-no-slash.yaml"),
		routeTrick("route prefix with an encoded slash (/v2%2F)", "vs-path-encoded.yaml"),
		routeTrick("route prefix with a doubled slash (//v2/)", "vs-path-double-slash.yaml"),
		routeTrick("route prefix with a dot segment into /v2/ (/public/../v2/)", "vs-path-dot-in.yaml"),
		routeTrick("regex route", "vs-path-regex.yaml"),
		routeTrick("route with ignoreUriCase", "vs-path-ignore-case.yaml"),
		routeTrick("route matched under /v2/ but rewritten to /", "vs-path-rewrite.yaml"),
		{name: "route prefix with a dot segment out of /v2/ (/v2/../admin/)", setup: paths, covered: true,
			steps: []bypassStep{admit(apply("vs-path-dot-out.yaml"), "Istio normalizes request paths before routing and authorization (dot segments removed), "+
				"so no request matches this prefix; without normalization the DENY on /v2/* matches the same literal path")}},
		{name: "route exact path with a trailing slash under /v2/", setup: paths, covered: true,
			steps: []bypassStep{admit(apply("vs-path-exact-slash.yaml"), "/v2/models/sample/infer/ is under /v2/*, which the DENY covers")}},
		// Path tricks in the covering policy.
		policyTrick("policy path in other case (/V2/*)", "ap-paths-upper.yaml"),
		policyTrick("policy path with a trailing slash and no wildcard (/v2/)", "ap-paths-exact-slash.yaml"),
		policyTrick("policy path with an encoded slash (/v2%2F*)", "ap-paths-encoded.yaml"),
		policyTrick("policy path with a doubled slash (//v2/*)", "ap-paths-double-slash.yaml"),
		policyTrick("policy path with a dot segment (/x/../v2/*)", "ap-paths-dot.yaml"),
	}
}
