package integration_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/modelguard/modelguard/policy"
	"github.com/modelguard/modelguard/reconciler"
	"github.com/modelguard/modelguard/test/envtest"
	"github.com/modelguard/modelguard/webhook"
)

// TestReconcilerLeaderFailover runs two reconciler replicas with leader election: only the
// leader reconciles; when it stops, the other takes over and undoes a change made meanwhile.
func TestReconcilerLeaderFailover(t *testing.T) {
	env := testenv.Start(t, testenv.Options{}) // no webhooks: the reconciler alone
	cfg, err := policy.ParseConfig("failover", []byte(reconcileConfig))
	require.NoError(t, err)
	env.Apply(t, "apiVersion: v1\nkind: Namespace\nmetadata: {name: failover}\n")

	a := startReplica(t, env, cfg, "a")
	waitLeader(t, a, "a")
	b := startReplica(t, env, cfg, "b")

	// The mutating webhook is not running here: annotate as it would.
	isvc := testenv.NewUnstructured(policy.GVKInferenceService, "failover", "sample")
	isvc.Object["spec"] = map[string]any{"predictor": map[string]any{"model": map[string]any{"modelFormat": map[string]any{"name": "sklearn"}}}}
	plan, err := policy.PlanFor(cfg.RuleFor(map[string]string{"kubernetes.io/metadata.name": "failover"}), isvc)
	require.NoError(t, err)
	isvc.SetAnnotations(plan.Annotations)
	require.NoError(t, env.Client.Create(context.Background(), isvc))
	name := types.NamespacedName{Namespace: "failover", Name: policy.GeneratedName("InferenceService", "sample")}
	ap := &securityv1.AuthorizationPolicy{}
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error { return env.Client.Get(ctx, name, ap) })
	select {
	case <-b.Elected():
		t.Fatal("b leads while a still runs")
	default:
	}

	a.stop()
	require.NoError(t, env.Client.Delete(context.Background(), ap)) // meanwhile, someone deletes it
	waitLeader(t, b, "b")
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		err := env.Client.Get(ctx, name, &securityv1.AuthorizationPolicy{})
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("not restored yet")
		}
		return err
	})
}

type replica struct {
	ctrl.Manager
	stop func()
}

func startReplica(t *testing.T, env *testenv.Env, cfg *policy.GuardConfig, id string) *replica {
	t.Helper()
	scheme, err := webhook.NewScheme()
	require.NoError(t, err)
	lease, renew, retry, skip := 3*time.Second, 2*time.Second, 250*time.Millisecond, true
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, Cache: webhook.CacheOptions(nil),
		LeaderElection: true, LeaderElectionID: "modelguard-reconciler", LeaderElectionNamespace: "default",
		LeaderElectionReleaseOnCancel: true, LeaseDuration: &lease, RenewDeadline: &renew, RetryPeriod: &retry,
		// Two replicas in one test process register the same controller names.
		Controller: config.Controller{SkipNameValidation: &skip},
	})
	require.NoError(t, err)
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	_, err = reconciler.Setup(mgr, func() *policy.GuardConfig { return cfg }, prometheus.NewRegistry(), nil, log)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	r := &replica{Manager: mgr}
	r.stop = func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("replica %s: %v", id, err)
			}
		case <-time.After(time.Minute):
			t.Errorf("replica %s did not stop", id)
		}
		r.stop = func() {}
	}
	t.Cleanup(func() { r.stop() })
	return r
}

func waitLeader(t *testing.T, r *replica, id string) {
	t.Helper()
	select {
	case <-r.Elected():
	case <-time.After(time.Minute):
		t.Fatalf("replica %s never became leader", id)
	}
}
