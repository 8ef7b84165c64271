package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/modelguard/modelguard/policy"
	testenv "github.com/modelguard/modelguard/test/envtest"
	"github.com/modelguard/modelguard/webhook"
)

// cluster is a test kube-apiserver and etcd (the ones `make test` uses), with the CRDs of
// Istio, cert-manager, Seldon and KServe, and a serving certificate for modelguard.
type cluster struct {
	env        *envtest.Environment
	cfg        *rest.Config
	client     client.Client
	kubeconfig string // a system:masters user for modelguard serve
	dir        string
	noop       *noopWebhook // the overhead section's floor; nil elsewhere
}

// startCluster starts a test kube-apiserver and etcd. envtest runs etcd with
// --unsafe-no-fsync (a write costs no disk flush); with fsync, etcd flushes its log on every
// commit as a production etcd does.
func startCluster(root, dir string, fsync bool) (*cluster, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	assets, err := testenv.AssetsDir(root)
	if err != nil {
		return nil, err
	}
	crds, err := testenv.CRDPaths(root)
	if err != nil {
		return nil, err
	}
	scheme, err := testenv.NewScheme()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		Scheme:                   scheme,
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        crds,
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	api := env.ControlPlane.GetAPIServer()
	api.Path = filepath.Join(assets, "kube-apiserver")
	// envtest's /24 holds 254 Services; the fleet has one per namespace.
	api.Configure().Set("service-cluster-ip-range", "10.96.0.0/12")
	env.ControlPlane.Etcd = &envtest.Etcd{Path: filepath.Join(assets, "etcd")}
	if fsync {
		env.ControlPlane.Etcd.Configure().Set("unsafe-no-fsync", "false")
	}
	// The serving certificate and port modelguard serves on; the webhooks are registered
	// (and removed) by the bench itself.
	env.WebhookInstallOptions.LocalServingHost = "127.0.0.1"
	if err := env.WebhookInstallOptions.PrepWithoutInstalling(); err != nil {
		return nil, fmt.Errorf("webhook certificate: %w", err)
	}
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", assets, err)
	}
	// Populating and measuring needs no client-side throttling.
	cfg.QPS, cfg.Burst = 1e6, 1e6
	c := &cluster{env: env, cfg: cfg, dir: dir}
	if c.client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		c.stop()
		return nil, err
	}
	if c.kubeconfig, err = testenv.WriteAdminKubeconfig(env, "modelguard-bench", dir); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (c *cluster) stop() {
	if err := c.env.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: stopping the control plane: %v\n", err)
	}
}

// serverOptions for a modelguard serve that this cluster's webhooks reach.
func (c *cluster) serverOptions(bin, name string) serverOptions {
	w := c.env.WebhookInstallOptions
	return serverOptions{bin: bin, kubeconfig: c.kubeconfig, certDir: w.LocalServingCertDir, port: w.LocalServingPort,
		logPath: filepath.Join(c.dir, name+".log")}
}

// webhookURL is where modelguard serve listens (for the load generator).
func (c *cluster) webhookURL(path string) string {
	w := c.env.WebhookInstallOptions
	return fmt.Sprintf("https://%s:%d%s", w.LocalServingHost, w.LocalServingPort, path)
}

func (c *cluster) caData() []byte { return c.env.WebhookInstallOptions.LocalServingCAData }

// setWebhooks registers the webhook configurations of a mode (modelguard's as DESIGN.md
// states them, with a URL instead of a Service; the mutating one scoped to the default
// GuardConfig as the leader keeps it, or as installed), and removes the others.
func (c *cluster) setWebhooks(ctx context.Context, mode webhookMode) error {
	opts := webhook.ConfigurationOptions{Name: "modelguard", Namespace: "modelguard-system",
		Client: func(path string) admissionregistrationv1.WebhookClientConfig {
			url := c.webhookURL(path)
			return admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: c.caData()}
		}}
	mut, val := webhook.Configurations(opts)
	if mode == allWebhooks {
		mut.Webhooks = webhook.ScopedMutatingWebhooks(policy.DefaultConfig(), opts)
	}
	objs := map[client.Object]bool{mut: mode >= allWebhooks, val: mode >= validatingOnly}
	if c.noop != nil {
		objs[c.noop.configuration(c.caData())] = mode == noopOnly
	}
	for o, on := range objs {
		// Deleted first: the mutating configuration differs between modes.
		err := c.client.Delete(ctx, o)
		if on && (err == nil || apierrors.IsNotFound(err)) {
			err = c.client.Create(ctx, o)
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("webhook configuration %s: %w", o.GetName(), err)
		}
	}
	return nil
}

// create writes objects with parallel workers, namespaces first; objects that exist are
// left alone (populating is incremental across scale points).
func (c *cluster) create(ctx context.Context, objs []runtime.Object, workers int) error {
	var nss, rest []client.Object
	for _, o := range objs {
		co, ok := o.(client.Object)
		if !ok {
			return fmt.Errorf("%T is not a client.Object", o)
		}
		if co.GetObjectKind().GroupVersionKind().Kind == "Namespace" {
			nss = append(nss, co)
		} else {
			rest = append(rest, co)
		}
	}
	for _, batch := range [][]client.Object{nss, rest} {
		if err := c.createParallel(ctx, batch, workers); err != nil {
			return err
		}
	}
	return nil
}

func (c *cluster) createParallel(ctx context.Context, objs []client.Object, workers int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(objs) || ctx.Err() != nil {
					return
				}
				o := objs[i].DeepCopyObject().(client.Object)
				if err := c.client.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
					errs[w] = fmt.Errorf("creating %s %s/%s: %w", o.GetObjectKind().GroupVersionKind().Kind, o.GetNamespace(), o.GetName(), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// kinds counts objects by kind, for the report.
func kinds(objs []runtime.Object) string {
	n := map[string]int{}
	for _, o := range objs {
		n[o.GetObjectKind().GroupVersionKind().Kind]++
	}
	var parts []string
	for _, k := range []string{"AuthorizationPolicy", "RequestAuthentication", "PeerAuthentication", "VirtualService", "Namespace", "InferenceService", "Model"} {
		parts = append(parts, fmt.Sprintf("%d %s", n[k], k))
	}
	return strings.Join(parts, ", ")
}

// profileAPIServer takes a CPU profile of kube-apiserver (its /debug/pprof, as the admin
// user) for up to 60 s from now, written to path: where the API server spends a webhook
// call, apart from modelguard's own time. The returned function waits for it.
func (c *cluster) profileAPIServer(ctx context.Context, path string) func() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			progress("profile: %v", err)
			return
		}
		cs, err := kubernetes.NewForConfig(c.cfg)
		if err != nil {
			progress("profile: %v", err)
			return
		}
		data, err := cs.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", "60").DoRaw(ctx)
		if err == nil {
			err = os.WriteFile(path, data, 0o644)
		}
		if err != nil {
			progress("profile of kube-apiserver: %v", err)
			return
		}
		progress("profile of kube-apiserver: %s", path)
	}()
	return func() { <-done }
}

// webhookCallMeans is kube-apiserver's mean time per call of each webhook (by name), in
// seconds: the round trip as the API server sees it, modelguard's time included.
func (c *cluster) webhookCallMeans(ctx context.Context) (map[string]float64, error) {
	calls, err := testenv.WebhookCalls(ctx, c.cfg)
	if err != nil {
		return nil, err
	}
	means := map[string]float64{}
	for name, call := range calls {
		if call.Count > 0 {
			means[name] = call.Seconds / call.Count
		}
	}
	return means, nil
}
