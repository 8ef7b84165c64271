package integration_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelguard/modelguard/test/envtest"
)

// TestServeBinary runs the real `modelguard serve` binary against the test API server: its
// probes say ready only once the mesh state has synced, it answers the API server's admission
// calls over TLS from the cert dir, and its metrics endpoint exposes modelguard's series.
func TestServeBinary(t *testing.T) {
	env := startEnv(t)
	bin := buildModelguard(t)
	wio := env.Environment.WebhookInstallOptions
	probe, metrics := freePort(t), freePort(t)
	stdout, stderr := &syncBuffer{}, &syncBuffer{}

	cmd := exec.Command(bin, "serve", "--cert-dir", wio.LocalServingCertDir, "--webhook-port", fmt.Sprint(wio.LocalServingPort),
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", probe), "--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", metrics))
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig())
	cmd.Stdout, cmd.Stderr = stdout, stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("modelguard serve stderr:\n%s", stderr.b.String())
		}
	})

	testenv.Eventually(t, time.Minute, func(context.Context) error { return httpOK(fmt.Sprintf("http://127.0.0.1:%d/readyz", probe)) })
	require.NoError(t, httpOK(fmt.Sprintf("http://127.0.0.1:%d/healthz", probe)))

	mg := &modelguard{env: env, audit: stdout}
	mg.mustApply(t, testdataFile("seldon/mesh.yaml"), testdataFile("seldon/model.yaml"))
	out, err := mg.apply(t, testdataFile("seldon/virtualservice.yaml"))
	require.Error(t, err, out)
	assert.Contains(t, out, "[JWT_ROUTE_UNCOVERED]")

	lines := stdout.lines(t)
	require.NotEmpty(t, lines, "audit lines go to stdout")
	assert.Equal(t, "denied", lines[len(lines)-1]["decision"])

	body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/metrics", metrics))
	require.NoError(t, err)
	assert.Contains(t, body, `modelguard_admission_decisions_total{decision="denied",kind="VirtualService",operation="CREATE"} 1`)
	assert.Contains(t, body, "modelguard_admission_duration_seconds_bucket")
	assert.Contains(t, body, `modelguard_config_valid 1`)
	assert.Contains(t, body, "controller_runtime_", "controller-runtime's own metrics are there too")
}

func buildModelguard(t *testing.T) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	require.NoError(t, err)
	bin := filepath.Join(t.TempDir(), "modelguard")
	build := exec.Command("go", "build", "-o", bin, "./cmd/modelguard")
	build.Dir = root
	var errOut bytes.Buffer
	build.Stderr = &errOut
	require.NoError(t, build.Run(), errOut.String())
	return bin
}

// freePort picks a port for a server a test starts. It draws below Linux's ephemeral range
// (32768 and up), where the outgoing connections of other processes (kubectl, the API server)
// take their local ports, so the port is still free when the server binds it a moment later;
// and it never hands out the same port twice in one test binary.
func freePort(t *testing.T) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		p := 20000 + rand.IntN(12000)
		if portsUsed[p] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		portsUsed[p] = true
		return p
	}
	t.Fatal("no free port in 20000-31999")
	return 0
}

var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
)

func httpOK(url string) error {
	body, err := httpGet(url)
	if err != nil {
		return err
	}
	if !strings.Contains(body, "ok") {
		return fmt.Errorf("%s: %s", url, body)
	}
	return nil
}

func httpGet(url string) (string, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %d %s", url, resp.StatusCode, b)
	}
	return string(b), nil
}
