package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/go-logr/logr"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/modelguard/modelguard/webhook"
)

// serveOptions are the flags of `modelguard serve`.
type serveOptions struct {
	config      string
	certDir     string
	webhookPort int
	metricsAddr string
	probeAddr   string
}

func init() {
	commands["serve"] = command{summary: "run the admission webhook (and, with its issue, the reconciler)", run: runServe}
}

func runServe(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	opts, ok := parseServeFlags(args, stderr)
	if !ok {
		return exitUsage
	}
	// Operational logs go to stderr as JSON; stdout carries only the audit lines.
	ctrl.SetLogger(logr.FromSlogHandler(slog.NewJSONHandler(stderr, nil)))
	restCfg, err := ctrl.GetConfig()
	if err != nil {
		fmt.Fprintf(stderr, "modelguard serve: %v\n", err)
		return exitUsage
	}
	if err := serve(ctrl.SetupSignalHandler(), restCfg, opts, stdout); err != nil {
		fmt.Fprintf(stderr, "modelguard serve: %v\n", err)
		return 1
	}
	return exitOK
}

func parseServeFlags(args []string, stderr io.Writer) (serveOptions, bool) {
	var o serveOptions
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.config, "config", "", "GuardConfig `FILE`, reloaded when it changes (default: the built-in configuration)")
	fs.StringVar(&o.certDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "`DIR` holding tls.crt and tls.key, reloaded when they change")
	fs.IntVar(&o.webhookPort, "webhook-port", 9443, "HTTPS `PORT` of the admission webhooks")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "`ADDR` of the Prometheus metrics endpoint (0 disables it)")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "`ADDR` of /healthz and /readyz")
	if err := fs.Parse(args); err != nil {
		return o, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "modelguard serve: unexpected argument %q\n", fs.Arg(0))
		return o, false
	}
	return o, true
}

// Scheme knows every typed object modelguard reads.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, securityv1.AddToScheme, networkingv1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// serve runs the manager until ctx ends: webhook server, metrics, probes, mesh state.
func serve(ctx context.Context, restCfg *rest.Config, o serveOptions, auditOut io.Writer) error {
	scheme, err := Scheme()
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress: o.probeAddr,
		WebhookServer:          ctrlwebhook.NewServer(ctrlwebhook.Options{Port: o.webhookPort, CertDir: o.certDir}),
		Cache:                  cacheOptions(),
	})
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	if _, err := webhook.Setup(mgr, webhook.Options{ConfigPath: o.config, AuditOut: auditOut, Registry: crmetrics.Registry,
		Recorder: mgr.GetEventRecorder("modelguard")}); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.Start(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// cacheOptions keep the informer caches small: no managed fields anywhere, and of Pods only
// what the engine reads (labels, service account), since a cluster has many of them.
func cacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}: {Transform: slimPod},
		},
	}
}

func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	return &corev1.Pod{
		TypeMeta: p.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
			Labels: p.Labels, DeletionTimestamp: p.DeletionTimestamp},
		Spec: corev1.PodSpec{ServiceAccountName: p.Spec.ServiceAccountName},
	}, nil
}
