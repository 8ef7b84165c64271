package testenv

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// kubectlTimeout bounds one kubectl run: a hung kubectl must fail the test, not stall it until
// go test's global timeout (which would leave kube-apiserver and etcd running).
const kubectlTimeout = 2 * time.Minute

// setUpKubectl writes the admin kubeconfig and finds the kubectl binary.
func (e *Env) setUpKubectl(t testing.TB) {
	t.Helper()
	dir := t.TempDir()
	e.kubeconfig = filepath.Join(dir, "kubeconfig")
	// Environment.KubeConfig is generated from the admin user's rest.Config (client
	// certificate of group system:masters, CA of the API server).
	if err := os.WriteFile(e.kubeconfig, e.Environment.KubeConfig, 0o600); err != nil {
		t.Fatalf("testenv: writing kubeconfig: %v", err)
	}
	// kubectl caches discovery per server address. Ports get reused across environments
	// that have different CRDs, and $HOME is nobody's business here: one cache per Env.
	e.cacheDir = filepath.Join(dir, "kube-cache")
	e.kubectl = findKubectl(e.AssetsDir)
}

// findKubectl prefers the assets directory (hack/envtest-assets links or builds one there),
// then PATH. It returns "" when there is none.
func findKubectl(assets string) string {
	if p := os.Getenv("TEST_ASSET_KUBECTL"); p != "" {
		return p
	}
	if p := filepath.Join(assets, "kubectl"); checkExecutable(p) == nil {
		return p
	}
	if p, err := exec.LookPath("kubectl"); err == nil {
		return p
	}
	return ""
}

// Kubeconfig returns the path of a kubeconfig file for envtest's admin user (system:masters),
// for kubectl or any other client. It is removed with the test's temporary directory.
func (e *Env) Kubeconfig() string { return e.kubeconfig }

// Kubectl runs kubectl with args against the environment and returns its output. A non-zero
// exit is returned as err (an *exec.ExitError) and does not fail t: a refused apply is an
// expected outcome in some tests.
func (e *Env) Kubectl(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return e.kubectlWithInput(t, nil, args...)
}

// TryApply runs `kubectl apply -f -` with yaml on stdin and returns the outcome, like Kubectl.
func (e *Env) TryApply(t testing.TB, yaml string) (stdout, stderr string, err error) {
	t.Helper()
	return e.kubectlWithInput(t, strings.NewReader(yaml), "apply", "-f", "-")
}

// Apply runs `kubectl apply -f -` with yaml on stdin and fails t if kubectl fails.
func (e *Env) Apply(t testing.TB, yaml string) {
	t.Helper()
	stdout, stderr, err := e.TryApply(t, yaml)
	if err != nil {
		t.Fatalf("kubectl apply: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	t.Logf("kubectl apply:\n%s", strings.TrimRight(stdout, "\n"))
}

func (e *Env) kubectlWithInput(t testing.TB, stdin io.Reader, args ...string) (string, string, error) {
	t.Helper()
	if e.kubectl == "" {
		return "", "", errors.New("no kubectl: not in " + e.AssetsDir + " nor on PATH")
	}
	ctx, cancel := context.WithTimeout(t.Context(), kubectlTimeout)
	defer cancel()
	full := append([]string{"--kubeconfig=" + e.kubeconfig, "--cache-dir=" + e.cacheDir}, args...)
	cmd := exec.CommandContext(ctx, e.kubectl, full...)
	// --kubeconfig wins inside kubectl; KUBECONFIG too keeps anything kubectl starts
	// (plugins, gcloud's version dispatcher) on this cluster rather than the developer's.
	cmd.Env = append(os.Environ(), "KUBECONFIG="+e.kubeconfig)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}
