package policy_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	networkingapi "istio.io/api/networking/v1alpha3"
	securityapi "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/modelguard/modelguard/policy"
	"github.com/modelguard/modelguard/policy/oracle"
)

// The soundness property: whenever the engine says a route is covered, no tokenless concrete
// request drawn from that route is allowed by the concrete evaluator at both the gateway and
// the model. Random policy sets and routes, fixed seeds so that a failure reproduces.
func TestSoundnessAgainstOracle(t *testing.T) {
	const worlds = 4000
	rng := rand.New(rand.NewPCG(20261125, 1))
	gaps, witnessed, unconfirmed := 0, 0, 0
	for i := range worlds {
		w := randomWorld(rng)
		v := policy.Evaluate(w.config(t), w.snapshot(t), w.vs, policy.Options{})
		gap := hasCode(v, policy.CodeJWTRouteUncovered)
		if gap {
			gaps++
			if strings.Contains(renderFindings(v), "gets through") {
				witnessed++
			}
			if _, ok := w.leak(); !ok {
				unconfirmed++
				if os.Getenv("SOUNDNESS_SHOW") != "" && unconfirmed < 8 {
					t.Logf("unconfirmed gap, world %d\nroute: %s\npolicies:\n%s\nfindings:\n%s", i, w.routeDesc, w.policyDesc(), renderFindings(v))
				}
			}
			continue
		}
		if req, ok := w.leak(); ok {
			t.Fatalf("world %d: the engine reports the route covered, but the oracle lets this tokenless request through: %s\nroute: %s\npolicies:\n%s\nfindings:\n%s",
				i, req, w.routeDesc, w.policyDesc(), renderFindings(v))
		}
	}
	// Precision, for the record: gaps for which the test's own search finds no leaking request
	// are either imprecision (the engine assumed the worst) or leaks outside the test's sample.
	t.Logf("%d worlds: %d reported gaps, %d with a concrete example, %d not reproduced by the test's sample", worlds, gaps, witnessed, unconfirmed)
	if gaps == 0 || gaps == worlds {
		t.Fatalf("the generator is degenerate: %d gaps in %d worlds", gaps, worlds)
	}
}

// On the seed patterns every reported gap is reproduced by the oracle: the finding carries a
// concrete request that the oracle lets through (the engine only prints one it confirmed).
func TestSeedGapsAreReproduced(t *testing.T) {
	for _, file := range []string{"testdata/cases/seed-seldon-gateway-jwt.yaml", "testdata/cases/seed-seldon-prefix-without-slash.yaml", "testdata/cases/seed-kserve-allow-without-when.yaml"} {
		hdr, objs := loadCase(t, file)
		cfg := policy.DefaultConfig()
		snap := policy.NewSnapshot(cfg)
		for _, o := range objs {
			if err := snap.Upsert(o); err != nil {
				t.Fatal(err)
			}
		}
		for _, exp := range hdr.Expect {
			v := policy.Evaluate(cfg, snap, findObject(objs, exp.Subject), policy.Options{})
			for _, f := range v.Findings {
				if f.Code == policy.CodeJWTRouteUncovered && !strings.Contains(f.Message, "gets through") {
					t.Errorf("%s %s: gap without a reproduced example: %s", file, exp.Subject, f.Message)
				}
			}
		}
	}
}

func hasCode(v policy.Verdict, c policy.Code) bool {
	for _, f := range v.Findings {
		if f.Code == c {
			return true
		}
	}
	return false
}

type world struct {
	vs        *networkingv1.VirtualService
	routePath *networkingapi.StringMatch
	method    string
	gwPols    []*securityv1.AuthorizationPolicy
	mPols     []*securityv1.AuthorizationPolicy
	strict    bool
	// gatewayUnknown leaves the gateway's Deployment out of the engine's mesh state; the
	// oracle still sees the real pods (in istio-system, service account gw-sa).
	gatewayUnknown bool
	// otherRoot makes "mesh-root" the root namespace: istio-system, where the gateway runs,
	// is then an ordinary namespace and its policies bind only its own pods.
	otherRoot bool
	rewrite   string // URI rewrite of a prefix route ("" for none)
	routeDesc string
}

var (
	pathPool = []string{"/", "/v2", "/v2/", "/v2x", "/v2/models/m/infer", "/v2/models/other/infer", "/v1/models/m:predict",
		"/inference.GRPCInferenceService/ModelInfer", "/inference.GRPCInferenceService/ServerLive", "/healthz", "/v2/models/m/ready", "/x/y/z"}
	policyPaths = []string{"/v2/*", "/v2/models/*", "/inference.GRPCInferenceService/*", "/v2", "/{**}", "/v2/{**}", "/v2/models/{*}/infer",
		"*/infer", "/healthz", "*", "/v2/models/m/infer", "/inference.*", "*/v2*", "*infer*", "/v2/*/infer"}
)

func randomWorld(rng *rand.Rand) *world {
	w := &world{strict: rng.IntN(2) == 0, gatewayUnknown: rng.IntN(4) == 0, otherRoot: rng.IntN(3) == 0}
	w.routePath = randomURIMatch(rng)
	match := &networkingapi.HTTPMatchRequest{Uri: w.routePath}
	if rng.IntN(4) == 0 {
		w.method = []string{"GET", "POST"}[rng.IntN(2)]
		match.Method = &networkingapi.StringMatch{MatchType: &networkingapi.StringMatch_Exact{Exact: w.method}}
	}
	w.vs = &networkingv1.VirtualService{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.istio.io/v1", Kind: "VirtualService"},
		ObjectMeta: metav1.ObjectMeta{Name: "m", Namespace: "ml"},
	}
	w.vs.Spec.Gateways = []string{"istio-system/gw"}
	w.vs.Spec.Hosts = []string{"m.example.com"}
	w.vs.Spec.Http = []*networkingapi.HTTPRoute{{Match: []*networkingapi.HTTPMatchRequest{match},
		Route: []*networkingapi.HTTPRouteDestination{{Destination: &networkingapi.Destination{Host: "m-predictor"}}}}}
	if p := w.routePath.GetPrefix(); p != "" && rng.IntN(5) == 0 {
		w.rewrite = []string{"/v2/", "/", "/v2/models/m/"}[rng.IntN(3)]
		w.vs.Spec.Http[0].Rewrite = &networkingapi.HTTPRewrite{Uri: w.rewrite}
	}
	w.routeDesc = fmt.Sprintf("uri %v rewrite %q method %q gateway pods known: %v, root namespace istio-system: %v", w.routePath, w.rewrite, w.method, !w.gatewayUnknown, !w.otherRoot)
	for range rng.IntN(4) {
		p := randomPolicy(rng, len(w.gwPols)+len(w.mPols))
		if rng.IntN(2) == 0 {
			p.Namespace = "istio-system"
			p.Spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"istio": "ingressgateway"}}
			w.gwPols = append(w.gwPols, p)
		} else {
			p.Namespace = "ml"
			if rng.IntN(2) == 0 {
				p.Spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"serving.kserve.io/inferenceservice": "m"}}
			}
			w.mPols = append(w.mPols, p)
		}
	}
	return w
}

func randomURIMatch(rng *rand.Rand) *networkingapi.StringMatch {
	switch rng.IntN(6) {
	case 0:
		return nil
	case 1:
		return &networkingapi.StringMatch{MatchType: &networkingapi.StringMatch_Exact{Exact: pathPool[rng.IntN(len(pathPool))]}}
	case 2:
		return &networkingapi.StringMatch{MatchType: &networkingapi.StringMatch_Regex{Regex: "/v2/.*"}}
	}
	prefixes := []string{"/", "/v2", "/v2/", "/v2/models/", "/inference.GRPCInferenceService", "/inference.GRPCInferenceService/"}
	return &networkingapi.StringMatch{MatchType: &networkingapi.StringMatch_Prefix{Prefix: prefixes[rng.IntN(len(prefixes))]}}
}

func randomPolicy(rng *rand.Rand, n int) *securityv1.AuthorizationPolicy {
	p := &securityv1.AuthorizationPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "security.istio.io/v1", Kind: "AuthorizationPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", n)},
	}
	actions := []securityapi.AuthorizationPolicy_Action{securityapi.AuthorizationPolicy_DENY, securityapi.AuthorizationPolicy_DENY,
		securityapi.AuthorizationPolicy_ALLOW, securityapi.AuthorizationPolicy_ALLOW, securityapi.AuthorizationPolicy_AUDIT, securityapi.AuthorizationPolicy_CUSTOM}
	p.Spec.Action = actions[rng.IntN(len(actions))]
	if p.Spec.Action == securityapi.AuthorizationPolicy_CUSTOM {
		p.Spec.ActionDetail = &securityapi.AuthorizationPolicy_Provider{Provider: &securityapi.AuthorizationPolicy_ExtensionProvider{Name: "ext"}}
	}
	for range rng.IntN(3) {
		p.Spec.Rules = append(p.Spec.Rules, randomRule(rng))
	}
	return p
}

func randomRule(rng *rand.Rand) *securityapi.Rule {
	r := &securityapi.Rule{}
	if rng.IntN(3) > 0 {
		s := &securityapi.Source{}
		switch rng.IntN(8) {
		case 6:
			s.IpBlocks = []string{"10.0.0.0/8"}
		case 7:
			s.NotRequestPrincipals = []string{"https://issuer.example.com/*"}
		case 0:
			s.NotRequestPrincipals = []string{"*"}
		case 1:
			s.RequestPrincipals = []string{"*"}
		case 2:
			s.Namespaces = []string{[]string{"istio-system", "ml"}[rng.IntN(2)]}
		case 3:
			s.NotNamespaces = []string{[]string{"istio-system", "ml"}[rng.IntN(2)]}
		case 4:
			s.Principals = []string{"cluster.local/ns/istio-system/sa/gw-sa"}
		case 5:
			s.NotRequestPrincipals = []string{"*"}
			s.NotNamespaces = []string{"ml"}
		}
		r.From = []*securityapi.Rule_From{{Source: s}}
	}
	if rng.IntN(2) == 0 {
		o := &securityapi.Operation{}
		switch rng.IntN(7) {
		case 0, 1:
			o.Paths = pickSome(rng, policyPaths)
		case 2:
			o.NotPaths = pickSome(rng, policyPaths)
		case 3:
			o.Methods = []string{[]string{"GET", "POST"}[rng.IntN(2)]}
		case 4:
			o.Hosts = pickSome(rng, []string{"m.example.com", "M.EXAMPLE.COM", "*.example.com", "m.*", "other.org", "*", "*example*"})
		case 5:
			o.NotHosts = pickSome(rng, []string{"m.example.com", "*.example.com", "other.org"})
		case 6:
			o.Ports = []string{"8080"}
		}
		r.To = []*securityapi.Rule_To{{Operation: o}}
	}
	if rng.IntN(4) == 0 {
		keys := []*securityapi.Condition{
			{Key: "request.auth.principal", Values: []string{"*"}},
			{Key: "request.auth.principal", NotValues: []string{"*"}},
			{Key: "source.namespace", Values: []string{"istio-system"}},
			{Key: "request.headers[x-debug]", Values: []string{"1"}},
			{Key: "experimental.unknown", Values: []string{"x"}},
			{Key: "request.auth.claims[iss]", NotValues: []string{"https://issuer.example.com"}},
		}
		r.When = []*securityapi.Condition{keys[rng.IntN(len(keys))]}
	}
	return r
}

func pickSome(rng *rand.Rand, pool []string) []string {
	n := 1 + rng.IntN(2)
	out := make([]string, 0, n)
	for range n {
		out = append(out, pool[rng.IntN(len(pool))])
	}
	return out
}

var otherRootConfig = func() *policy.GuardConfig {
	cfg, err := policy.ParseConfig("other-root", []byte("apiVersion: modelguard.io/v1alpha1\nkind: GuardConfig\nmeshRootNamespace: mesh-root\nrules: [{name: default, namespaceSelector: {}}]\n"))
	if err != nil {
		panic(err)
	}
	return cfg
}()

func (w *world) config(t *testing.T) *policy.GuardConfig {
	if w.otherRoot {
		return otherRootConfig
	}
	return policy.DefaultConfig()
}

func (w *world) snapshot(t *testing.T) *policy.Snapshot {
	snap := policy.NewSnapshot(w.config(t))
	objs := []runtime.Object{
		deployment("ml", "m-predictor", map[string]string{"serving.kserve.io/inferenceservice": "m", "component": "predictor", "app": "isvc.m-predictor"}, "default"),
		gateway(), isvc(), w.vs, peerAuth(w.strict),
	}
	if !w.gatewayUnknown {
		objs = append(objs, deployment("istio-system", "gw", map[string]string{"istio": "ingressgateway"}, "gw-sa"))
	}
	for _, p := range append(append([]*securityv1.AuthorizationPolicy{}, w.gwPols...), w.mPols...) {
		objs = append(objs, p)
	}
	for _, o := range objs {
		if err := snap.Upsert(o.DeepCopyObject()); err != nil {
			t.Fatal(err)
		}
	}
	return snap
}

// leak searches the route for a tokenless request the oracle allows at both hops.
func (w *world) leak() (string, bool) {
	for _, path := range w.routePaths() {
		for _, method := range []string{"GET", "POST"} {
			if w.method != "" && method != w.method {
				continue
			}
			for _, host := range []string{"m.example.com", "m.example.com:443", "M.Example.Com"} {
				req := oracle.Request{Path: path, Method: method, Host: host, Headers: map[string]string{}, Port: 8080, SourceIP: "10.1.2.3", RemoteIP: "203.0.113.9"}
				if !oracle.Decide(req, w.gwPols, oracle.Options{}).Allowed {
					continue
				}
				peers := []string{"cluster.local/ns/istio-system/sa/gw-sa"}
				if !w.strict {
					peers = append(peers, "")
				}
				for _, peer := range peers {
					mreq := req
					mreq.SourcePrincipal = peer
					if oracle.Decide(mreq, w.mPols, oracle.Options{}).Allowed {
						return fmt.Sprintf("%s %s (Host %s) from peer %q", method, path, host, peer), true
					}
				}
			}
		}
	}
	return "", false
}

// routePaths draws concrete paths the route accepts (a regex route is treated by Istio as
// its regex; here it is /v2/.*).
func (w *world) routePaths() []string {
	var out []string
	for _, p := range append(append([]string{}, pathPool...), "/v2/a/b", "/v2/models/m/x/y", "/inference.GRPCInferenceService") {
		switch {
		case w.routePath == nil:
			out = append(out, p)
		case w.routePath.GetExact() != "":
			if p == w.routePath.GetExact() {
				out = append(out, p)
			}
		case w.routePath.GetPrefix() != "":
			if strings.HasPrefix(p, w.routePath.GetPrefix()) {
				out = append(out, p)
			}
		case w.routePath.GetRegex() != "":
			if strings.HasPrefix(p, "/v2/") {
				out = append(out, p)
			}
		}
	}
	if e := w.routePath.GetExact(); e != "" && len(out) == 0 {
		out = append(out, e)
	}
	return out
}

func (w *world) policyDesc() string {
	var b strings.Builder
	for _, p := range append(append([]*securityv1.AuthorizationPolicy{}, w.gwPols...), w.mPols...) {
		fmt.Fprintf(&b, "  %s/%s selector=%v %s\n", p.Namespace, p.Name, p.Spec.GetSelector().GetMatchLabels(), p.Spec.String())
	}
	return b.String()
}

func deployment(ns, name string, labels map[string]string, sa string) *appsv1.Deployment {
	d := &appsv1.Deployment{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"}, ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	d.Spec.Template.Labels = labels
	d.Spec.Template.Spec.ServiceAccountName = sa
	d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "c", Image: "i"}}
	return d
}

func gateway() *networkingv1.Gateway {
	g := &networkingv1.Gateway{TypeMeta: metav1.TypeMeta{APIVersion: "networking.istio.io/v1", Kind: "Gateway"}, ObjectMeta: metav1.ObjectMeta{Name: "gw", Namespace: "istio-system"}}
	g.Spec.Selector = map[string]string{"istio": "ingressgateway"}
	return g
}

func isvc() *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"predictor": map[string]any{}}}}
	u.SetGroupVersionKind(policy.GVKInferenceService)
	u.SetNamespace("ml")
	u.SetName("m")
	u.SetLabels(map[string]string{"networking.kserve.io/visibility": "cluster-local"})
	return u
}

func peerAuth(strict bool) *securityv1.PeerAuthentication {
	p := &securityv1.PeerAuthentication{TypeMeta: metav1.TypeMeta{APIVersion: "security.istio.io/v1", Kind: "PeerAuthentication"}, ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "ml"}}
	mode := securityapi.PeerAuthentication_MutualTLS_PERMISSIVE
	if strict {
		mode = securityapi.PeerAuthentication_MutualTLS_STRICT
	}
	p.Spec.Mtls = &securityapi.PeerAuthentication_MutualTLS{Mode: mode}
	return p
}
