package reconciler

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/modelguard/modelguard/policy"
	"github.com/modelguard/modelguard/webhook"
)

// WebhookScope keeps modelguard's MutatingWebhookConfiguration scoped to the GuardConfig
// (webhook.ScopedMutatingWebhooks): the API server then calls the mutator only for the
// namespaces a rule injects in and for objects carrying modelguard.io/* annotations, and a
// create that needs no mutation pays for no mutating call. It runs on the leader, after every
// GuardConfig change and every Interval (which also undoes a re-applied manifest).
//
// It changes the webhooks' names, namespaceSelectors and matchConditions only: rules,
// failurePolicy and the rest come from webhook.ScopedMutatingWebhooks, and the clientConfig
// (Service and caBundle, which cert-manager's CA injector keeps) is copied from the first
// webhook of the live object. Safety never depends on the mutator (DESIGN.md).
type WebhookScope struct {
	Client    client.Client // writes the configuration
	Reader    client.Reader // reads it uncached (one object, read once a minute)
	Name      string        // the MutatingWebhookConfiguration
	Namespace string        // modelguard's own namespace, outside every webhook
	Config    func() *policy.GuardConfig
	Interval  time.Duration
	Results   *prometheus.CounterVec // modelguard_reconcile_total
	Log       *slog.Logger

	kick chan struct{}
}

// NewWebhookScope returns a WebhookScope ready to Start.
func NewWebhookScope(s WebhookScope) *WebhookScope {
	s.kick = make(chan struct{}, 1)
	if s.Interval <= 0 {
		s.Interval = time.Minute
	}
	return &s
}

// scopeKind is the kind label of the scope's reconciliations.
const scopeKind = "MutatingWebhookConfiguration"

// Start syncs at once, then after every Kick and every Interval, until ctx ends. It needs
// leader election (the manager's default for a Runnable): replicas would not fight, since
// they compute the same webhooks, but one writer is enough.
func (s *WebhookScope) Start(ctx context.Context) error {
	tick := time.NewTicker(s.Interval)
	defer tick.Stop()
	for {
		if _, err := s.Sync(ctx); err != nil && ctx.Err() == nil {
			s.Log.Error("scoping the mutating webhook", slog.String("configuration", s.Name), slog.String("error", err.Error()))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-s.kick:
		}
	}
}

// Kick asks for a sync soon (after a GuardConfig change); it never blocks.
func (s *WebhookScope) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Sync brings the live configuration's webhooks to the scope of the current GuardConfig and
// reports whether it wrote. A missing configuration is not an error (nothing to scope).
func (s *WebhookScope) Sync(ctx context.Context) (bool, error) {
	var written []admissionregistrationv1.MutatingWebhook
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		live := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := s.Reader.Get(ctx, types.NamespacedName{Name: s.Name}, live); err != nil {
			return err
		}
		want, err := s.desired(live)
		if err != nil {
			return err
		}
		if sameScope(live.Webhooks, want) {
			return nil
		}
		live.Webhooks = want
		if err := s.Client.Update(ctx, live); err != nil {
			return err
		}
		written = want
		return nil
	})
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		s.Results.WithLabelValues(scopeKind, "error").Inc()
		return false, fmt.Errorf("MutatingWebhookConfiguration %s: %w", s.Name, err)
	case written != nil:
		s.Results.WithLabelValues(scopeKind, "applied").Inc()
		s.Log.Info("mutating webhook scoped to the GuardConfig", slog.String("configuration", s.Name), slog.Any("webhooks", names(written)))
		return true, nil
	}
	s.Results.WithLabelValues(scopeKind, "unchanged").Inc()
	return false, nil
}

// desired are the scoped webhooks, calling where the live object's first webhook calls.
func (s *WebhookScope) desired(live *admissionregistrationv1.MutatingWebhookConfiguration) ([]admissionregistrationv1.MutatingWebhook, error) {
	if len(live.Webhooks) == 0 {
		return nil, fmt.Errorf("it has no webhook to take the clientConfig (Service, caBundle) from; re-apply the manifests")
	}
	cc := live.Webhooks[0].ClientConfig
	return webhook.ScopedMutatingWebhooks(s.Config(), webhook.ConfigurationOptions{Name: s.Name, Namespace: s.Namespace,
		Client: func(string) admissionregistrationv1.WebhookClientConfig { return *cc.DeepCopy() }}), nil
}

func names(ws []admissionregistrationv1.MutatingWebhook) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.Name
	}
	return out
}

// sameScope compares what the scope decides (and what the API server never defaults): the
// webhooks' names, order, namespaceSelectors, matchConditions, rules, client and failure
// policy. Comparing whole webhooks would see the API server's defaults as a difference and
// write again after every read.
func sameScope(live, want []admissionregistrationv1.MutatingWebhook) bool {
	if len(live) != len(want) {
		return false
	}
	for i := range live {
		l, w := live[i], want[i]
		if l.Name != w.Name || !equality.Semantic.DeepEqual(l.NamespaceSelector, w.NamespaceSelector) ||
			!equality.Semantic.DeepEqual(l.MatchConditions, w.MatchConditions) || !equality.Semantic.DeepEqual(l.Rules, w.Rules) ||
			!equality.Semantic.DeepEqual(l.ClientConfig, w.ClientConfig) || !equality.Semantic.DeepEqual(l.FailurePolicy, w.FailurePolicy) {
			return false
		}
	}
	return true
}
