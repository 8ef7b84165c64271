package webhook

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
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
	// LogOut is where operational log lines go (GuardConfig reloads and rejections, mesh
	// state): stderr in production, so that stdout carries only audit lines. Nil: AuditOut.
	LogOut io.Writer
	// WatchHealth, when the manager's cache was built with CacheOptions(health), makes the
	// mesh state unavailable (fail closed, not ready) while any informer's watch is down.
	WatchHealth *WatchHealth
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
	// Fault suite (TestFaultInvalidConfigPushed): operational lines went to the audit stream
	// (stdout), against README ("Operational logs are JSON on stderr") and serve.go ("stdout
	// carries only the audit lines"). They now go to LogOut when it is set.
	opLog := log
	if opts.LogOut != nil {
		opLog = slog.New(slog.NewJSONHandler(opts.LogOut, nil))
	}
	metrics := NewMetrics(opts.Registry)
	cfg, err := NewConfigStore(opts.ConfigPath, opLog, metrics)
	if err != nil {
		return nil, fmt.Errorf("GuardConfig: %w", err)
	}
	mesh := NewMesh(cfg, mgr.GetCache(), mgr.GetScheme(), mgr.GetRESTMapper(), opLog, metrics)
	mesh.health = opts.WatchHealth
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
	register(srv, &Validator{Config: cfg, Mesh: mesh, Audit: audit}, &Mutator{Config: cfg, Mesh: mesh, Audit: audit},
		&Guard{Config: cfg, Mesh: mesh, Audit: audit, TrustedUsers: opts.TrustedUsers})
	if err := mgr.AddReadyzCheck("mesh-state", func(*http.Request) error { return mesh.Ready() }); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("webhook-server", srv.StartedChecker()); err != nil {
		return nil, err
	}
	return &Server{Config: cfg, Mesh: mesh, Metrics: metrics, Log: opLog}, nil
}

// register serves the three handlers on srv, each behind jsonOnly (see request.go). The HTTP
// tests serve them through here too.
func register(srv crwebhook.Server, validate, mutate, guard admission.Handler) {
	srv.Register(PathValidate, httpHandler(validate))
	srv.Register(PathMutate, httpHandler(mutate))
	srv.Register(PathGuard, httpHandler(guard))
}

// httpHandler serves an admission handler over HTTP, as every path of the server does.
func httpHandler(h admission.Handler) http.Handler {
	return jsonOnly(&admission.Webhook{Handler: h, LogConstructor: requestLogger})
}

// requestLogger is the logger controller-runtime hands a request's handling (it logs a
// recovered panic or a failed write with it): the request's identity is added to a line
// when one is written, not on every request, as its DefaultLogConstructor does (that cost
// 6% of the webhook's CPU under load, hack/bench/README.md).
func requestLogger(base logr.Logger, req *admission.Request) logr.Logger {
	if req == nil || base.GetSink() == nil {
		return base
	}
	return logr.New(requestLogSink{LogSink: base.GetSink(), req: req})
}

// requestLogSink adds the request's uid, kind, namespace, name and user to each line.
type requestLogSink struct {
	logr.LogSink
	req *admission.Request
}

func (s requestLogSink) fields(kv []any) []any {
	return append([]any{"requestID", s.req.UID, "kind", s.req.Kind.Kind, "namespace", s.req.Namespace, "name", s.req.Name,
		"user", s.req.UserInfo.Username}, kv...)
}

func (s requestLogSink) Info(level int, msg string, kv ...any) {
	s.LogSink.Info(level, msg, s.fields(kv)...)
}
func (s requestLogSink) Error(err error, msg string, kv ...any) {
	s.LogSink.Error(err, msg, s.fields(kv)...)
}
func (s requestLogSink) WithValues(kv ...any) logr.LogSink {
	return requestLogSink{LogSink: s.LogSink.WithValues(kv...), req: s.req}
}
func (s requestLogSink) WithName(name string) logr.LogSink {
	return requestLogSink{LogSink: s.LogSink.WithName(name), req: s.req}
}

// everyReplica is a Runnable that runs on every replica, leader or not: each replica serves
// admissions, so each needs the mesh state and the config.
type everyReplica func(ctx context.Context) error

func (f everyReplica) Start(ctx context.Context) error { return f(ctx) }

// NeedLeaderElection tells the manager not to wait for leadership.
func (f everyReplica) NeedLeaderElection() bool { return false }
