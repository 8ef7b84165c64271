// Package testenv starts a real kube-apiserver and etcd (controller-runtime's envtest) with the
// CRDs modelguard judges installed: Istio's, cert-manager's, Seldon Core v2's Model and KServe's
// InferenceService. Integration tests use it to check objects and, later, modelguard's webhooks
// against the API server's own validation and admission chain.
//
// The binaries come from $KUBEBUILDER_ASSETS or, when that is unset, from hack/envtest-assets
// (`make test` sets it). There is no skip: without binaries the test fails and says why.
// The first hack/envtest-assets run builds kube-apiserver and etcd, which takes longer than
// go test's default 10m timeout on a small machine; run the script once beforehand.
//
// envtest runs no kube-controller-manager: nothing creates Pods for Deployments, service
// accounts or endpoints, and a deleted namespace stays Terminating for good. Tests give each
// scenario its own namespace and leave the cleanup to the environment's teardown.
package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Timeouts sized for a loaded 2-core machine, where the API server alone can take 10-20 s to
// report healthy. envtest's defaults (20 s to start, 10 s to see CRDs in discovery) flake there.
// (envtest retries a failed start up to 5 times, so startTimeout is not much longer.)
const (
	startTimeout       = 90 * time.Second
	stopTimeout        = time.Minute
	crdTimeout         = 2 * time.Minute
	establishedTimeout = 2 * time.Minute
)

// Options configures Start.
type Options struct {
	// WebhookInstallOptions is handed to envtest unchanged. Webhook configurations given here
	// (MutatingWebhooks, ValidatingWebhooks or Paths) are installed with their clientConfig
	// rewritten to https://LocalServingHost:LocalServingPort/<service path> and a CA bundle
	// trusting the serving certificate envtest writes to LocalServingCertDir (tls.crt,
	// tls.key). Env.Environment.WebhookInstallOptions holds those values after Start.
	WebhookInstallOptions envtest.WebhookInstallOptions

	// CRDPaths are extra CRD files or directories, installed with the default ones.
	CRDPaths []string

	// APIServerCertDir, when set, holds the API server's serving certificates instead of a
	// fresh temporary directory, so that a test can restart it
	// (Environment.ControlPlane.APIServer.Stop, then Start) without its clients losing trust.
	APIServerCertDir string
}

// Env is a running control plane. It is stopped by the cleanup of the test that started it.
type Env struct {
	// Config authenticates as envtest's admin user (group system:masters).
	Config *rest.Config
	// Client uses Scheme; Seldon Models and KServe InferenceServices go through
	// unstructured.Unstructured (see ModelGVK, InferenceServiceGVK).
	Client client.Client
	Scheme *runtime.Scheme
	// Environment is envtest's own handle: the installed CRDs, the control plane (for
	// AddUser, e.g. a non-admin user) and the webhook serving details.
	Environment *envtest.Environment
	// AssetsDir holds kube-apiserver, etcd and usually kubectl.
	AssetsDir string

	kubeconfig string
	kubectl    string // "" when neither AssetsDir nor PATH has one: Kubectl then errs
	cacheDir   string
}

// Start starts kube-apiserver and etcd, installs the CRDs and waits until they are
// established, and registers the teardown with t.Cleanup. Any failure fails t.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	assets, err := AssetsDir(root)
	if err != nil {
		t.Fatalf("testenv: no envtest binaries: %v", err)
	}
	paths, err := CRDPaths(root)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	scheme, err := NewScheme()
	if err != nil {
		t.Fatalf("testenv: scheme: %v", err)
	}

	// A fresh slice: paths is shared by every Start in the binary.
	te := newEnvironment(assets, scheme, slices.Concat(paths, opts.CRDPaths), opts.WebhookInstallOptions)
	if opts.APIServerCertDir != "" {
		te.ControlPlane.GetAPIServer().CertDir = opts.APIServerCertDir
	}

	began := time.Now()
	cfg := startEnvironment(t, te)
	waitEstablished(t, cfg, scheme, te.CRDs)
	t.Logf("testenv: kube-apiserver up with %d CRDs established in %s", len(te.CRDs), time.Since(began).Round(time.Millisecond))

	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatalf("testenv: client: %v", err)
	}
	e := &Env{Config: cfg, Client: c, Scheme: scheme, Environment: te, AssetsDir: assets}
	e.setUpKubectl(t)
	return e
}

func newEnvironment(assets string, scheme *runtime.Scheme, crdPaths []string, hooks envtest.WebhookInstallOptions) *envtest.Environment {
	te := &envtest.Environment{
		Scheme:                scheme,
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     crdPaths,
		ErrorIfCRDPathMissing: true,
		CRDInstallOptions:     envtest.CRDInstallOptions{MaxTime: crdTimeout},
		WebhookInstallOptions: hooks,
	}
	// envtest reads KUBEBUILDER_CONTROLPLANE_{START,STOP}_TIMEOUT only for unset fields.
	if os.Getenv("KUBEBUILDER_CONTROLPLANE_START_TIMEOUT") == "" {
		te.ControlPlaneStartTimeout = startTimeout
	}
	if os.Getenv("KUBEBUILDER_CONTROLPLANE_STOP_TIMEOUT") == "" {
		te.ControlPlaneStopTimeout = stopTimeout
	}
	if te.WebhookInstallOptions.MaxTime == 0 {
		te.WebhookInstallOptions.MaxTime = crdTimeout
	}
	// envtest prefers $KUBEBUILDER_ASSETS over BinaryAssetsDirectory, even when it is empty.
	// Pin the binaries we resolved, unless a TEST_ASSET_* variable names one on purpose.
	pin := func(envVar, bin string) string {
		if os.Getenv(envVar) != "" {
			return ""
		}
		return filepath.Join(assets, bin)
	}
	te.ControlPlane.GetAPIServer().Path = pin("TEST_ASSET_KUBE_APISERVER", "kube-apiserver")
	te.ControlPlane.Etcd = &envtest.Etcd{Path: pin("TEST_ASSET_ETCD", "etcd")}
	return te
}

// startEnvironment starts te and registers its teardown. envtest's Start leaves the processes
// running when a later step (CRDs, webhooks) fails, so a failed start is stopped here.
func startEnvironment(t testing.TB, te *envtest.Environment) *rest.Config {
	t.Helper()
	cfg, err := te.Start()
	if err != nil {
		stopErr := te.Stop()
		t.Fatalf("testenv: starting kube-apiserver and etcd from %s: %v (stop: %v)",
			te.BinaryAssetsDirectory, err, stopErr)
	}
	t.Cleanup(func() {
		began := time.Now()
		if err := te.Stop(); err != nil {
			t.Errorf("testenv: stopping the control plane: %v", err)
		}
		t.Logf("testenv: control plane stopped in %s", time.Since(began).Round(time.Millisecond))
	})
	return cfg
}

// waitEstablished waits until every CRD is Established. envtest only waits for the resources
// to show in discovery; creating objects (or kubectl apply, which reads the OpenAPI schema)
// before the CRD is established can fail.
func waitEstablished(t testing.TB, cfg *rest.Config, scheme *runtime.Scheme, crds []*apiextensionsv1.CustomResourceDefinition) {
	t.Helper()
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatalf("testenv: client: %v", err)
	}
	Eventually(t, establishedTimeout, func(ctx context.Context) error {
		for _, crd := range crds {
			var got apiextensionsv1.CustomResourceDefinition
			if err := c.Get(ctx, client.ObjectKey{Name: crd.Name}, &got); err != nil {
				return err
			}
			if !established(&got) {
				return fmt.Errorf("CRD %s is not established yet", crd.Name)
			}
		}
		return nil
	})
}

func established(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established {
			return c.Status == apiextensionsv1.ConditionTrue
		}
	}
	return false
}

// Eventually calls check until it returns nil, and fails t with check's last error if that
// does not happen within timeout. Use it instead of sleeping: the API server and caches catch
// up at their own pace on a loaded machine. ctx expires with the deadline.
func Eventually(t testing.TB, timeout time.Duration, check func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	const interval = 100 * time.Millisecond
	var last error
	for {
		err := check(ctx)
		if err == nil {
			return
		}
		// A check cut short by the deadline says less than the one before it: keep that one.
		if last == nil || ctx.Err() == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("still failing after %s: %v", timeout, last)
		case <-time.After(interval):
		}
	}
}
