package integration_test

// The fault suite (issue 7, "Hardening"): the real `modelguard serve` binary, registered with
// the test kube-apiserver through webhook.Configurations, under the faults a cluster throws at
// it: the webhook down, its serving certificate rotated under load, a replica killed and
// restarted under load, an invalid GuardConfig pushed, and the reconciler killed between the
// two writes of a model's policies. Each test checks a property through the API server (what
// is stored, what is refused and why), never a timing; waits are bounded and say what they
// waited for.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/modelguard/modelguard/policy"
	"github.com/modelguard/modelguard/test/envtest"
	"github.com/modelguard/modelguard/webhook"
)

// faultUser is the identity of `modelguard serve` in the fault tests (in group
// system:masters), passed as --trusted-user as the reconciler's service account is.
const faultUser = "modelguard"

// faultOwnNamespace is modelguard's own namespace: outside every webhook.
const faultOwnNamespace = "modelguard-system"

// ---------------------------------------------------------------------------------------
// 1. Webhook down: fail closed for what modelguard judges, nothing else touched.

// TestFaultWebhookDown registers the webhooks (validators failurePolicy Fail) and runs the
// binary once to prove the registration reaches it, then SIGKILLs it: the API server must
// refuse exposures, and even a harmless InferenceService, saying the webhook call failed,
// while kinds the rules do not match, kube-system and modelguard's own namespace, and
// namespace writes that change no label go through.
func TestFaultWebhookDown(t *testing.T) {
	f := newFaultEnv(t)
	f.namespace(t, "fault-down")
	f.namespace(t, faultOwnNamespace)
	mg := f.serve(t, "--no-reconciler")

	// Positive control: the registration is live and reaches modelguard (an uncovered
	// exposure is denied by modelguard itself, a cluster-local model is admitted).
	f.waitJudging(t)
	f.applyFile(t, "kserve/mesh.yaml")
	require.NoError(t, f.create(faultISVC("fault-down", "before", true)), "a cluster-local model is admitted while modelguard runs")

	mg.kill(t)
	t.Log("modelguard SIGKILLed: the webhook URL now has no listener")

	for _, c := range []struct {
		what string
		obj  client.Object
	}{
		{"exposed InferenceService", faultISVC("open", "while-down", false)},
		{"cluster-local InferenceService (harmless, still refused: the API server cannot know)", faultISVC("fault-down", "local-while-down", true)},
		{"VirtualService on an external gateway", faultVS("open", "while-down", "open-a-predictor")},
	} {
		err := f.create(c.obj)
		require.Error(t, err, "%s created while the validating webhook is down: fail open", c.what)
		assert.Contains(t, err.Error(), `failed calling webhook "validate.models.modelguard.io"`, "%s: refused because the webhook call failed", c.what)
		assert.True(t, apierrors.IsInternalError(err), "%s: %v", c.what, err)
		t.Logf("%s refused: %v", c.what, err)
		f.mustNotExist(t, c.obj)
	}

	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "fault-down", Name: "settings"}, Data: map[string]string{"k": "v"}}
	require.NoError(t, f.create(cm), "a ConfigMap is not matched by any modelguard rule")
	replicas := int32(1)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "fault-down", Name: "app"}, Spec: appsv1.DeploymentSpec{
		Replicas: &replicas,
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}},
	}}
	require.NoError(t, f.create(dep), "a Deployment is not matched by any modelguard rule")
	for _, ns := range []string{"kube-system", faultOwnNamespace} {
		require.NoError(t, f.create(faultISVC(ns, "exempt", false)),
			"an InferenceService in %s is outside the webhooks' namespaceSelector (kubernetes.io/metadata.name)", ns)
	}
	// The guard webhook sees only namespace writes that change labels (matchConditions).
	nsObj := &corev1.Namespace{}
	require.NoError(t, f.env.Client.Get(t.Context(), types.NamespacedName{Name: "fault-down"}, nsObj))
	patch := client.MergeFrom(nsObj.DeepCopy())
	nsObj.Annotations = map[string]string{"example.com/owner": "team-a"}
	require.NoError(t, f.env.Client.Patch(t.Context(), nsObj, patch), "a namespace annotation never depends on modelguard being up")
	nsObj = &corev1.Namespace{}
	require.NoError(t, f.env.Client.Get(t.Context(), types.NamespacedName{Name: "fault-down"}, nsObj))
	patch = client.MergeFrom(nsObj.DeepCopy())
	nsObj.Labels["tier"] = "gold"
	err := f.env.Client.Patch(t.Context(), nsObj, patch)
	require.Error(t, err, "a namespace relabel (it can change the rule of exposed models) is refused while the guard is down")
	assert.Contains(t, err.Error(), `failed calling webhook "guard.policies.modelguard.io"`)
}

// ---------------------------------------------------------------------------------------
// 2. Serving certificate rotated under load.

// TestFaultCertRotationUnderLoad serves from a cert dir laid out as kubelet lays out a Secret
// volume (tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>), and while InferenceServices are
// created and deleted through the API server swaps in a new leaf from the same CA the way
// kubelet does (new timestamped dir, ..data symlink renamed over, old dir removed). No
// admission may fail, and a fresh handshake must present the new certificate.
func TestFaultCertRotationUnderLoad(t *testing.T) {
	f := newFaultEnv(t)
	f.namespace(t, "fault-rotate")
	f.serve(t, "--no-reconciler")
	f.waitJudging(t)

	next := f.ca.leaf(t)
	oldSerial := f.servedSerial(t)
	require.Equal(t, 0, oldSerial.Cmp(f.leafSerial), "modelguard serves the first leaf")

	const workers, duration = 2, 10 * time.Second
	var (
		admitted atomic.Int64
		failMu   sync.Mutex
		failures []string
	)
	ctx, cancel := context.WithTimeout(t.Context(), duration)
	defer cancel()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				obj := faultISVC("fault-rotate", fmt.Sprintf("load-%d-%d", w, i), true)
				if err := f.env.Client.Create(context.Background(), obj); err != nil {
					failMu.Lock()
					failures = append(failures, fmt.Sprintf("%s: %v", time.Now().Format(time.StampMilli), err))
					failMu.Unlock()
					continue
				}
				admitted.Add(1)
				_ = f.env.Client.Delete(context.Background(), obj)
			}
		})
	}

	time.Sleep(3 * time.Second) // let the load run on the old certificate first
	require.NoError(t, kubeletWriteSecret(f.certDir, map[string][]byte{"tls.crt": next.certPEM, "tls.key": next.keyPEM}))
	rotated := time.Now()
	t.Logf("rotated: serial %s -> %s (kubelet ..data symlink swap)", oldSerial, next.serial)
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		got := f.servedSerial(t)
		if got.Cmp(next.serial) != 0 {
			return fmt.Errorf("a fresh handshake still presents serial %s, want the new %s", got, next.serial)
		}
		return nil
	})
	t.Logf("new certificate served %s after the swap", time.Since(rotated).Round(time.Millisecond))
	wg.Wait()

	t.Logf("%d admissions under load during the rotation, %d failed", admitted.Load(), len(failures))
	for _, fail := range failures {
		t.Logf("failed admission: %s", fail)
	}
	assert.Empty(t, failures, "no admission may fail while the certificate rotates")
	assert.Greater(t, admitted.Load(), int64(10), "the load ran")
	require.NoError(t, f.create(faultISVC("fault-rotate", "after", true)))

	// The API server's own fresh handshake with the new certificate: its keep-alive
	// connections to 127.0.0.1 predate the rotation, so a webhook registered now at
	// another host name (localhost, in the leaf's SANs) makes it open a new one. It matches
	// only modelguard's own namespace, which the main webhooks leave out: a denial there
	// comes through that new connection, verified against the caBundle.
	f.namespace(t, faultOwnNamespace)
	url := fmt.Sprintf("https://localhost:%d%s", f.port, webhook.PathValidate)
	fail, none := admissionregistrationv1.Fail, admissionregistrationv1.SideEffectClassNone
	probe := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "fault-rotation-probe"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name: "probe.fault.modelguard.io", ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: f.ca.certPEM},
			Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{"serving.kserve.io"}, APIVersions: []string{"v1beta1"}, Resources: []string{"inferenceservices"}}}},
			FailurePolicy: &fail, SideEffects: &none, AdmissionReviewVersions: []string{"v1"},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": faultOwnNamespace}},
		}}}
	require.NoError(t, f.env.Client.Create(t.Context(), probe))
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		err := f.create(faultISVC(faultOwnNamespace, "probe", false), client.DryRunAll)
		if err == nil || !strings.Contains(err.Error(), `admission webhook "probe.fault.modelguard.io" denied`) {
			return fmt.Errorf("no judgement through a new API server connection yet: %v", err)
		}
		return nil
	})
}

// ---------------------------------------------------------------------------------------
// 3. A replica killed and restarted under load, behind a Service-like proxy.

// TestFaultReplicaRestartUnderLoad runs two replicas behind a round-robin TCP proxy that,
// like a Service's endpoints, only sends new connections to replicas whose /readyz passes.
// Under a mix of creates that must be admitted and creates that must be denied, the replica
// carrying the API server's connections is SIGKILLed and started again. Nothing that must be
// denied may ever be stored; the few requests in flight on the killed replica may fail (fail
// closed), and each is listed.
func TestFaultReplicaRestartUnderLoad(t *testing.T) {
	f := newFaultEnvWith(t, func(webhookPort int) string { return "" }) // URL set below: the proxy's
	f.namespace(t, "fault-ok")
	f.namespace(t, faultOwnNamespace)

	a := f.serveOn(t, freePort(t), "--leader-elect", "--leader-election-namespace", faultOwnNamespace)
	b := f.serveOn(t, freePort(t), "--leader-elect", "--leader-election-namespace", faultOwnNamespace)
	proxy := startRRProxy(t, []*faultServe{a, b})
	f.installWebhooks(t, fmt.Sprintf("https://127.0.0.1:%d", proxy.port()))
	f.waitJudging(t)
	f.applyFile(t, "kserve/mesh.yaml")

	const workers = 3
	var (
		admitted, denied atomic.Int64
		mu               sync.Mutex
		errs, violations []string
	)
	note := func(list *[]string, format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		*list = append(*list, time.Now().Format(time.StampMilli)+" "+fmt.Sprintf(format, args...))
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				ok := faultISVC("fault-ok", fmt.Sprintf("ok-%d-%d", w, i), true)
				if err := f.env.Client.Create(context.Background(), ok); err != nil {
					note(&errs, "create %s (must be admitted): %v", ok.GetName(), err)
				} else {
					admitted.Add(1)
				}
				bad := faultISVC("open", fmt.Sprintf("deny-%d-%d", w, i), false)
				switch err := f.env.Client.Create(context.Background(), bad); {
				case err == nil:
					note(&violations, "create %s (must be denied) was ADMITTED", bad.GetName())
				case strings.Contains(err.Error(), "modelguard denied"):
					denied.Add(1)
				default:
					note(&errs, "create %s (must be denied): %v", bad.GetName(), err)
				}
			}
		})
	}

	// Two rounds: the replica carrying the API server's connection is killed and restarted;
	// the load moves to the survivor, which is killed in the second round, so that the
	// restarted replica carries the load after it.
	time.Sleep(2 * time.Second)
	first := proxy.busiest()
	second := a
	if first == a {
		second = b
	}
	for round, victim := range []*faultServe{first, second} {
		t.Logf("round %d: proxy before the kill: %s; SIGKILL replica %s", round+1, proxy.stats(), victim.name)
		require.Positive(t, proxy.active(victim), "round %d: the replica to kill carries the API server's connections (after round 1 they moved to the survivor)", round+1)
		victim.kill(t)
		time.Sleep(2 * time.Second) // the survivor alone
		victim.start(t)
		victim.waitReady(t)
		t.Logf("round %d: replica %s ready again; proxy: %s", round+1, victim.name, proxy.stats())
		time.Sleep(2 * time.Second)
	}
	cancel()
	wg.Wait()
	t.Logf("after round 2 the first replica restarted carries the load: %s", proxy.stats())

	t.Logf("admitted %d, denied %d (as they must be), errors %d, admitted-that-must-be-denied %d",
		admitted.Load(), denied.Load(), len(errs), len(violations))
	for _, e := range errs {
		t.Logf("error: %s", e)
	}
	for _, v := range violations {
		t.Errorf("violation: %s", v)
	}
	// Through the API, not only the client's view: no should-be-denied object exists.
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(testenv.InferenceServiceGVK.GroupVersion().WithKind("InferenceServiceList"))
	require.NoError(t, f.env.Client.List(t.Context(), list, client.InNamespace("open")))
	for _, it := range list.Items {
		if strings.HasPrefix(it.GetName(), "deny-") {
			t.Errorf("%s/%s must have been denied, yet it is stored", it.GetNamespace(), it.GetName())
		}
	}
	// At most the requests in flight on the killed replica's connections fail: each worker
	// has one request outstanding at a time (a mutating and a validating call), per kill.
	assert.LessOrEqual(t, len(errs), 2*2*workers, "errors are bounded by the requests in flight at the kills")
	assert.Positive(t, admitted.Load())
	assert.Positive(t, denied.Load())
}

// ---------------------------------------------------------------------------------------
// 4. An invalid GuardConfig pushed to a running server.

// TestFaultInvalidConfigPushed replaces the --config file (atomically, as a ConfigMap volume
// does) with a GuardConfig that has an unknown field and would switch to Warn: the last good
// config (Enforce) stays in force, the operational log on stderr names file, line and field,
// the metrics say the config is invalid. A valid Warn config then applies.
func TestFaultInvalidConfigPushed(t *testing.T) {
	f := newFaultEnv(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "guard.yaml")
	require.NoError(t, writeAtomic(path, []byte(enforceConfig)))
	mg := f.serve(t, "--no-reconciler", "--config", path)
	f.waitJudging(t)
	f.applyFile(t, "kserve/mesh.yaml")

	invalid := `apiVersion: modelguard.io/v1alpha1
kind: GuardConfig
rules:
- name: rollout
  namespaceSelector: {}
  mode: Warn
  requireMTSL: false
`
	require.NoError(t, writeAtomic(path, []byte(invalid)))
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		m := mg.metrics(t)
		if m[`modelguard_config_valid`] != "0" {
			return fmt.Errorf("modelguard_config_valid is %q, want 0", m[`modelguard_config_valid`])
		}
		if n, _ := strconv.ParseFloat(m[`modelguard_config_reloads_total{result="invalid"}`], 64); n < 1 {
			return fmt.Errorf(`modelguard_config_reloads_total{result="invalid"} is %v, want >= 1`, n)
		}
		return nil
	})
	err := f.create(faultISVC("open", "while-invalid", false))
	require.Error(t, err, "while the new file is invalid the last good config (Enforce) stays: an uncovered model is denied, not warned")
	assert.Contains(t, err.Error(), "[JWT_ROUTE_UNCOVERED]")

	// The rejection is an operational log line: JSON on stderr, with file:line and field.
	var rejected map[string]any
	testenv.Eventually(t, 10*time.Second, func(context.Context) error {
		for _, l := range jsonLines(mg.stderr) {
			if strings.Contains(fmt.Sprint(l["msg"]), "GuardConfig") && strings.Contains(fmt.Sprint(l["error"]), "requireMTSL") {
				rejected = l
				return nil
			}
		}
		return fmt.Errorf("no JSON line on stderr reports the rejected GuardConfig (stdout has %d lines)", len(jsonLines(mg.stdout)))
	})
	t.Logf("stderr: %v", rejected)
	assert.Equal(t, "ERROR", rejected["level"])
	assert.Contains(t, fmt.Sprint(rejected["error"]), path+":7", "the error names file and line")
	assert.Contains(t, fmt.Sprint(rejected["error"]), "rules[0].requireMTSL", "the error names the field")
	for _, l := range jsonLines(mg.stdout) {
		assert.Equal(t, "admission", l["msg"], "stdout carries only audit lines: %v", l)
	}

	warn := strings.ReplaceAll(strings.ReplaceAll(enforceConfig, "Enforce", "Warn"), "default", "rollout")
	require.NoError(t, writeAtomic(path, []byte(warn)))
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		m := mg.metrics(t)
		if m[`modelguard_config_valid`] != "1" {
			return fmt.Errorf("modelguard_config_valid is %q, want 1", m[`modelguard_config_valid`])
		}
		if n, _ := strconv.ParseFloat(m[`modelguard_config_reloads_total{result="ok"}`], 64); n < 1 {
			return fmt.Errorf(`modelguard_config_reloads_total{result="ok"} is %v, want >= 1`, n)
		}
		return nil
	})
	stdout, stderr, err := f.env.TryApply(t, faultISVCYAML("open", "after-valid", false))
	require.NoError(t, err, "the valid Warn config applies: admitted with warnings\n%s", stderr)
	assert.Contains(t, stdout+stderr, "Warning: [JWT_ROUTE_UNCOVERED]")
}

// ---------------------------------------------------------------------------------------
// 5. The reconciler killed between its two writes.

const faultInjectConfig = `apiVersion: modelguard.io/v1alpha1
kind: GuardConfig
rules:
- name: inject
  namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [fault-half, fault-kill]}]}
  mode: Enforce
  inject: {issuer: "https://issuer.example.com", jwksUri: "https://issuer.example.com/.well-known/jwks.json", audiences: [models]}
- name: plain
  namespaceSelector: {}
  mode: Enforce
`

// TestFaultReconcilerHalfMadePair leaves a model with its generated RequestAuthentication but
// no AuthorizationPolicy, the state of a reconciler killed between the two writes.
//
// What the validator counts, by design (DESIGN.md, policy.planFor): for a model whose
// modelguard.io/* annotations equal the plan of its rule, the planned RequestAuthentication
// and AuthorizationPolicy are counted whether or not they exist yet (INJECT_PLANNED): the
// validator relies on the plan, which only the reconciler may realise (the guard refuses
// anyone else's change of a generated policy) and which it converges to. So the half-made
// pair is judged as the full plan; the guarantee to check is that the lone
// RequestAuthentication itself never counts as coverage: the same lone object, for a model
// whose rule plans nothing, leaves it uncovered, and its exposure is refused. Then the
// reconciler must converge: the missing AuthorizationPolicy appears, equal to the plan.
func TestFaultReconcilerHalfMadePair(t *testing.T) {
	f := newFaultEnv(t)
	cfgPath := filepath.Join(t.TempDir(), "guard.yaml")
	require.NoError(t, writeAtomic(cfgPath, []byte(faultInjectConfig)))
	cfg, err := policy.ParseConfig(cfgPath, []byte(faultInjectConfig))
	require.NoError(t, err)
	trusted := f.trustedClient(t) // writes as modelguard's identity, as the reconciler does

	// Webhooks only: nothing reconciles while the half-made state is built.
	p1 := f.serve(t, "--no-reconciler", "--config", cfgPath)
	f.waitJudging(t)
	f.applyFile(t, "kserve/mesh.yaml")
	for _, ns := range []string{"fault-half", "fault-plain", "fault-kill"} {
		f.namespace(t, ns)
		f.applyYAML(t, fmt.Sprintf("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: %s}\nspec: {mtls: {mode: STRICT}}\n", ns))
	}

	half := faultISVC("fault-half", "half", false)
	require.NoError(t, f.create(half), "an exposed model under an inject rule is admitted on its plan")
	require.NoError(t, f.env.Client.Get(t.Context(), client.ObjectKeyFromObject(half), half))
	halfPlan := planOf(t, cfg, half)
	require.True(t, policy.AnnotationsMatch(half, halfPlan), "the mutating webhook set the planned annotations: %v", half.GetAnnotations())
	require.NoError(t, trusted.Create(t.Context(), halfPlan.RequestAuthentication.DeepCopy()), "the reconciler's first write")
	f.mustNotExist(t, halfPlan.AuthorizationPolicy)

	// The same pair, generated-looking, for a model whose rule plans nothing: only what
	// exists counts there.
	lone := faultISVC("fault-plain", "lone", true)
	require.NoError(t, f.create(lone), "a cluster-local model exposes nothing")
	require.NoError(t, f.env.Client.Get(t.Context(), client.ObjectKeyFromObject(lone), lone))
	lonePlan := planOf(t, cfg, lone, cfg.RuleFor(map[string]string{"kubernetes.io/metadata.name": "fault-half"}))
	loneRA, loneAP := lonePlan.RequestAuthentication, lonePlan.AuthorizationPolicy
	require.NoError(t, trusted.Create(t.Context(), loneRA.DeepCopy()))
	require.NoError(t, trusted.Create(t.Context(), loneAP.DeepCopy()))
	publishLone := faultVS("fault-plain", "publish-lone", "lone-predictor")

	t.Run("a lone generated RequestAuthentication is not coverage", func(t *testing.T) {
		// The whole pair covers the model: this also proves modelguard's mesh state holds both.
		testenv.Eventually(t, 10*time.Second, func(context.Context) error {
			if err := f.create(publishLone, client.DryRunAll); err != nil {
				return fmt.Errorf("the complete generated pair does not cover the model yet: %v", err)
			}
			return nil
		})
		// Half of it, the reconciler's first write alone: not coverage.
		require.NoError(t, trusted.Delete(t.Context(), loneAP.DeepCopy()))
		testenv.Eventually(t, 10*time.Second, func(context.Context) error {
			err := f.create(publishLone, client.DryRunAll)
			if err == nil {
				return errors.New("a VirtualService publishing a model covered by nothing but a RequestAuthentication is still admitted")
			}
			if !strings.Contains(err.Error(), "[JWT_ROUTE_UNCOVERED]") {
				return fmt.Errorf("refused, but not for the uncovered route: %v", err)
			}
			return nil
		})
		published := lone.DeepCopy()
		labels := published.GetLabels()
		delete(labels, "networking.kserve.io/visibility")
		published.SetLabels(labels)
		err := f.env.Client.Update(t.Context(), published)
		require.Error(t, err, "UPDATE dropping cluster-local, with only the RequestAuthentication, is refused")
		assert.Contains(t, err.Error(), "[JWT_ROUTE_UNCOVERED]")
	})

	t.Run("the half-made pair is judged on the plan (by design)", func(t *testing.T) {
		// Same lone RequestAuthentication, same STRICT mTLS; the only difference with
		// fault-plain is the plan, which the validator counts (INJECT_PLANNED).
		require.NoError(t, f.create(faultVS("fault-half", "publish-half", "half-predictor"), client.DryRunAll))
	})

	t.Run("on restart the reconciler completes the pair", func(t *testing.T) {
		p1.kill(t)
		p1.start(t, "--config", cfgPath) // with the reconciler this time
		p1.waitReady(t)
		waitPlanRealised(t, f.env.Client, cfg, half)
		// And the model that plans nothing loses the generated object it should not have.
		testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
			if err := f.env.Client.Get(ctx, client.ObjectKeyFromObject(loneRA), &securityv1.RequestAuthentication{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("the RequestAuthentication of %s (no inject) is still there (%v)", lone.GetName(), err)
			}
			return nil
		})
	})

	t.Run("SIGKILL at a random point of reconciling 20 models", func(t *testing.T) {
		const models = 20
		killAt := 1 + rand.IntN(2*models-2) // generated objects seen when the kill comes: 1..38 of 40
		t.Logf("killing once %d of %d generated objects exist", killAt, 2*models)
		killed := make(chan string, 1)
		go func() {
			for ctx := t.Context(); ctx.Err() == nil; time.Sleep(10 * time.Millisecond) {
				ras, aps := countGenerated(ctx, f.env.Client, "fault-kill")
				if ras+aps >= killAt {
					p1.kill(t)
					killed <- fmt.Sprintf("%d RequestAuthentications, %d AuthorizationPolicies", ras, aps)
					return
				}
			}
		}()
		created, state := 0, ""
		for ; created < models; created++ {
			if err := f.create(faultISVC("fault-kill", fmt.Sprintf("m%02d", created), false)); err != nil {
				select {
				case state = <-killed:
				case <-time.After(10 * time.Second):
					t.Fatalf("creating model %d failed with modelguard still running: %v", created, err)
				}
				t.Logf("create of m%02d refused once modelguard was down (fail closed): %v", created, err)
				break
			}
		}
		if state == "" {
			select {
			case state = <-killed:
			case <-time.After(time.Minute):
				t.Fatal("the kill never came: the reconciler created fewer generated objects than expected")
			}
		}
		ras, aps := countGenerated(t.Context(), f.env.Client, "fault-kill")
		t.Logf("SIGKILL after %d models created; at the kill: %s; after it: %d RAs, %d APs (%d half-made pairs)", created, state, ras, aps, ras-aps)

		p1.start(t, "--config", cfgPath)
		p1.waitReady(t)
		for i := created; i < models; i++ {
			obj := faultISVC("fault-kill", fmt.Sprintf("m%02d", i), false)
			if err := f.env.Client.Get(t.Context(), client.ObjectKeyFromObject(obj), obj.DeepCopy()); err == nil {
				continue
			}
			require.NoError(t, f.create(obj))
		}
		for i := range models {
			m := faultISVC("fault-kill", fmt.Sprintf("m%02d", i), false)
			require.NoError(t, f.env.Client.Get(t.Context(), client.ObjectKeyFromObject(m), m))
			waitPlanRealised(t, f.env.Client, cfg, m)
		}
		ras, aps = countGenerated(t.Context(), f.env.Client, "fault-kill")
		assert.Equal(t, models, ras)
		assert.Equal(t, models, aps)
		t.Logf("after the restart: all %d generated objects exist and equal their plans", ras+aps)
	})
}

// planOf is the plan for a stored model under the rule of its namespace (or the given rule).
func planOf(t *testing.T, cfg *policy.GuardConfig, model *unstructured.Unstructured, rule ...*policy.Rule) *policy.Plan {
	t.Helper()
	r := cfg.RuleFor(map[string]string{"kubernetes.io/metadata.name": model.GetNamespace()})
	if len(rule) > 0 {
		r = rule[0]
	}
	p, err := policy.PlanFor(r, model)
	require.NoError(t, err)
	require.NotNil(t, p, "no plan for %s/%s", model.GetNamespace(), model.GetName())
	require.NotEmpty(t, p.RequestAuthentication.OwnerReferences, "the plan of a stored model owns its objects")
	return p
}

// waitPlanRealised waits until both generated objects of a model exist and equal its plan:
// spec, the managed-by label and the controller ownerReference to the model.
func waitPlanRealised(t *testing.T, c client.Client, cfg *policy.GuardConfig, model *unstructured.Unstructured) {
	t.Helper()
	p := planOf(t, cfg, model)
	testenv.Eventually(t, time.Minute, func(ctx context.Context) error {
		ra, ap := &securityv1.RequestAuthentication{}, &securityv1.AuthorizationPolicy{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(p.RequestAuthentication), ra); err != nil {
			return fmt.Errorf("RequestAuthentication of %s: %w", model.GetName(), err)
		}
		if err := c.Get(ctx, client.ObjectKeyFromObject(p.AuthorizationPolicy), ap); err != nil {
			return fmt.Errorf("AuthorizationPolicy of %s: %w", model.GetName(), err)
		}
		for _, o := range []struct {
			live, want metav1.Object
			equal      bool
		}{
			{ra, p.RequestAuthentication, proto.Equal(&ra.Spec, &p.RequestAuthentication.Spec)},
			{ap, p.AuthorizationPolicy, proto.Equal(&ap.Spec, &p.AuthorizationPolicy.Spec)},
		} {
			if !o.equal {
				return fmt.Errorf("%s: spec differs from the plan", o.live.GetName())
			}
			if o.live.GetLabels()[policy.LabelManagedBy] != policy.ManagedByValue {
				return fmt.Errorf("%s: no managed-by label", o.live.GetName())
			}
			refs := o.live.GetOwnerReferences()
			if len(refs) != 1 || refs[0].UID != model.GetUID() || refs[0].Controller == nil || !*refs[0].Controller {
				return fmt.Errorf("%s: owner references %v, want the model %s", o.live.GetName(), refs, model.GetUID())
			}
		}
		return nil
	})
}

func countGenerated(ctx context.Context, c client.Client, ns string) (ras, aps int) {
	sel := client.MatchingLabels{policy.LabelManagedBy: policy.ManagedByValue}
	raList, apList := &securityv1.RequestAuthenticationList{}, &securityv1.AuthorizationPolicyList{}
	if c.List(ctx, raList, client.InNamespace(ns), sel) == nil {
		ras = len(raList.Items)
	}
	if c.List(ctx, apList, client.InNamespace(ns), sel) == nil {
		aps = len(apList.Items)
	}
	return ras, aps
}

// ---------------------------------------------------------------------------------------
// The environment: the API server, modelguard's webhooks registered against a URL and CA of
// the test's choosing, and the binary.

type faultEnv struct {
	env        *testenv.Env
	bin        string
	kubeconfig string // user faultUser, group system:masters
	ca         *faultCA
	certDir    string   // kubelet-style secret volume with tls.crt and tls.key
	leafSerial *big.Int // of the first leaf
	port       int      // webhook port of f.serve
}

func newFaultEnv(t *testing.T) *faultEnv {
	t.Helper()
	return newFaultEnvWith(t, func(port int) string { return fmt.Sprintf("https://127.0.0.1:%d", port) })
}

// newFaultEnvWith starts the API server (without envtest's own webhook installation), builds
// the binary and writes the serving certificate; url (when it returns non-empty) is where the
// webhooks are registered.
func newFaultEnvWith(t *testing.T, url func(webhookPort int) string) *faultEnv {
	t.Helper()
	f := &faultEnv{env: testenv.Start(t, testenv.Options{}), bin: buildModelguard(t), ca: newFaultCA(t), port: freePort(t)}
	var err error
	f.kubeconfig, err = testenv.WriteAdminKubeconfig(f.env.Environment, faultUser, t.TempDir())
	require.NoError(t, err)
	f.certDir = t.TempDir()
	leaf := f.ca.leaf(t)
	f.leafSerial = leaf.serial
	require.NoError(t, kubeletWriteSecret(f.certDir, map[string][]byte{"tls.crt": leaf.certPEM, "tls.key": leaf.keyPEM}))
	if u := url(f.port); u != "" {
		f.installWebhooks(t, u)
	}
	return f
}

// installWebhooks creates the configurations webhook.Configurations builds, pointing at base
// with the test CA as caBundle.
func (f *faultEnv) installWebhooks(t *testing.T, base string) {
	t.Helper()
	mut, val := webhook.Configurations(webhook.ConfigurationOptions{Name: "modelguard", Namespace: faultOwnNamespace,
		Client: func(path string) admissionregistrationv1.WebhookClientConfig {
			u := base + path
			return admissionregistrationv1.WebhookClientConfig{URL: &u, CABundle: f.ca.certPEM}
		}})
	require.NoError(t, f.env.Client.Create(t.Context(), mut))
	require.NoError(t, f.env.Client.Create(t.Context(), val))
}

// waitJudging waits until the API server sends admissions to a ready modelguard: an
// uncovered exposure is denied by modelguard itself (the configurations take effect a moment
// after they are created).
func (f *faultEnv) waitJudging(t *testing.T) {
	t.Helper()
	f.namespace(t, "open")
	testenv.Eventually(t, time.Minute, func(context.Context) error {
		err := f.create(faultISVC("open", "probe", false), client.DryRunAll)
		if err == nil || !strings.Contains(err.Error(), "modelguard denied") {
			return fmt.Errorf("an uncovered exposure is not denied by modelguard yet: %v", err)
		}
		return nil
	})
}

func (f *faultEnv) serve(t *testing.T, args ...string) *faultServe {
	t.Helper()
	return f.serveOn(t, f.port, args...)
}

// serveOn starts `modelguard serve` on a webhook port and waits until it is ready.
func (f *faultEnv) serveOn(t *testing.T, port int, args ...string) *faultServe {
	t.Helper()
	p := &faultServe{f: f, webhookPort: port, probe: freePort(t), metricsPort: freePort(t), stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	p.name = fmt.Sprintf("webhook:%d", port)
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("modelguard %s stderr (tail):\n%s", p.name, tail(p.stderr, 40))
		}
	})
	p.start(t, args...)
	p.waitReady(t)
	return p
}

func (f *faultEnv) namespace(t *testing.T, name string) {
	t.Helper()
	err := f.env.Client.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err)
	}
}

func (f *faultEnv) applyFile(t *testing.T, name string) {
	t.Helper()
	out, errOut, err := f.env.Kubectl(t, "apply", "-f", testdataFile(name))
	require.NoError(t, err, "kubectl apply -f %s:\n%s%s", name, out, errOut)
}

func (f *faultEnv) applyYAML(t *testing.T, yaml string) {
	t.Helper()
	out, errOut, err := f.env.TryApply(t, yaml)
	require.NoError(t, err, "kubectl apply:\n%s%s", out, errOut)
}

func (f *faultEnv) create(obj client.Object, opts ...client.CreateOption) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return f.env.Client.Create(ctx, obj.DeepCopyObject().(client.Object), opts...)
}

func (f *faultEnv) mustNotExist(t *testing.T, obj client.Object) {
	t.Helper()
	err := f.env.Client.Get(t.Context(), client.ObjectKeyFromObject(obj), obj.DeepCopyObject().(client.Object))
	require.True(t, apierrors.IsNotFound(err), "%s/%s must not exist (get: %v)", obj.GetNamespace(), obj.GetName(), err)
}

// trustedClient writes as modelguard's own identity (the --trusted-user), as its reconciler.
func (f *faultEnv) trustedClient(t *testing.T) client.Client {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", f.kubeconfig)
	require.NoError(t, err)
	c, err := client.New(cfg, client.Options{Scheme: f.env.Scheme})
	require.NoError(t, err)
	return c
}

// servedSerial handshakes with the webhook port, verifying the chain against the test CA
// (the caBundle), and returns the serial of the certificate presented.
func (f *faultEnv) servedSerial(t *testing.T) *big.Int {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(f.ca.certPEM)
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", fmt.Sprintf("127.0.0.1:%d", f.port), &tls.Config{RootCAs: pool})
	require.NoError(t, err, "TLS handshake with the webhook port, verified against the caBundle")
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

// faultServe is one `modelguard serve` process, restartable on the same ports.
type faultServe struct {
	f                               *faultEnv
	name                            string
	webhookPort, probe, metricsPort int
	stdout, stderr                  *syncBuffer // across restarts

	mu   sync.Mutex
	args []string // of the last start
	cmd  *exec.Cmd
	done chan struct{}
}

// start starts the process with args (none: the args of the previous start).
func (p *faultServe) start(t *testing.T, args ...string) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if args == nil {
		args = p.args
	}
	p.args = args
	full := append([]string{"serve", "--cert-dir", p.f.certDir, "--webhook-port", strconv.Itoa(p.webhookPort),
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", p.probe),
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", p.metricsPort),
		"--trusted-user", faultUser}, args...)
	cmd := exec.Command(p.f.bin, full...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+p.f.kubeconfig)
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	// Its own process group, killed as a whole; and killed with the test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
}

func (p *faultServe) waitReady(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	exited := func() error {
		select {
		case <-done:
			return fmt.Errorf("modelguard %s exited:\n%s", p.name, tail(p.stderr, 20))
		default:
			return nil
		}
	}
	require.NoError(t, testenv.WaitReady(t.Context(), fmt.Sprintf("http://127.0.0.1:%d/readyz", p.probe), time.Minute, exited))
}

// kill SIGKILLs the process group and waits for the process to be gone.
func (p *faultServe) kill(t *testing.T) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("modelguard %s did not die", p.name)
	}
	p.cmd = nil
}

// stop ends the process group: SIGTERM, then SIGKILL.
func (p *faultServe) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	p.cmd = nil
}

// metrics returns the samples of the metrics endpoint, keyed by series ("name{labels}").
func (p *faultServe) metrics(t *testing.T) map[string]string {
	t.Helper()
	body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/metrics", p.metricsPort))
	require.NoError(t, err)
	out := map[string]string{}
	for _, l := range strings.Split(body, "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if i := strings.LastIndexByte(l, ' '); i > 0 {
			out[l[:i]] = l[i+1:]
		}
	}
	return out
}

func jsonLines(b *syncBuffer) []map[string]any {
	b.mu.Lock()
	text := b.b.String()
	b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

func tail(b *syncBuffer, n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	lines := strings.Split(strings.TrimRight(b.b.String(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// ---------------------------------------------------------------------------------------
// Objects.

func faultISVC(ns, name string, clusterLocal bool) *unstructured.Unstructured {
	u := testenv.NewUnstructured(testenv.InferenceServiceGVK, ns, name)
	if clusterLocal {
		u.SetLabels(map[string]string{"networking.kserve.io/visibility": "cluster-local"})
	}
	u.Object["spec"] = map[string]any{"predictor": map[string]any{"model": map[string]any{
		"modelFormat": map[string]any{"name": "sklearn"}, "storageUri": "gs://bucket/" + name}}}
	return u
}

func faultISVCYAML(ns, name string, clusterLocal bool) string {
	data, err := json.Marshal(faultISVC(ns, name, clusterLocal).Object)
	if err != nil {
		panic(err)
	}
	return string(data) // JSON is YAML
}

// faultVS publishes a service of ns on the external gateway istio-system/public-gateway.
func faultVS(ns, name, service string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
		"metadata": map[string]any{"namespace": ns, "name": name},
		"spec": map[string]any{
			"gateways": []any{"istio-system/public-gateway"},
			"hosts":    []any{name + ".models.example.com"},
			"http":     []any{map[string]any{"route": []any{map[string]any{"destination": map[string]any{"host": service + "." + ns + ".svc.cluster.local"}}}}},
		},
	}}
	return u
}

// ---------------------------------------------------------------------------------------
// Certificates, written as kubelet writes a Secret volume.

type faultCA struct {
	key     *ecdsa.PrivateKey
	cert    *x509.Certificate
	certPEM []byte
}

type faultLeaf struct {
	certPEM, keyPEM []byte
	serial          *big.Int
}

func newFaultCA(t *testing.T) *faultCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(t), Subject: pkix.Name{CommonName: "modelguard fault-test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &faultCA{key: key, cert: cert, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// leaf issues a serving certificate for 127.0.0.1 and localhost.
func (ca *faultCA) leaf(t *testing.T) faultLeaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	require.NoError(t, err)
	serial := randSerial(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "modelguard.modelguard-system.svc"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return faultLeaf{certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), serial: serial}
}

func randSerial(t *testing.T) *big.Int {
	t.Helper()
	n, err := crand.Int(crand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	require.NoError(t, err)
	return n
}

// kubeletWriteSecret updates dir the way kubelet's atomic writer updates a Secret volume: the
// files go to a new ..<timestamp> directory, a ..data_tmp symlink to it is renamed over
// ..data (one atomic switch of every file), the user-visible names are symlinks through
// ..data (created once), and the old timestamped directory is removed.
func kubeletWriteSecret(dir string, files map[string][]byte) error {
	ts, err := os.MkdirTemp(dir, ".."+time.Now().UTC().Format("2006_01_02_15_04_05."))
	if err != nil {
		return err
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(ts, name), data, 0o600); err != nil {
			return err
		}
	}
	dataLink := filepath.Join(dir, "..data")
	old, _ := os.Readlink(dataLink)
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dataLink); err != nil {
		return err
	}
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); errors.Is(err, os.ErrNotExist) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				return err
			}
		}
	}
	if old != "" {
		return os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}

// writeAtomic replaces path by a rename, as a ConfigMap volume update appears to a reader.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// ---------------------------------------------------------------------------------------
// A round-robin TCP proxy in front of replicas, standing in for a Service: new connections go
// to the next replica whose /readyz passes (the endpoints of ready pods); a connection lives
// and dies with its replica.

type rrProxy struct {
	ln       net.Listener
	backends []*faultServe

	mu     sync.Mutex
	next   int
	ready  []bool
	conns  []int // connections accepted per backend, in total
	live   []map[net.Conn]bool
	closed bool
}

func startRRProxy(t *testing.T, backends []*faultServe) *rrProxy {
	t.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	require.NoError(t, err)
	p := &rrProxy{ln: ln, backends: backends, ready: make([]bool, len(backends)), conns: make([]int, len(backends)), live: make([]map[net.Conn]bool, len(backends))}
	for i := range p.live {
		p.live[i] = map[net.Conn]bool{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	go p.probe(ctx)
	go p.accept()
	t.Cleanup(func() {
		cancel()
		p.mu.Lock()
		p.closed = true
		for _, m := range p.live {
			for c := range m {
				c.Close()
			}
		}
		p.mu.Unlock()
		ln.Close()
	})
	return p
}

func (p *rrProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// probe keeps the ready set current, as the endpoints controller does from readiness probes.
func (p *rrProxy) probe(ctx context.Context) {
	c := &http.Client{Timeout: time.Second}
	for ctx.Err() == nil {
		for i, b := range p.backends {
			ok := false
			if resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", b.probe)); err == nil {
				ok = resp.StatusCode == http.StatusOK
				resp.Body.Close()
			}
			p.mu.Lock()
			p.ready[i] = ok
			p.mu.Unlock()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *rrProxy) accept() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.serve(in)
	}
}

func (p *rrProxy) serve(in net.Conn) {
	for range len(p.backends) {
		p.mu.Lock()
		i := p.next
		p.next = (p.next + 1) % len(p.backends)
		ready := p.ready[i]
		p.mu.Unlock()
		if !ready {
			continue
		}
		out, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.backends[i].webhookPort), time.Second)
		if err != nil {
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			in.Close()
			out.Close()
			return
		}
		p.conns[i]++
		p.live[i][in] = true
		p.mu.Unlock()
		done := make(chan struct{}, 2)
		go func() { _, _ = io.Copy(out, in); done <- struct{}{} }()
		go func() { _, _ = io.Copy(in, out); done <- struct{}{} }()
		<-done // either side gone: the connection is gone
		in.Close()
		out.Close()
		p.mu.Lock()
		delete(p.live[i], in)
		p.mu.Unlock()
		return
	}
	in.Close() // no ready replica
}

// busiest is the replica with the most live connections (the API server keeps a few
// keep-alive connections).
func (p *rrProxy) busiest() *faultServe {
	p.mu.Lock()
	defer p.mu.Unlock()
	best := 0
	for i := range p.backends {
		if len(p.live[i]) > len(p.live[best]) {
			best = i
		}
	}
	return p.backends[best]
}

func (p *rrProxy) active(b *faultServe) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.backends {
		if p.backends[i] == b {
			return len(p.live[i])
		}
	}
	return 0
}

func (p *rrProxy) stats() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var parts []string
	for i, b := range p.backends {
		parts = append(parts, fmt.Sprintf("%s: %d live, %d total, ready=%v", b.name, len(p.live[i]), p.conns[i], p.ready[i]))
	}
	return strings.Join(parts, "; ")
}
