package integration_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/modelguard/modelguard/policy"
	"github.com/modelguard/modelguard/reconciler"
	testenv "github.com/modelguard/modelguard/test/envtest"
	"github.com/modelguard/modelguard/webhook"
)

// The groups the API server gives the modelguard service account's token.
var mgServiceAccountGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + mgNamespace, "system:authenticated"}

// rbacGuardConfig injects policies in every namespace, so that the reconciler has something to
// write.
const rbacGuardConfig = `apiVersion: modelguard.io/v1alpha1
kind: GuardConfig
rules:
- name: inject
  namespaceSelector: {}
  inject: {issuer: "https://issuer.example.com", jwksUri: "https://issuer.example.com/.well-known/jwks.json", audiences: [models]}
`

// rbacModelNamespace holds the InferenceServices the reconciler generates policies for.
const rbacModelNamespace = "rbac-models"

// TestRBAC applies the RBAC of manifests/base to the test API server for real and proves that
// it is enough for modelguard and no more: kubectl auth can-i as the service account, then
// modelguard's manager and the real `modelguard serve` binary (with the Deployment's args)
// running as that service account, informers synced, policies generated, events recorded,
// leader elected, and not a single "forbidden" in the binary's log.
func TestRBAC(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})

	// The API server authorizes with RBAC: otherwise every check below would pass vacuously.
	require.False(t, canI(t, env, "nobody", nil, "list", "secrets", "-A"), "RBAC authorization must be on in the test API server")
	require.False(t, canI(t, env, mgServiceAccount, mgServiceAccountGroups, "list", "pods", "-A"), "the service account has no rights before the RBAC is applied")

	base := renderKustomization(t, env, "base")
	var rbac []*unstructured.Unstructured
	for _, o := range base {
		switch o.GetKind() {
		case "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			rbac = append(rbac, o)
		}
	}
	require.Len(t, rbac, 6, "namespace, service account, two roles, two bindings")
	env.Apply(t, toYAML(t, rbac...))
	env.Apply(t, fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", rbacModelNamespace))

	t.Run("kubectl auth can-i", func(t *testing.T) { checkCanI(t, env) })

	// Impersonation is how the rest of the test acts as the service account: make sure the
	// API server sees that user, with the groups of a service account token.
	impersonated := rest.CopyConfig(env.Config)
	impersonated.Impersonate = rest.ImpersonationConfig{UserName: mgServiceAccount, Groups: mgServiceAccountGroups}
	t.Run("impersonation", func(t *testing.T) {
		cs, err := kubernetes.NewForConfig(impersonated)
		require.NoError(t, err)
		review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(t.Context(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		require.NoError(t, err)
		assert.Equal(t, mgServiceAccount, review.Status.UserInfo.Username)
		assert.Subset(t, review.Status.UserInfo.Groups, mgServiceAccountGroups)
		assert.NotContains(t, review.Status.UserInfo.Groups, "system:masters")
	})

	configPath := filepath.Join(t.TempDir(), "guard.yaml")
	require.NoError(t, os.WriteFile(configPath, []byte(rbacGuardConfig), 0o600))

	t.Run("the manager runs as the service account", func(t *testing.T) {
		runManagerAs(t, env, impersonated, configPath)
	})
	t.Run("modelguard serve with the Deployment's args runs as the service account", func(t *testing.T) {
		runServeAs(t, env, base, configPath)
	})
}

// checkCanI asks the API server what the service account may do.
func checkCanI(t *testing.T, env *testenv.Env) {
	ns := []string{"-n", rbacModelNamespace}
	own := []string{"-n", mgNamespace}
	all := []string{"-A"}
	type check struct {
		verb, resource string
		scope          []string
	}
	var allowed, denied []check

	// Read, cluster-wide: every kind the informers list and watch.
	for _, res := range []string{
		"pods", "services", "namespaces",
		"deployments.apps", "statefulsets.apps", "daemonsets.apps",
		"authorizationpolicies.security.istio.io", "requestauthentications.security.istio.io", "peerauthentications.security.istio.io",
		"virtualservices.networking.istio.io", "gateways.networking.istio.io", "destinationrules.networking.istio.io",
		"inferenceservices.serving.kserve.io", "models.mlops.seldon.io",
	} {
		for _, verb := range []string{"get", "list", "watch"} {
			allowed = append(allowed, check{verb, res, all})
		}
	}
	// Write: the generated policies (server-side apply is a patch), and events.
	for _, res := range []string{"authorizationpolicies.security.istio.io", "requestauthentications.security.istio.io"} {
		for _, verb := range []string{"create", "update", "patch", "delete"} {
			allowed = append(allowed, check{verb, res, ns})
		}
	}
	allowed = append(allowed,
		check{"create", "events.events.k8s.io", ns}, check{"patch", "events.events.k8s.io", ns},
		// Leader election in its own namespace: its Lease, and the core event on it.
		check{"get", "leases.coordination.k8s.io/modelguard-reconciler", own},
		check{"update", "leases.coordination.k8s.io/modelguard-reconciler", own},
		check{"create", "leases.coordination.k8s.io", own},
		check{"create", "events", own},
		// The scope of its own mutating webhook, by name.
		check{"get", "mutatingwebhookconfigurations.admissionregistration.k8s.io/modelguard", all},
		check{"update", "mutatingwebhookconfigurations.admissionregistration.k8s.io/modelguard", all},
	)

	denied = []check{
		{"get", "secrets", all}, {"list", "secrets", all}, {"watch", "secrets", all},
		{"get", "secrets", own}, {"list", "secrets", own},
		{"list", "configmaps", all}, {"get", "configmaps", own},
		{"create", "pods", ns}, {"delete", "pods", ns}, {"create", "pods", append([]string{"--subresource=exec"}, ns...)},
		{"delete", "virtualservices.networking.istio.io", ns}, {"create", "virtualservices.networking.istio.io", ns},
		{"update", "peerauthentications.security.istio.io", ns}, {"delete", "peerauthentications.security.istio.io", ns},
		{"update", "destinationrules.networking.istio.io", ns}, {"update", "gateways.networking.istio.io", ns},
		{"update", "inferenceservices.serving.kserve.io", ns}, {"patch", "models.mlops.seldon.io", ns},
		{"update", "inferenceservices.serving.kserve.io", append([]string{"--subresource=finalizers"}, ns...)},
		{"update", "deployments.apps", ns}, {"delete", "namespaces", all}, {"update", "services", ns},
		{"create", "clusterroles.rbac.authorization.k8s.io", all}, {"create", "clusterrolebindings.rbac.authorization.k8s.io", all},
		{"create", "rolebindings.rbac.authorization.k8s.io", own},
		{"create", "serviceaccounts", append([]string{"--subresource=token"}, own...)}, {"impersonate", "users", all},
		{"update", "mutatingwebhookconfigurations.admissionregistration.k8s.io", all},
		{"update", "mutatingwebhookconfigurations.admissionregistration.k8s.io/other-webhook", all},
		{"delete", "mutatingwebhookconfigurations.admissionregistration.k8s.io/modelguard", all},
		{"patch", "mutatingwebhookconfigurations.admissionregistration.k8s.io/modelguard", all},
		{"create", "mutatingwebhookconfigurations.admissionregistration.k8s.io", all},
		{"list", "mutatingwebhookconfigurations.admissionregistration.k8s.io", all},
		{"update", "validatingwebhookconfigurations.admissionregistration.k8s.io/modelguard", all},
		{"delete", "validatingwebhookconfigurations.admissionregistration.k8s.io", all},
		// Leases: only its own, only in its namespace.
		{"update", "leases.coordination.k8s.io/some-other-controller", own}, {"delete", "leases.coordination.k8s.io/modelguard-reconciler", own},
		{"list", "leases.coordination.k8s.io", own}, {"create", "leases.coordination.k8s.io", []string{"-n", "kube-system"}},
		{"update", "leases.coordination.k8s.io/modelguard-reconciler", []string{"-n", "kube-system"}},
		// Core events only where leader election records them.
		{"create", "events", ns},
	}

	for _, c := range allowed {
		assert.True(t, canI(t, env, mgServiceAccount, mgServiceAccountGroups, c.verb, c.resource, c.scope...), "can %s %s %v", c.verb, c.resource, c.scope)
	}
	for _, c := range denied {
		assert.False(t, canI(t, env, mgServiceAccount, mgServiceAccountGroups, c.verb, c.resource, c.scope...), "cannot %s %s %v", c.verb, c.resource, c.scope)
	}
	t.Logf("kubectl auth can-i: checked %d requests that must be allowed and %d that must be denied", len(allowed), len(denied))
}

// canI runs kubectl auth can-i as user (and groups); resource may be "resource/name", extra
// holds the scope (-n, -A) and --subresource. A resource kubectl does not know fails the test:
// it would answer "no" for a typo.
func canI(t *testing.T, env *testenv.Env, user string, groups []string, verb, resource string, extra ...string) bool {
	t.Helper()
	args := []string{"auth", "can-i", verb, resource, "--as", user}
	for _, g := range groups {
		args = append(args, "--as-group", g)
	}
	args = append(args, extra...)
	out, errOut, err := env.Kubectl(t, args...)
	answer := strings.Fields(out)
	var exit *exec.ExitError
	switch {
	case strings.Contains(errOut, "doesn't have a resource type"):
		t.Fatalf("kubectl %s: %s", strings.Join(args, " "), errOut)
	case len(answer) == 0 || (err != nil && !errors.As(err, &exit)):
		t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	switch answer[0] {
	case "yes":
		return true
	case "no":
		return false
	}
	t.Fatalf("kubectl %s: unexpected answer %q %s", strings.Join(args, " "), out, errOut)
	return false
}

// runManagerAs runs modelguard's manager (webhook side and reconciler) in process with the
// impersonated config: the mesh state syncs only if every informer can list and watch, and
// the reconciler generates the policies of an annotated InferenceService and records events.
func runManagerAs(t *testing.T, env *testenv.Env, restCfg *rest.Config, configPath string) {
	scheme, err := webhook.NewScheme()
	require.NoError(t, err)
	wio := env.Environment.WebhookInstallOptions
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:         scheme,
		Metrics:        metricsserver.Options{BindAddress: "0"},
		WebhookServer:  ctrlwebhook.NewServer(ctrlwebhook.Options{Host: wio.LocalServingHost, Port: freePort(t), CertDir: wio.LocalServingCertDir}),
		Cache:          webhook.CacheOptions(nil),
		LeaderElection: false,
		Controller:     config.Controller{SkipNameValidation: ptrTo(true)},
	})
	require.NoError(t, err)
	registry := prometheus.NewRegistry()
	recorder := mgr.GetEventRecorder("modelguard")
	srv, err := webhook.Setup(mgr, webhook.Options{ConfigPath: configPath, AuditOut: io.Discard, Registry: registry,
		Recorder: recorder, TrustedUsers: []string{mgServiceAccount}})
	require.NoError(t, err)
	_, err = reconciler.Setup(mgr, srv.Config.Get, registry, recorder, srv.Log)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err, "manager")
		case <-time.After(time.Minute):
			t.Error("manager did not stop")
		}
	}()

	began := time.Now()
	testenv.Eventually(t, time.Minute, func(context.Context) error { return srv.Mesh.Ready() })
	t.Logf("mesh state synced as %s in %s", mgServiceAccount, time.Since(began).Round(time.Millisecond))

	cfg, err := policy.ParseConfig("guard.yaml", []byte(rbacGuardConfig))
	require.NoError(t, err)
	createAnnotatedModel(t, env, cfg, "in-process")
	waitGeneratedPolicies(t, env, "in-process")

	// The reconciler's event on the model (events.k8s.io, in the model's namespace).
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		var list eventsv1.EventList
		if err := env.Client.List(ctx, &list, client.InNamespace(rbacModelNamespace)); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Regarding.Name == "in-process" && e.Reason == reconciler.ReasonApplied {
				return nil
			}
		}
		return fmt.Errorf("no %s event on the model yet (%d events)", reconciler.ReasonApplied, len(list.Items))
	})
	assert.Zero(t, counterValue(t, registry, "modelguard_reconcile_total", map[string]string{"result": "error"}), "reconcile errors")
	assert.Positive(t, counterValue(t, registry, "modelguard_reconcile_total", map[string]string{"kind": "InferenceService", "result": "applied"}))
}

// runServeAs runs the modelguard binary with the Deployment's own args (paths and ports moved
// to the test's) and a kubeconfig that impersonates the service account.
func runServeAs(t *testing.T, env *testenv.Env, base []*unstructured.Unstructured, configPath string) {
	dep := typed[appsv1.Deployment](t, mustFind(t, base, "Deployment", mgNamespace, "modelguard"))
	wio := env.Environment.WebhookInstallOptions
	probe, metrics := freePort(t), freePort(t)
	args, err := replaceFlags(dep.Spec.Template.Spec.Containers[0].Args, map[string]string{
		"--config":                    configPath,
		"--cert-dir":                  wio.LocalServingCertDir,
		"--webhook-port":              fmt.Sprint(freePort(t)),
		"--metrics-bind-address":      fmt.Sprintf("127.0.0.1:%d", metrics),
		"--health-probe-bind-address": fmt.Sprintf("127.0.0.1:%d", probe),
	})
	require.NoError(t, err)
	t.Logf("modelguard %s", strings.Join(args, " "))

	kubeconfig := impersonatingKubeconfig(t, env.Kubeconfig())
	bin := buildModelguard(t)
	logFile := filepath.Join(t.TempDir(), "stderr.log")
	stderr, err := os.Create(logFile)
	require.NoError(t, err)
	defer stderr.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.Stdout, cmd.Stderr = io.Discard, stderr
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-exited:
			return err
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			return errors.New("modelguard serve did not stop within 30s of SIGINT")
		}
	}
	defer func() {
		_ = stop()
		if t.Failed() {
			log, _ := os.ReadFile(logFile)
			t.Logf("modelguard serve stderr:\n%s", log)
		}
	}()

	began := time.Now()
	testenv.Eventually(t, time.Minute, func(context.Context) error {
		return httpOK(fmt.Sprintf("http://127.0.0.1:%d/readyz", probe))
	})
	t.Logf("modelguard serve ready as %s in %s", mgServiceAccount, time.Since(began).Round(time.Millisecond))

	// --leader-elect: the Lease in modelguard-system, and client-go's core event on it.
	lease := types.NamespacedName{Namespace: mgNamespace, Name: "modelguard-reconciler"}
	testenv.Eventually(t, time.Minute, func(ctx context.Context) error {
		var l coordinationv1.Lease
		if err := env.Client.Get(ctx, lease, &l); err != nil {
			return err
		}
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
			return errors.New("lease not held")
		}
		return nil
	})
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		var list corev1.EventList
		if err := env.Client.List(ctx, &list, client.InNamespace(mgNamespace)); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Reason == "LeaderElection" && e.InvolvedObject.Kind == "Lease" {
				return nil
			}
		}
		return errors.New("no LeaderElection event yet")
	})

	// The leader's reconciler writes the generated policies.
	cfg, err := policy.ParseConfig("guard.yaml", []byte(rbacGuardConfig))
	require.NoError(t, err)
	createAnnotatedModel(t, env, cfg, "from-binary")
	waitGeneratedPolicies(t, env, "from-binary")

	// A clean stop releases the Lease (an update).
	require.NoError(t, stop(), "modelguard serve exits 0 on SIGINT")
	var l coordinationv1.Lease
	require.NoError(t, env.Client.Get(t.Context(), lease, &l))
	assert.True(t, l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "", "the lease is released on exit")

	log, err := os.ReadFile(logFile)
	require.NoError(t, err)
	if m := regexp.MustCompile(`(?i).*(forbidden|cannot (get|list|watch|create|update|patch|delete)).*`).Find(log); m != nil {
		t.Errorf("modelguard serve was refused something it needs:\n%s", m)
	}
}

// replaceFlags sets the values of flags given as "--flag value" or "--flag=value"; each flag
// must be there.
func replaceFlags(args []string, values map[string]string) ([]string, error) {
	out := append([]string(nil), args...)
	seen := map[string]bool{}
	for i := 0; i < len(out); i++ {
		name, _, hasValue := strings.Cut(out[i], "=")
		v, ok := values[name]
		if !ok {
			continue
		}
		seen[name] = true
		if hasValue {
			out[i] = name + "=" + v
			continue
		}
		if i+1 >= len(out) {
			return nil, fmt.Errorf("%s has no value", name)
		}
		out[i+1] = v
		i++
	}
	for name := range values {
		if !seen[name] {
			return nil, fmt.Errorf("the Deployment's args have no %s", name)
		}
	}
	return out, nil
}

// impersonatingKubeconfig copies the admin kubeconfig with every user impersonating the
// modelguard service account.
func impersonatingKubeconfig(t *testing.T, admin string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(admin)
	require.NoError(t, err)
	require.NotEmpty(t, cfg.AuthInfos)
	for _, ai := range cfg.AuthInfos {
		ai.Impersonate = mgServiceAccount
		ai.ImpersonateGroups = mgServiceAccountGroups
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*cfg, path))
	return path
}

// createAnnotatedModel creates, as the admin, an InferenceService carrying the annotations the
// mutating webhook would set (no webhook is registered in this test).
func createAnnotatedModel(t *testing.T, env *testenv.Env, cfg *policy.GuardConfig, name string) {
	t.Helper()
	isvc := testenv.NewUnstructured(policy.GVKInferenceService, rbacModelNamespace, name)
	isvc.Object["spec"] = map[string]any{"predictor": map[string]any{"model": map[string]any{
		"modelFormat": map[string]any{"name": "sklearn"}, "storageUri": "gs://kfserving-examples/models/sklearn/1.0/model"}}}
	rule := cfg.RuleFor(map[string]string{"kubernetes.io/metadata.name": rbacModelNamespace})
	require.NotNil(t, rule)
	plan, err := policy.PlanFor(rule, isvc)
	require.NoError(t, err)
	require.NotNil(t, plan, "the rule plans policies")
	isvc.SetAnnotations(plan.Annotations)
	require.NoError(t, env.Client.Create(t.Context(), isvc))
}

// waitGeneratedPolicies waits for the RequestAuthentication and AuthorizationPolicy of an
// InferenceService, made by modelguard.
func waitGeneratedPolicies(t *testing.T, env *testenv.Env, model string) {
	t.Helper()
	name := types.NamespacedName{Namespace: rbacModelNamespace, Name: policy.GeneratedName("InferenceService", model)}
	began := time.Now()
	testenv.Eventually(t, time.Minute, func(ctx context.Context) error {
		for _, obj := range []client.Object{&securityv1.RequestAuthentication{}, &securityv1.AuthorizationPolicy{}} {
			if err := env.Client.Get(ctx, name, obj); err != nil {
				return err
			}
			if obj.GetLabels()[policy.LabelManagedBy] != policy.ManagedByValue {
				return fmt.Errorf("%T %s is not managed by modelguard", obj, name)
			}
			if refs := obj.GetOwnerReferences(); len(refs) != 1 || refs[0].Name != model {
				return fmt.Errorf("%T %s: owner references %v", obj, name, refs)
			}
		}
		return nil
	})
	t.Logf("generated policies for %s/%s in %s", rbacModelNamespace, model, time.Since(began).Round(time.Millisecond))
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if hasLabels(m, labels) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
