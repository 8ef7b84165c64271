package reconciler

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/modelguard/modelguard/policy"
)

// Setup registers one reconciler per model kind the cluster serves (KServe or Seldon may be
// absent). The controllers run on the leader only; the webhook serves on every replica. Call
// the returned function after every GuardConfig change: it reconciles every model again.
func Setup(mgr ctrl.Manager, config func() *policy.GuardConfig, reg prometheus.Registerer, recorder events.EventRecorder, log *slog.Logger) (func(context.Context), error) {
	results := NewResults(reg)
	var all []*Reconciler
	for _, gvk := range []schema.GroupVersionKind{policy.GVKInferenceService, policy.GVKModel} {
		if _, err := mgr.GetRESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version); meta.IsNoMatchError(err) {
			log.Info("kind not served by the cluster: no reconciler", slog.String("kind", gvk.String()))
			continue
		} else if err != nil {
			return nil, fmt.Errorf("discovering %s: %w", gvk, err)
		}
		r := &Reconciler{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), GVK: gvk, Config: config, Recorder: recorder, Results: results}
		if err := r.SetupWithManager(mgr); err != nil {
			return nil, fmt.Errorf("reconciler for %s: %w", gvk.Kind, err)
		}
		all = append(all, r)
	}
	return func(ctx context.Context) {
		for _, r := range all {
			r.ResyncAll(ctx)
		}
	}, nil
}

// SetupWebhookScope adds the WebhookScope of the MutatingWebhookConfiguration name to mgr (it
// runs on the leader). Call Kick on the result after every GuardConfig change.
func SetupWebhookScope(mgr ctrl.Manager, name, namespace string, config func() *policy.GuardConfig, reg prometheus.Registerer, log *slog.Logger) (*WebhookScope, error) {
	s := NewWebhookScope(WebhookScope{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Name: name, Namespace: namespace,
		Config: config, Results: NewResults(reg), Log: log})
	if err := mgr.Add(s); err != nil {
		return nil, fmt.Errorf("webhook scope: %w", err)
	}
	return s, nil
}
