package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	securityapi "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/modelguard/modelguard/test/fleet"
)

// overheadReport compares kube-apiserver create latency with modelguard's webhooks
// registered and without, on the same InferenceServices.
type overheadReport struct {
	Creates   int            `json:"creates_per_mode_per_run"`
	Batch     int            `json:"batch"`
	Runs      []overheadRun  `json:"runs"`
	Median    overheadRatios `json:"median"`
	Namespace int            `json:"namespaces"`
	// APIServerCallMs is kube-apiserver's own mean time per call of each webhook (by name),
	// over every run: the round trip it waits for, modelguard's time included.
	APIServerCallMs map[string]float64 `json:"apiserver_mean_ms_per_webhook_call"`
}

type overheadRun struct {
	WithP50ms, WithP99ms, NoneP50ms, NoneP99ms float64
	RatioP50, RatioP99                         float64
	// ValidatingP50ms and RatioValidatingP50 are with the validating webhooks alone (the
	// mutating one removed): what a create costs when no mutation is needed.
	ValidatingP50ms, RatioValidatingP50 float64
	// MutatedP50ms and RatioMutatedP50 are with every webhook and the mutating one called on
	// every create (as installed, or where an inject rule applies).
	MutatedP50ms, RatioMutatedP50 float64
	// NoopP50ms and RatioNoopP50 are with a no-op webhook alone (noop.go): the floor any
	// webhook call costs on this machine.
	NoopP50ms, RatioNoopP50 float64
	// RatioOverNoopP50 is all webhooks over the no-op webhook alone: what modelguard adds to a
	// create beyond the cost of calling any webhook.
	RatioOverNoopP50 float64
	// ServerP50ms is the median time modelguard spent on one webhook call (mutating or
	// validating), from its own histogram (a bucket bound): what the server adds, as opposed
	// to what the API server spends calling it.
	ServerP50ms float64
}

type overheadRatios struct {
	ServerP50ms float64 `json:"server_p50_ms_per_call_bucket"`
	WithP50ms   float64 `json:"with_p50_ms"`
	NoneP50ms   float64 `json:"none_p50_ms"`
	WithP99ms   float64 `json:"with_p99_ms"`
	NoneP99ms   float64 `json:"none_p99_ms"`
	RatioP50    float64 `json:"ratio_p50"`
	RatioP99    float64 `json:"ratio_p99"`
	// RatioValidatingP50 is the median ratio with the validating webhooks alone.
	RatioValidatingP50 float64 `json:"ratio_p50_validating_only"`
	// RatioMutatedP50 is the median ratio with the mutating webhook called on every create.
	RatioMutatedP50 float64 `json:"ratio_p50_mutating_called"`
	// RatioNoopP50 is the median ratio with a no-op webhook alone: the floor of one call.
	RatioNoopP50 float64 `json:"ratio_p50_noop_webhook"`
	// RatioOverNoopP50 is the median of all webhooks over the no-op webhook.
	RatioOverNoopP50 float64 `json:"ratio_p50_over_noop_webhook"`
}

const (
	overheadCreates    = 2000
	overheadBatch      = 100
	overheadNamespaces = 20
	probeNamespace     = "overhead-probe"
)

func overheadNS(i int) string { return fmt.Sprintf("overhead-%02d", i) }

func runOverhead(ctx context.Context, o options) (*overheadReport, error) {
	c, err := startCluster(o.root, filepath.Join(o.dir, "overhead"), o.etcdFsync)
	if err != nil {
		return nil, err
	}
	defer c.stop()
	if err := c.create(ctx, overheadObjects(), 8); err != nil {
		return nil, err
	}
	s, err := startServer(ctx, c.serverOptions(o.bin, "overhead"))
	if err != nil {
		return nil, err
	}
	defer s.stop()
	noop, err := startNoopWebhook(c.env.WebhookInstallOptions.LocalServingCertDir)
	if err != nil {
		return nil, err
	}
	defer noop.stop()
	c.noop = noop
	rep := &overheadReport{Creates: overheadCreates, Batch: overheadBatch, Namespace: overheadNamespaces}
	var p50s, p99s, w50, w99, n50, n99, server, v50s, noop50s, mut50s, over50s []float64
	for run := range o.runs {
		if run == 0 && o.profileDir != "" {
			stop := c.profileAPIServer(ctx, filepath.Join(o.profileDir, "kube-apiserver-cpu.pprof"))
			defer stop()
		}
		before, _ := s.durations(ctx)
		r, err := overheadOnce(ctx, c)
		if err != nil {
			return nil, err
		}
		after, _ := s.durations(ctx)
		r.ServerP50ms = after.quantileSince(before, 0.5) * 1000
		server = append(server, r.ServerP50ms)
		rep.Runs = append(rep.Runs, r)
		p50s, p99s, v50s, noop50s = append(p50s, r.RatioP50), append(p99s, r.RatioP99), append(v50s, r.RatioValidatingP50), append(noop50s, r.RatioNoopP50)
		mut50s, over50s = append(mut50s, r.RatioMutatedP50), append(over50s, r.RatioOverNoopP50)
		w50, w99, n50, n99 = append(w50, r.WithP50ms), append(w99, r.WithP99ms), append(n50, r.NoneP50ms), append(n99, r.NoneP99ms)
		progress("overhead: run %d: create p50 %.2f ms with webhooks, %.2f ms without (×%.3f); p99 %.2f / %.2f ms (×%.3f); validating only p50 %.2f ms (×%.3f); no-op webhook p50 %.2f ms (×%.3f); mutating called p50 %.2f ms (×%.3f); server p50 per call ≤ %.2g ms",
			run+1, r.WithP50ms, r.NoneP50ms, r.RatioP50, r.WithP99ms, r.NoneP99ms, r.RatioP99, r.ValidatingP50ms, r.RatioValidatingP50, r.NoopP50ms, r.RatioNoopP50, r.MutatedP50ms, r.RatioMutatedP50, r.ServerP50ms)
	}
	if means, err := c.webhookCallMeans(ctx); err == nil {
		rep.APIServerCallMs = map[string]float64{}
		for name, v := range means {
			rep.APIServerCallMs[name] = v * 1000
			progress("overhead: kube-apiserver's mean time per call of %s: %.3f ms", name, v*1000)
		}
	} else {
		progress("overhead: %v", err)
	}
	rep.Median = overheadRatios{WithP50ms: median(w50), NoneP50ms: median(n50), WithP99ms: median(w99), NoneP99ms: median(n99),
		RatioP50: median(p50s), RatioP99: median(p99s), ServerP50ms: median(server), RatioValidatingP50: median(v50s), RatioNoopP50: median(noop50s), RatioMutatedP50: median(mut50s),
		RatioOverNoopP50: median(over50s)}
	return rep, nil
}

// webhookMode is which of modelguard's webhook configurations are registered.
type webhookMode int

const (
	noWebhooks webhookMode = iota
	noopOnly
	validatingOnly
	allWebhooks        // the mutating webhook scoped to the default GuardConfig (no inject)
	allWebhooksMutated // the mutating webhook as installed: a call on every create
)

// overheadOnce creates every InferenceService once in each mode (no webhooks, the
// validating ones alone, all), batch by batch, rotating which mode goes first, and deletes
// them after each batch (untimed).
func overheadOnce(ctx context.Context, c *cluster) (overheadRun, error) {
	lat := map[webhookMode][]time.Duration{}
	modes := []webhookMode{noWebhooks, noopOnly, validatingOnly, allWebhooks, allWebhooksMutated}
	for b := range overheadCreates / overheadBatch {
		for k := range modes {
			mode := modes[(b+k)%len(modes)]
			if err := switchWebhooks(ctx, c, mode); err != nil {
				return overheadRun{}, err
			}
			l, err := createBatch(ctx, c, b)
			if err != nil {
				return overheadRun{}, fmt.Errorf("webhook mode %d: %w", mode, err)
			}
			lat[mode] = append(lat[mode], l...)
		}
	}
	w, n, v, z := summarise(lat[allWebhooks]), summarise(lat[noWebhooks]), summarise(lat[validatingOnly]), summarise(lat[noopOnly])
	m := summarise(lat[allWebhooksMutated])
	return overheadRun{WithP50ms: ms(w.P50), WithP99ms: ms(w.P99), NoneP50ms: ms(n.P50), NoneP99ms: ms(n.P99),
		RatioP50: float64(w.P50) / float64(n.P50), RatioP99: float64(w.P99) / float64(n.P99),
		ValidatingP50ms: ms(v.P50), RatioValidatingP50: float64(v.P50) / float64(n.P50),
		NoopP50ms: ms(z.P50), RatioNoopP50: float64(z.P50) / float64(n.P50), RatioOverNoopP50: float64(w.P50) / float64(z.P50),
		MutatedP50ms: ms(m.P50), RatioMutatedP50: float64(m.P50) / float64(n.P50)}, nil
}

func createBatch(ctx context.Context, c *cluster, b int) ([]time.Duration, error) {
	var lat []time.Duration
	var made []client.Object
	defer func() {
		for _, o := range made {
			_ = c.client.Delete(ctx, o)
		}
	}()
	for k := range overheadBatch {
		i := b*overheadBatch + k
		isvc := fleet.InferenceService(overheadNS(i%overheadNamespaces), fmt.Sprintf("isvc-%04d", i))
		start := time.Now()
		if err := c.client.Create(ctx, isvc); err != nil {
			return nil, fmt.Errorf("creating %s/%s: %w", isvc.GetNamespace(), isvc.GetName(), err)
		}
		lat = append(lat, time.Since(start))
		made = append(made, isvc)
	}
	return lat, nil
}

// switchWebhooks registers the webhooks of a mode and waits until the API server acts on
// it: with the validating webhook, an uncovered InferenceService is refused; without, it is
// created. The mutating webhook has no such probe (it changes nothing here): a pause lets the
// API server's webhook informer catch up (it takes milliseconds).
func switchWebhooks(ctx context.Context, c *cluster, mode webhookMode) error {
	if err := c.setWebhooks(ctx, mode); err != nil {
		return err
	}
	on := mode != noWebhooks
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		probe := fleet.InferenceService(probeNamespace, "probe")
		err := c.client.Create(ctx, probe)
		if err == nil {
			_ = c.client.Delete(ctx, probe)
		}
		if refused := apierrors.IsForbidden(err); refused == on && (refused || err == nil) {
			time.Sleep(200 * time.Millisecond)
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("the API server did not pick up webhook mode %d within 30s", mode)
}

// overheadObjects: namespaces whose InferenceServices are all covered (a namespace-wide
// RequestAuthentication, DENY without a principal, STRICT mTLS) so each create is admitted
// after a full judgement, and a probe namespace with no policy at all.
func overheadObjects() []runtime.Object {
	objs := fleet.Mesh(0) // the ingress gateway and its namespaces
	objs = append(objs, &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: probeNamespace}})
	for i := range overheadNamespaces {
		ns := overheadNS(i)
		meta := func(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name, Namespace: ns} }
		ra := &securityv1.RequestAuthentication{TypeMeta: metav1.TypeMeta{APIVersion: "security.istio.io/v1", Kind: "RequestAuthentication"}, ObjectMeta: meta("jwt")}
		ra.Spec.JwtRules = []*securityapi.JWTRule{{Issuer: "https://issuer.example.com", JwksUri: "https://issuer.example.com/jwks"}}
		ap := &securityv1.AuthorizationPolicy{TypeMeta: metav1.TypeMeta{APIVersion: "security.istio.io/v1", Kind: "AuthorizationPolicy"}, ObjectMeta: meta("require-jwt")}
		ap.Spec.Action = securityapi.AuthorizationPolicy_DENY
		ap.Spec.Rules = []*securityapi.Rule{{From: []*securityapi.Rule_From{{Source: &securityapi.Source{NotRequestPrincipals: []string{"*"}}}}}}
		pa := &securityv1.PeerAuthentication{TypeMeta: metav1.TypeMeta{APIVersion: "security.istio.io/v1", Kind: "PeerAuthentication"}, ObjectMeta: meta("default")}
		pa.Spec.Mtls = &securityapi.PeerAuthentication_MutualTLS{Mode: securityapi.PeerAuthentication_MutualTLS_STRICT}
		objs = append(objs, &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: ns}}, ra, ap, pa)
	}
	return objs
}
