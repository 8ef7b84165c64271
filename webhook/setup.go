package webhook

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Paths the webhook configurations point at.
const (
	PathValidate = "/validate"
	PathMutate   = "/mutate"
)

// Options configure the admission side of `modelguard serve`.
type Options struct {
	ConfigPath     string        // GuardConfig file; empty: the built-in default
	ReloadInterval time.Duration // fallback poll of the GuardConfig file
	AuditOut       io.Writer     // where audit lines go (stdout in production)
	Registry       prometheus.Registerer
	Recorder       events.EventRecorder
	// TrustedUsers may change guarded policies whatever the outcome (the reconciler).
	TrustedUsers []string
}

// Server is what Setup wires into a manager, for callers that need its parts.
type Server struct {
	Config  *ConfigStore
	Mesh    *Mesh
	Metrics *Metrics
	Log     *slog.Logger // the JSON logger of audit lines and operational events
}

// Setup adds the mesh state, the GuardConfig watcher and the admission handlers to mgr, and a
// readiness check that passes only once the mesh state has synced: before that the server
// must not answer admissions as if the mesh had no policies (and the handlers fail closed).
func Setup(mgr manager.Manager, opts Options) (*Server, error) {
	log := slog.New(slog.NewJSONHandler(opts.AuditOut, nil))
	metrics := NewMetrics(opts.Registry)
	cfg, err := NewConfigStore(opts.ConfigPath, log, metrics)
	if err != nil {
		return nil, fmt.Errorf("GuardConfig: %w", err)
	}
	mesh := NewMesh(cfg, mgr.GetCache(), mgr.GetScheme(), mgr.GetRESTMapper(), log, metrics)
	if err := mgr.Add(everyReplica(mesh.Start)); err != nil {
		return nil, err
	}
	interval := opts.ReloadInterval
	if interval <= 0 {
		interval = 30 * time.Second
	}
	if err := mgr.Add(everyReplica(func(ctx context.Context) error { return cfg.Watch(ctx, interval) })); err != nil {
		return nil, err
	}
	audit := &Auditor{Log: log, Metrics: metrics, Recorder: opts.Recorder}
	srv := mgr.GetWebhookServer()
	srv.Register(PathValidate, &admission.Webhook{Handler: &Validator{Config: cfg, Mesh: mesh, Audit: audit}})
	srv.Register(PathMutate, &admission.Webhook{Handler: &Mutator{Config: cfg, Mesh: mesh, Audit: audit}})
	srv.Register(PathGuard, &admission.Webhook{Handler: &Guard{Config: cfg, Mesh: mesh, Audit: audit, TrustedUsers: opts.TrustedUsers}})
	if err := mgr.AddReadyzCheck("mesh-state", func(*http.Request) error { return mesh.Ready() }); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("webhook-server", srv.StartedChecker()); err != nil {
		return nil, err
	}
	return &Server{Config: cfg, Mesh: mesh, Metrics: metrics, Log: log}, nil
}

// everyReplica is a Runnable that runs on every replica, leader or not: each replica serves
// admissions, so each needs the mesh state and the config.
type everyReplica func(ctx context.Context) error

func (f everyReplica) Start(ctx context.Context) error { return f(ctx) }

// NeedLeaderElection tells the manager not to wait for leadership.
func (f everyReplica) NeedLeaderElection() bool { return false }
