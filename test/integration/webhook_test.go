package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/modelguard/modelguard/policy"
	"github.com/modelguard/modelguard/reconciler"
	"github.com/modelguard/modelguard/test/envtest"
	"github.com/modelguard/modelguard/webhook"
)

// syncBuffer collects audit lines written by the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines returns the audit lines written so far, parsed.
func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		var m map[string]any
		if l != "" && json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "admission" {
			out = append(out, m)
		}
	}
	return out
}

// modelguard is a running `modelguard serve` (its manager, in process) registered with the
// test API server through real Mutating/ValidatingWebhookConfigurations and real TLS.
type modelguard struct {
	env *testenv.Env
	// reconcile runs the reconciler in the same manager, as its own user (trusted by the
	// guard, as the reconciler's service account is in a cluster).
	reconcile bool
	// scope runs the leader's webhook scope too (serve --mutating-webhook-configuration
	// modelguard), syncing every scopeInterval; needs reconcile.
	scope    bool
	webhooks *reconciler.WebhookScope
	server   *webhook.Server
	registry *prometheus.Registry
	audit    *syncBuffer
	config   string
	stop     context.CancelFunc
	done     chan error
}

// startEnv starts the API server with modelguard's webhook configurations installed.
func startEnv(t *testing.T, opts ...func(*testenv.Options)) *testenv.Env {
	t.Helper()
	mut, val := webhook.Configurations(webhook.ConfigurationOptions{Name: "modelguard", Namespace: "modelguard-system",
		Client: func(path string) admissionregistrationv1.WebhookClientConfig {
			p := strings.TrimPrefix(path, "/") // envtest joins host:port and the path with a "/"
			return admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Name: "modelguard", Namespace: "modelguard-system", Path: &p}}
		}})
	o := testenv.Options{WebhookInstallOptions: envtest.WebhookInstallOptions{
		MutatingWebhooks:   []*admissionregistrationv1.MutatingWebhookConfiguration{mut},
		ValidatingWebhooks: []*admissionregistrationv1.ValidatingWebhookConfiguration{val},
	}}
	for _, f := range opts {
		f(&o)
	}
	return testenv.Start(t, o)
}

var skipNameValidation = true

// reconcilerUser is the identity the in-process reconciler uses against the test API server.
const reconcilerUser = "modelguard-reconciler"

// startModelguard runs the manager until the test ends (or stop is called) and waits until it
// is ready: mesh state synced, webhook server serving.
func startModelguard(t *testing.T, env *testenv.Env, configYAML string) *modelguard {
	t.Helper()
	return startModelguardWith(t, &modelguard{env: env}, configYAML)
}

func startModelguardWith(t *testing.T, mg *modelguard, configYAML string) *modelguard {
	t.Helper()
	mg.audit, mg.registry = &syncBuffer{}, prometheus.NewRegistry()
	mg.config = filepath.Join(t.TempDir(), "guard.yaml")
	require.NoError(t, os.WriteFile(mg.config, []byte(configYAML), 0o600))
	mg.start(t)
	return mg
}

func (mg *modelguard) start(t *testing.T) {
	t.Helper()
	wio := mg.env.Environment.WebhookInstallOptions
	scheme, err := webhook.NewScheme()
	require.NoError(t, err)
	restCfg, trusted := mg.env.Config, []string(nil)
	if mg.reconcile {
		user, err := mg.env.Environment.AddUser(envtest.User{Name: reconcilerUser, Groups: []string{"system:masters"}}, nil)
		require.NoError(t, err)
		restCfg, trusted = user.Config(), []string{reconcilerUser}
	}
	health := webhook.NewWatchHealth()
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		WebhookServer: ctrlwebhook.NewServer(ctrlwebhook.Options{
			Host: wio.LocalServingHost, Port: wio.LocalServingPort, CertDir: wio.LocalServingCertDir}),
		Cache: webhook.CacheOptions(health),
		// Several tests (and restarts) in one process register the same controller names.
		Controller: config.Controller{SkipNameValidation: &skipNameValidation},
	})
	require.NoError(t, err)
	mg.registry = prometheus.NewRegistry()
	recorder := mgr.GetEventRecorder("modelguard")
	mg.server, err = webhook.Setup(mgr, webhook.Options{ConfigPath: mg.config, ReloadInterval: 200 * time.Millisecond,
		AuditOut: mg.audit, Registry: mg.registry, Recorder: recorder, TrustedUsers: trusted, WatchHealth: health})
	require.NoError(t, err)
	var resync func(context.Context)
	if mg.reconcile {
		resync, err = reconciler.Setup(mgr, mg.server.Config.Get, mg.registry, recorder, mg.server.Log)
		require.NoError(t, err)
	}
	if mg.scope {
		mg.webhooks = reconciler.NewWebhookScope(reconciler.WebhookScope{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(),
			Name: "modelguard", Namespace: "modelguard-system", Config: mg.server.Config.Get, Interval: scopeInterval,
			Results: reconciler.NewResults(mg.registry), Log: mg.server.Log})
		require.NoError(t, mgr.Add(mg.webhooks))
		mg.server.Config.OnChange(func(_, _ *policy.GuardConfig) { mg.webhooks.Kick() })
	}
	require.Error(t, mg.server.Mesh.Ready(), "not ready before the caches have synced")
	ctx, cancel := context.WithCancel(context.Background())
	if resync != nil {
		mg.server.Config.OnChange(func(_, _ *policy.GuardConfig) { resync(ctx) })
	}
	mg.stop, mg.done = cancel, make(chan error, 1)
	go func() { mg.done <- mgr.Start(ctx) }()
	t.Cleanup(func() { mg.shutdown(t) })
	testenv.Eventually(t, time.Minute, func(context.Context) error { return mg.server.Mesh.Ready() })
	testenv.Eventually(t, time.Minute, func(context.Context) error { return mgr.GetWebhookServer().StartedChecker()(nil) })
}

func (mg *modelguard) shutdown(t *testing.T) {
	if mg.stop == nil {
		return
	}
	mg.stop()
	select {
	case err := <-mg.done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("manager: %v", err)
		}
	case <-time.After(time.Minute):
		t.Error("manager did not stop")
	}
	mg.stop = nil
}

// apply runs kubectl apply on a testdata file; it returns stdout+stderr and the error.
func (mg *modelguard) apply(t *testing.T, file string, extra ...string) (string, error) {
	t.Helper()
	out, errOut, err := mg.env.Kubectl(t, append([]string{"apply", "-f", file}, extra...)...)
	return out + errOut, err
}

func (mg *modelguard) mustApply(t *testing.T, files ...string) {
	t.Helper()
	for _, f := range files {
		out, err := mg.apply(t, f)
		require.NoError(t, err, "kubectl apply -f %s:\n%s", f, out)
	}
}

// setConfig writes a new GuardConfig and waits until the server uses it (hot reload).
func (mg *modelguard) setConfig(t *testing.T, configYAML, ruleName string) {
	t.Helper()
	require.NoError(t, os.WriteFile(mg.config, []byte(configYAML), 0o600))
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if got := mg.server.Config.Get().Rules[0].Name; got != ruleName {
			return fmt.Errorf("config still has rule %q", got)
		}
		return nil
	})
}

func (mg *modelguard) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := mg.registry.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if hasLabels(m, labels) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, l := range m.GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

const enforceConfig = `apiVersion: modelguard.io/v1alpha1
kind: GuardConfig
rules: [{name: default, namespaceSelector: {}, mode: Enforce}]
`

const injectConfig = `apiVersion: modelguard.io/v1alpha1
kind: GuardConfig
rules:
- name: inject
  namespaceSelector: {}
  inject: {issuer: "https://issuer.example.com", jwksUri: "https://issuer.example.com/.well-known/jwks.json", audiences: [models]}
`

func testdataFile(name string) string { return filepath.Join("testdata", name) }

// TestWebhookSeeds applies both seed setups with kubectl through the real API server.
func TestWebhookSeeds(t *testing.T) {
	env := startEnv(t)
	mg := startModelguard(t, env, enforceConfig)

	t.Run("seldon gateway JWT: the gRPC route is refused", func(t *testing.T) {
		mg.mustApply(t, testdataFile("seldon/mesh.yaml"), testdataFile("seldon/model.yaml"))
		out, err := mg.apply(t, testdataFile("seldon/virtualservice.yaml"), "--dry-run=server")
		require.Error(t, err, out)
		assert.Contains(t, out, "modelguard denied VirtualService seldon-mesh/iris-route")
		assert.Contains(t, out, "[JWT_ROUTE_UNCOVERED]")
		assert.Contains(t, out, "prefix /inference.GRPCInferenceService (gRPC)")
		assert.Contains(t, out, "[MTLS_NOT_STRICT]")
		dry := mg.audit.lines(t)
		require.NotEmpty(t, dry)
		assert.Equal(t, true, dry[len(dry)-1]["dryRun"], "the audit line says dry run")

		out, err = mg.apply(t, testdataFile("seldon/virtualservice.yaml"))
		require.Error(t, err, out)
		assert.Contains(t, out, "[JWT_ROUTE_UNCOVERED]")
		_, _, getErr := env.Kubectl(t, "get", "virtualservice", "-n", "seldon-mesh", "iris-route")
		assert.Error(t, getErr, "a denied object is not stored")

		last := mg.audit.lines(t)
		l := last[len(last)-1]
		assert.Equal(t, "denied", l["decision"])
		assert.Equal(t, false, l["dryRun"])
		assert.Equal(t, "VirtualService", l["kind"])
		assert.NotEmpty(t, l["user"])
		assert.GreaterOrEqual(t, mg.counter(t, "modelguard_admission_decisions_total", map[string]string{"kind": "VirtualService", "decision": "denied"}), 2.0)
		assert.GreaterOrEqual(t, mg.counter(t, "modelguard_findings_total", map[string]string{"code": "JWT_ROUTE_UNCOVERED"}), 2.0)
	})

	t.Run("seldon repaired: admitted", func(t *testing.T) {
		mg.mustApply(t, testdataFile("seldon/fixed-policies.yaml"), testdataFile("seldon/virtualservice.yaml"))
	})

	t.Run("deleting the DENY policy that covers the admitted route is refused", func(t *testing.T) {
		_, errOut, err := env.Kubectl(t, "delete", "authorizationpolicy", "-n", "istio-system", "core-v2-ingress")
		require.Error(t, err)
		assert.Contains(t, errOut, "this change would leave Model seldon-mesh/iris uncovered")
	})

	t.Run("kserve namespace token: admitted, then weakening refused", func(t *testing.T) {
		mg.mustApply(t, testdataFile("kserve/mesh.yaml"), testdataFile("kserve/policies.yaml"), testdataFile("kserve/model.yaml"))

		out, err := mg.apply(t, testdataFile("kserve/require-token-without-when.yaml"))
		require.Error(t, err, out)
		assert.Contains(t, out, "this change would leave InferenceService models/sample uncovered")

		_, errOut, err := env.Kubectl(t, "delete", "peerauthentication", "-n", "models", "default")
		require.Error(t, err)
		assert.Contains(t, errOut, "MTLS_NOT_STRICT")

		_, errOut, err = env.Kubectl(t, "delete", "authorizationpolicy", "-n", "models", "unrelated")
		require.NoError(t, err, errOut)
	})

	t.Run("kserve without its RequestAuthentication: allowed, unreachable (warning)", func(t *testing.T) {
		_, errOut, err := env.Kubectl(t, "delete", "requestauthentication", "-n", "models", "sample-jwt")
		require.NoError(t, err, "nothing becomes exposed: %s", errOut)
		out, err := mg.apply(t, testdataFile("kserve/model-relabelled.yaml"))
		require.NoError(t, err, out)
		assert.Contains(t, out, "Warning: [MODEL_UNREACHABLE]")
		mg.mustApply(t, testdataFile("kserve/policies.yaml"))
	})

	t.Run("dropping cluster-local is refused", func(t *testing.T) {
		mg.mustApply(t, testdataFile("kserve/private-model.yaml"))
		out, err := mg.apply(t, testdataFile("kserve/private-model-published.yaml"))
		require.Error(t, err, out)
		assert.Contains(t, out, "[JWT_ROUTE_UNCOVERED]")
	})

	t.Run("Warn mode: kubectl prints the warnings", func(t *testing.T) {
		mg.setConfig(t, strings.ReplaceAll(strings.ReplaceAll(enforceConfig, "Enforce", "Warn"), "default", "rollout"), "rollout")
		out, err := mg.apply(t, testdataFile("kserve/open-model.yaml"))
		require.NoError(t, err, out)
		assert.Contains(t, out, "Warning: [JWT_ROUTE_UNCOVERED]")
		l := mg.audit.lines(t)
		assert.Equal(t, "warned", l[len(l)-1]["decision"])
	})

	t.Run("Audit mode: admitted silently, logged", func(t *testing.T) {
		mg.setConfig(t, strings.ReplaceAll(strings.ReplaceAll(enforceConfig, "Enforce", "Audit"), "default", "observe"), "observe")
		out, err := mg.apply(t, testdataFile("kserve/open-model-2.yaml"))
		require.NoError(t, err, out)
		assert.NotContains(t, out, "Warning:")
		l := mg.audit.lines(t)
		assert.Equal(t, "audited", l[len(l)-1]["decision"])
	})

	t.Run("a new mesh root namespace rebuilds the mesh state from the cache", func(t *testing.T) {
		mg.setConfig(t, "apiVersion: modelguard.io/v1alpha1\nkind: GuardConfig\nmeshRootNamespace: mesh-root\nrules: [{name: rerooted, namespaceSelector: {}}]\n", "rerooted")
		require.NoError(t, mg.server.Mesh.Ready())
		out, err := mg.apply(t, testdataFile("kserve/private-model-published.yaml"))
		require.Error(t, err, out)
		assert.Contains(t, out, "[JWT_ROUTE_UNCOVERED]", "judged on the rebuilt snapshot, not refused for want of one")
	})

	t.Run("inject: stored with the planned annotations, judged with the planned policies", func(t *testing.T) {
		mg.setConfig(t, injectConfig, "inject")
		mg.mustApply(t, testdataFile("kserve/injected-model.yaml"))
		out, _, err := env.Kubectl(t, "get", "inferenceservice", "-n", "injected", "sample", "-o", "jsonpath={.metadata.annotations}")
		require.NoError(t, err)
		assert.Contains(t, out, `"modelguard.io/inject":"true"`)
		assert.Contains(t, out, `"modelguard.io/jwt-issuer":"https://issuer.example.com"`)
		assert.Contains(t, out, `"modelguard.io/rule":"inject"`)
	})

	t.Run("events are recorded on the object's namespace", func(t *testing.T) {
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			out, _, err := env.Kubectl(t, "get", "events.events.k8s.io", "-n", "seldon-mesh", "-o", "jsonpath={.items[*].reason}")
			if err != nil || !strings.Contains(out, "ExposureDenied") {
				return fmt.Errorf("no ExposureDenied event yet: %q %v", out, err)
			}
			return nil
		})
	})

	t.Run("nothing is refused in a terminating namespace", func(t *testing.T) {
		// envtest runs no namespace controller: the namespace stays Terminating.
		_, errOut, err := env.Kubectl(t, "delete", "namespace", "models", "--wait=false")
		require.NoError(t, err, errOut)
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			_, errOut, err := env.Kubectl(t, "delete", "peerauthentication", "-n", "models", "default")
			if err != nil {
				return fmt.Errorf("still refused: %s", errOut)
			}
			return nil
		})
	})

	reportLatency(t, mg)

	t.Run("restart: ready only after the caches sync, and still judging", func(t *testing.T) {
		mg.setConfig(t, enforceConfig, "default")
		mg.shutdown(t)
		mg.start(t)
		out, err := mg.apply(t, testdataFile("kserve/private-model-published.yaml"))
		require.Error(t, err, out)
		assert.Contains(t, out, "[JWT_ROUTE_UNCOVERED]")
	})
}

// reportLatency logs the admission latency the webhook's own histogram measured during the
// run (figures for the issue note).
func reportLatency(t *testing.T, mg *modelguard) {
	families, err := mg.registry.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == "modelguard_admission_duration_seconds" {
			h := f.GetMetric()[0].GetHistogram()
			t.Logf("admissions: %d, mean %.2f ms, p50 ≈ %.2f ms, p99 ≈ %.2f ms (from the histogram's buckets); buckets: %s",
				h.GetSampleCount(), 1000*h.GetSampleSum()/float64(h.GetSampleCount()), 1000*quantile(h, 0.5), 1000*quantile(h, 0.99), buckets(h))
		}
	}
}

// quantile estimates a quantile from cumulative buckets by linear interpolation, as
// Prometheus' histogram_quantile does.
func quantile(h *dto.Histogram, q float64) float64 {
	rank := q * float64(h.GetSampleCount())
	lower, below := 0.0, 0.0
	for _, b := range h.GetBucket() {
		count := float64(b.GetCumulativeCount())
		if count >= rank {
			if count == below {
				return b.GetUpperBound()
			}
			return lower + (b.GetUpperBound()-lower)*(rank-below)/(count-below)
		}
		lower, below = b.GetUpperBound(), count
	}
	return lower
}

func buckets(h *dto.Histogram) string {
	var parts []string
	for _, b := range h.GetBucket() {
		parts = append(parts, fmt.Sprintf("≤%gms:%d", 1000*b.GetUpperBound(), b.GetCumulativeCount()))
	}
	return strings.Join(parts, " ")
}
