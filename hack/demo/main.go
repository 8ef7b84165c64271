// Command demo shows modelguard deciding on a local kube-apiserver: it starts the API server
// and etcd (built by hack/envtest-assets), installs the CRDs, runs the real `modelguard serve`
// binary with certificates generated on the spot, registers its webhooks, then walks the
// seed scenarios with kubectl, printing what was applied and what the cluster answered. It
// cleans up (processes and temporary files) when done or interrupted. `make demo` runs it.
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	testenv "github.com/modelguard/modelguard/test/envtest"
	"github.com/modelguard/modelguard/webhook"
)

// demoConfig: models in namespace "rebuilt" get their policies generated; everything else is
// enforced as it is.
const demoConfig = `apiVersion: modelguard.io/v1alpha1
kind: GuardConfig
rules:
- name: generated
  namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: rebuilt}}
  mode: Enforce
  inject:
    issuer: https://issuer.example.com
    jwksUri: https://issuer.example.com/.well-known/jwks.json
    audiences: [models]
- name: default
  namespaceSelector: {}
  mode: Enforce
exemptNamespaces: [kube-system]
`

const modelguardUser = "modelguard" // the identity modelguard serve runs as (trusted by its guard)

func main() {
	// SIGPIPE too (`make demo | head`): otherwise the first write to a closed pipe would end
	// the process before it stops the API server, etcd and modelguard.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo: %v\n", err)
		os.Exit(1)
	}
}

type demo struct {
	root, tmp, kubectl, adminKubeconfig string
	env                                 *envtest.Environment
	serve                               *exec.Cmd
	audit                               *lines
	probe                               int
}

func run(ctx context.Context) error {
	d := &demo{}
	defer d.cleanup()
	steps := []struct {
		title string
		fn    func(context.Context) error
	}{
		{"starting kube-apiserver and etcd, installing Istio, cert-manager, Seldon and KServe CRDs", d.startAPIServer},
		{"starting `modelguard serve` (TLS from a CA generated now; webhooks registered, failurePolicy Fail)", d.startModelguard},
	}
	for i, s := range steps {
		start := time.Now()
		fmt.Printf("[%d/%d] %s ...", i+1, len(steps), s.title)
		if err := s.fn(ctx); err != nil {
			return err
		}
		fmt.Printf(" done in %s\n", time.Since(start).Round(100*time.Millisecond))
	}
	for _, sc := range scenarios {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := d.scenario(ctx, sc); err != nil {
			return err
		}
	}
	d.printAudit()
	fmt.Println("\nThe demo cleans up after itself: API server, etcd, modelguard and temporary files are gone.")
	return nil
}

func (d *demo) startAPIServer(ctx context.Context) error {
	root, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	assets, err := testenv.AssetsDir(root)
	if err != nil {
		return err
	}
	crds, err := testenv.CRDPaths(root)
	if err != nil {
		return err
	}
	d.root = root
	d.tmp, err = os.MkdirTemp("", "modelguard-demo-")
	if err != nil {
		return err
	}
	mut, val := webhook.Configurations(webhook.ConfigurationOptions{Name: "modelguard", Namespace: "modelguard-system",
		Client: func(path string) admissionregistrationv1.WebhookClientConfig {
			p := strings.TrimPrefix(path, "/")
			return admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Name: "modelguard", Namespace: "modelguard-system", Path: &p}}
		}})
	d.env = &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        crds,
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: 90 * time.Second,
		WebhookInstallOptions: envtest.WebhookInstallOptions{
			MutatingWebhooks:   []*admissionregistrationv1.MutatingWebhookConfiguration{mut},
			ValidatingWebhooks: []*admissionregistrationv1.ValidatingWebhookConfiguration{val},
		},
	}
	if _, err := d.env.Start(); err != nil {
		return fmt.Errorf("starting the API server: %w", err)
	}
	d.kubectl = filepath.Join(assets, "kubectl")
	if _, err := os.Stat(d.kubectl); err != nil {
		d.kubectl = "kubectl"
	}
	d.adminKubeconfig, err = d.kubeconfig("demo-admin")
	return err
}

// kubeconfig writes a kubeconfig for a new user in group system:masters.
func (d *demo) kubeconfig(user string) (string, error) {
	return testenv.WriteAdminKubeconfig(d.env, user, d.tmp)
}

func (d *demo) startModelguard(ctx context.Context) error {
	cfgPath := filepath.Join(d.tmp, "guard.yaml")
	if err := os.WriteFile(cfgPath, []byte(demoConfig), 0o600); err != nil {
		return err
	}
	kubeconfig, err := d.kubeconfig(modelguardUser)
	if err != nil {
		return err
	}
	wio := d.env.WebhookInstallOptions
	if d.probe, err = testenv.FreePort(); err != nil {
		return err
	}
	bin := os.Getenv("MODELGUARD_BIN") // a test passes the binary it built
	if bin == "" {
		bin = filepath.Join(d.root, "bin", "modelguard")
	}
	d.serve = exec.Command(bin, "serve", "--config", cfgPath,
		"--cert-dir", wio.LocalServingCertDir, "--webhook-port", fmt.Sprint(wio.LocalServingPort),
		"--metrics-bind-address", "0", "--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", d.probe),
		"--trusted-user", modelguardUser, "--mutating-webhook-configuration", "modelguard")
	d.serve.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	d.serve.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := d.serve.StdoutPipe()
	if err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(d.tmp, "modelguard.log"))
	if err != nil {
		return err
	}
	d.serve.Stderr = logFile
	if err := d.serve.Start(); err != nil {
		return fmt.Errorf("starting bin/modelguard (run `make build`): %w", err)
	}
	d.audit = collect(stdout)
	return testenv.WaitReady(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", d.probe), time.Minute, nil)
}

// scenario is a titled list of kubectl commands; a step either must succeed or must be refused.
type scenario struct {
	title, why string
	steps      []step
}

type step struct {
	args    []string // kubectl arguments; file paths are relative to the repository root
	refused bool     // the cluster must refuse it
	show    bool     // print the output even when it succeeds (e.g. kubectl get)
}

func apply(file string) step   { return step{args: []string{"apply", "-f", file}} }
func refuse(file string) step  { return step{args: []string{"apply", "-f", file}, refused: true} }
func show(args ...string) step { return step{args: args, show: true} }

var scenarios = []scenario{
	{"seeds/000: Seldon Core v2 behind the Istio ingress gateway, as the guide writes it",
		"The DENY on /v2/* leaves the gRPC route open; the RequestAuthentication selects no gateway pod; no STRICT mTLS.",
		[]step{apply("test/integration/testdata/seldon/mesh.yaml"), apply("test/integration/testdata/seldon/model.yaml"),
			refuse("test/integration/testdata/seldon/virtualservice.yaml")}},
	{"seeds/000 repaired", "The policies cover gRPC too, the RequestAuthentication selects the gateway, mTLS is STRICT.",
		[]step{apply("test/integration/testdata/seldon/fixed-policies.yaml"), apply("test/integration/testdata/seldon/virtualservice.yaml")}},
	{"seeds/002: KServe with namespace policies", "Covered: tokenless requests from the gateway match no ALLOW rule.",
		[]step{apply("test/integration/testdata/kserve/mesh.yaml"), apply("test/integration/testdata/kserve/policies.yaml"),
			apply("test/integration/testdata/kserve/model.yaml")}},
	{"weakening after admission", "Dropping the `when` from require-token-for-external would let every request from the gateway in.",
		[]step{refuse("test/integration/testdata/kserve/require-token-without-when.yaml"),
			{args: []string{"delete", "peerauthentication", "-n", "models", "default"}, refused: true}}},
	{"seeds/002 without its RequestAuthentication", "Still covered (no request can carry a principal), but valid callers are refused too: a warning, never a denial.",
		[]step{{args: []string{"delete", "requestauthentication", "-n", "models", "sample-jwt"}},
			apply("test/integration/testdata/kserve/model-relabelled.yaml")}},
	{"inject: a model with nothing but STRICT mTLS", "The mutating webhook annotates it, the reconciler generates its policies.",
		[]step{apply("test/integration/testdata/reconcile/namespace.yaml"), apply("test/integration/testdata/reconcile/model.yaml"),
			show("get", "inferenceservice", "-n", "rebuilt", "sample", "-o", `jsonpath=inject={.metadata.annotations.modelguard\.io/inject} issuer={.metadata.annotations.modelguard\.io/jwt-issuer} rule={.metadata.annotations.modelguard\.io/rule}{"\n"}`),
			{args: []string{"wait", "--for=create", "authorizationpolicy/modelguard-isvc-sample", "-n", "rebuilt", "--timeout=30s"}},
			show("get", "requestauthentication,authorizationpolicy", "-n", "rebuilt", "-o", "yaml")}},
}

func (d *demo) scenario(ctx context.Context, sc scenario) error {
	fmt.Printf("\n== %s\n   %s\n", sc.title, sc.why)
	for _, s := range sc.steps {
		fmt.Printf("$ kubectl %s\n", strings.Join(s.args, " "))
		cmd := exec.CommandContext(ctx, d.kubectl, append([]string{"--kubeconfig", d.adminKubeconfig}, s.args...)...)
		cmd.Dir = d.root
		out, err := cmd.CombinedOutput()
		text := strings.TrimRight(string(out), "\n")
		switch {
		case s.refused && err == nil:
			return fmt.Errorf("expected the cluster to refuse `kubectl %s`, it accepted:\n%s", strings.Join(s.args, " "), text)
		case !s.refused && err != nil:
			return fmt.Errorf("`kubectl %s` failed:\n%s", strings.Join(s.args, " "), text)
		}
		if s.refused || s.show || strings.Contains(text, "Warning:") {
			fmt.Println(indent(text))
		} else {
			fmt.Println(indent(firstLines(text, 4)))
		}
	}
	return nil
}

func (d *demo) printAudit() {
	fmt.Println("\n== audit lines written by modelguard (stdout, one JSON object per decision that is not a plain allow)")
	for _, l := range d.audit.all() {
		if strings.Contains(l, `"msg":"admission"`) {
			fmt.Println(indent(l))
		}
	}
}

func (d *demo) cleanup() {
	if d.serve != nil && d.serve.Process != nil {
		_ = syscall.Kill(-d.serve.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = d.serve.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-d.serve.Process.Pid, syscall.SIGKILL)
		}
	}
	if d.env != nil {
		_ = d.env.Stop()
	}
	if d.tmp != "" {
		_ = os.RemoveAll(d.tmp)
	}
}

// lines collects a stream's lines in the background.
type lines struct {
	mu sync.Mutex
	l  []string
}

func collect(r interface{ Read([]byte) (int, error) }) *lines {
	ls := &lines{}
	go func() {
		s := bufio.NewScanner(r)
		s.Buffer(make([]byte, 1<<20), 1<<20)
		for s.Scan() {
			ls.mu.Lock()
			ls.l = append(ls.l, s.Text())
			ls.mu.Unlock()
		}
	}()
	return ls
}

func (ls *lines) all() []string {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return append([]string(nil), ls.l...)
}

func indent(s string) string { return "    " + strings.ReplaceAll(s, "\n", "\n    ") }

func firstLines(s string, n int) string {
	parts := strings.SplitN(s, "\n", n+1)
	if len(parts) > n {
		return strings.Join(parts[:n], "\n") + fmt.Sprintf("\n(... %d more lines)", strings.Count(s, "\n")-n+1)
	}
	return s
}
