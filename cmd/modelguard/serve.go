package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/modelguard/modelguard/policy"
	"github.com/modelguard/modelguard/reconciler"
	"github.com/modelguard/modelguard/webhook"
)

// serveOptions are the flags of `modelguard serve`.
type serveOptions struct {
	config        string
	certDir       string
	webhookPort   int
	metricsAddr   string
	probeAddr     string
	pprofAddr     string
	leaderElect   bool
	leaderElectNS string
	trustedUsers  listFlag
	noReconciler  bool
	enableHTTP2   bool
	mutatingScope string
	ownNamespace  string
}

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func init() {
	commands["serve"] = command{summary: "run the admission webhooks and the reconciler (a controller-runtime manager)", run: runServe}
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
	if err := serve(ctrl.SetupSignalHandler(), restCfg, opts, stdout, stderr); err != nil {
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
	fs.StringVar(&o.pprofAddr, "pprof-bind-address", "0", "`ADDR` of Go's /debug/pprof endpoints, for profiling (0 disables them; never expose it outside the pod)")
	fs.BoolVar(&o.leaderElect, "leader-elect", false, "elect one replica to run the reconciler (the webhook serves on every replica)")
	fs.StringVar(&o.leaderElectNS, "leader-election-namespace", "modelguard-system", "`NAMESPACE` of the leader election Lease")
	fs.Var(&o.trustedUsers, "trusted-user", "`USER` (e.g. system:serviceaccount:modelguard-system:modelguard, the reconciler's) whose changes to guarded policies are never refused; repeatable")
	fs.BoolVar(&o.noReconciler, "no-reconciler", false, "serve admissions only, without the reconciler")
	fs.StringVar(&o.mutatingScope, "mutating-webhook-configuration", "", "`NAME` of modelguard's MutatingWebhookConfiguration, which the leader keeps scoped to the GuardConfig's inject rules, so that creates needing no mutation skip the call (empty: left as installed)")
	fs.StringVar(&o.ownNamespace, "namespace", "modelguard-system", "modelguard's own `NAMESPACE`, outside every webhook")
	fs.BoolVar(&o.enableHTTP2, "enable-http2", false, "offer HTTP/2 on the webhook port (off: HTTP/1.1 only, closing the HTTP/2 stream-reset attacks CVE-2023-44487 and CVE-2023-39325; kube-apiserver speaks either)")
	if err := fs.Parse(args); err != nil {
		return o, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "modelguard serve: unexpected argument %q\n", fs.Arg(0))
		return o, false
	}
	return o, true
}

// serve runs the manager until ctx ends: webhook server, metrics, probes, mesh state.
func serve(ctx context.Context, restCfg *rest.Config, o serveOptions, auditOut, logOut io.Writer) error {
	scheme, err := webhook.NewScheme()
	if err != nil {
		return err
	}
	health := webhook.NewWatchHealth()
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress:  o.probeAddr,
		PprofBindAddress:        o.pprofAddr,
		WebhookServer:           ctrlwebhook.NewServer(ctrlwebhook.Options{Port: o.webhookPort, CertDir: o.certDir, TLSOpts: webhookTLS(o.enableHTTP2)}),
		Cache:                   webhook.CacheOptions(health),
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        "modelguard-reconciler",
		LeaderElectionNamespace: o.leaderElectNS,
		// A new leader starts right away when the old one steps down cleanly.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	recorder := mgr.GetEventRecorder("modelguard")
	// LogOut: operational lines on stderr, audit lines alone on stdout (fault suite fix).
	srv, err := webhook.Setup(mgr, webhook.Options{ConfigPath: o.config, AuditOut: auditOut, LogOut: logOut, Registry: crmetrics.Registry,
		Recorder: recorder, TrustedUsers: o.trustedUsers, WatchHealth: health})
	if err != nil {
		return err
	}
	if !o.noReconciler {
		resync, err := reconciler.Setup(mgr, srv.Config.Get, crmetrics.Registry, recorder, srv.Log)
		if err != nil {
			return err
		}
		srv.Config.OnChange(func(_, _ *policy.GuardConfig) { resync(ctx) })
		if o.mutatingScope != "" {
			scope, err := reconciler.SetupWebhookScope(mgr, o.mutatingScope, o.ownNamespace, srv.Config.Get, crmetrics.Registry, srv.Log)
			if err != nil {
				return err
			}
			srv.Config.OnChange(func(_, _ *policy.GuardConfig) { scope.Kick() })
		}
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.Start(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// webhookTLS sets the protocols the webhook port offers. HTTP/1.1 alone is the default, as
// in Kubebuilder's scaffolding: HTTP/2's stream resets let one client make a server do work
// it never reads (CVE-2023-44487, CVE-2023-39325), and on the webhook's path HTTP/1.1 is the
// faster of the two (hack/bench/README.md: kube-apiserver keeps a pool of keep-alive
// connections either way).
func webhookTLS(http2 bool) []func(*tls.Config) {
	if http2 {
		return nil
	}
	return []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}
}
