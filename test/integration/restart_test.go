package integration_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/modelguard/modelguard/policy"
	testenv "github.com/modelguard/modelguard/test/envtest"
	"github.com/modelguard/modelguard/test/fleet"
	"github.com/modelguard/modelguard/webhook"
)

// TestFaultAPIServerRestart: the API server goes away and comes back. While it is gone the
// informers' watches are down and the mesh state may be stale: readiness drops, and an
// admission that still reaches modelguard is refused (MESH_STATE_UNAVAILABLE), never judged
// on what the cache last saw. When the API server is back the watches resume, readiness
// returns, and a change made after the restart is seen: the model it uncovers is refused.
func TestFaultAPIServerRestart(t *testing.T) {
	certDir := t.TempDir()
	env := startEnv(t, func(o *testenv.Options) { o.APIServerCertDir = certDir })
	mg := startModelguardWith(t, &modelguard{env: env, reconcile: true}, policy.DefaultConfigYAML)
	ctx := context.Background()
	createMesh(t, env.Client, fleet.Mesh(2))
	review := coveredModelReview(t)
	require.True(t, mg.admit(t, review).Allowed, "the covered model is admitted before the restart")

	api := env.Environment.ControlPlane.GetAPIServer()
	// The API server crashes (SIGKILL: a graceful stop would drain modelguard's watches for a
	// minute first). Its certificates stay in certDir, so clients trust the restarted one.
	killProcessWithArg(t, "--cert-dir="+certDir)
	require.NoError(t, api.Stop())
	stopped := time.Now()
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if err := mg.server.Mesh.Ready(); err == nil {
			return errors.New("modelguard still reports ready with the API server gone")
		}
		return nil
	})
	t.Logf("readiness dropped %s after the API server stopped: %v", time.Since(stopped).Round(time.Millisecond), mg.server.Mesh.Ready())
	resp := mg.admit(t, review)
	require.False(t, resp.Allowed, "an admission judged on a cache whose watches are down must be refused")
	require.Contains(t, resp.Result.Message, string(policy.CodeMeshStateUnavailable))

	require.NoError(t, api.Start())
	restarted := time.Now()
	testenv.Eventually(t, 2*time.Minute, func(context.Context) error { return mg.server.Mesh.Ready() })
	t.Logf("ready again %s after the API server restarted", time.Since(restarted).Round(time.Millisecond))
	require.True(t, mg.admit(t, review).Allowed, "the covered model is admitted again")

	// A trusted writer (the guard lets it) removes the model's covering policy after the
	// restart: the informers must see it, and the same exposure must then be refused.
	trusted := trustedClient(t, env)
	ap := &securityv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: fleet.Namespace(1), Name: "ap-0"}}
	require.NoError(t, trusted.Delete(ctx, ap))
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		snap, err := mg.server.Mesh.Snapshot()
		if err != nil {
			return err
		}
		if snap.Holds("AuthorizationPolicy", ap.Namespace, ap.Name, "") {
			return errors.New("the mesh state has not seen the deletion made after the restart")
		}
		return nil
	})
	// A watch may close once more while the restarted API server settles (CI saw one closed
	// 2 s after readiness came back): modelguard then refuses with MESH_STATE_UNAVAILABLE,
	// failing closed, until it reopens. Every answer must be a refusal; the one that shows the
	// deletion was seen names the uncovered route.
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		resp := mg.admit(t, review)
		require.False(t, resp.Allowed, "the uncovered model must be refused after the restart")
		if !strings.Contains(resp.Result.Message, string(policy.CodeJWTRouteUncovered)) {
			return fmt.Errorf("refused, but not for the uncovered route: %s", resp.Result.Message)
		}
		return nil
	})
}

// createMesh creates fleet objects through the API server, policies and workloads before the
// models and VirtualServices that the validating webhook judges against them.
func createMesh(t *testing.T, c client.Client, objs []runtime.Object) {
	t.Helper()
	judged := map[string]bool{"InferenceService": true, "Model": true, "VirtualService": true}
	for _, pass := range []func(kind string) bool{
		func(k string) bool { return k == "Namespace" },
		func(k string) bool { return k != "Namespace" && !judged[k] },
		func(k string) bool { return judged[k] },
	} {
		for _, o := range objs {
			co := o.DeepCopyObject().(client.Object)
			if !pass(co.GetObjectKind().GroupVersionKind().Kind) {
				continue
			}
			// The webhook judges against its informers, which see the policies a moment later.
			testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
				err := c.Create(ctx, co.DeepCopyObject().(client.Object))
				if apierrors.IsAlreadyExists(err) {
					return nil
				}
				return err
			})
		}
	}
}

// coveredModelReview is the AdmissionReview of a CREATE of fleet namespace 1's model, which
// its policies cover.
func coveredModelReview(t *testing.T) []byte {
	t.Helper()
	isvc := fleet.InferenceService(fleet.Namespace(1), "model")
	raw, err := json.Marshal(isvc.Object)
	require.NoError(t, err)
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "restart-1", Operation: admissionv1.Create,
			Kind:      metav1.GroupVersionKind{Group: "serving.kserve.io", Version: "v1beta1", Kind: "InferenceService"},
			Resource:  metav1.GroupVersionResource{Group: "serving.kserve.io", Version: "v1beta1", Resource: "inferenceservices"},
			Namespace: isvc.GetNamespace(), Name: isvc.GetName(), Object: runtime.RawExtension{Raw: raw}},
	})
	require.NoError(t, err)
	return body
}

// admit posts an AdmissionReview to the running webhook server's validating endpoint over
// TLS, as the API server does (the API server may be down: this reaches modelguard directly).
func (mg *modelguard) admit(t *testing.T, body []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	wio := mg.env.Environment.WebhookInstallOptions
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(wio.LocalServingCAData))
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	url := fmt.Sprintf("https://%s:%d%s", wio.LocalServingHost, wio.LocalServingPort, webhook.PathValidate)
	resp, err := hc.Post(url, "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out admissionv1.AdmissionReview
	require.NoError(t, json.Unmarshal(data, &out), "%s", data)
	require.NotNil(t, out.Response, "%s", data)
	if out.Response.Result == nil {
		out.Response.Result = &metav1.Status{}
	}
	return out.Response
}

// trustedClient acts as the reconciler's user, whose policy changes the guard never refuses.
func trustedClient(t *testing.T, env *testenv.Env) client.Client {
	t.Helper()
	user, err := env.Environment.AddUser(envtest.User{Name: reconcilerUser, Groups: []string{"system:masters"}}, nil)
	require.NoError(t, err)
	c, err := client.New(user.Config(), client.Options{Scheme: env.Scheme})
	require.NoError(t, err)
	return c
}

// killProcessWithArg sends SIGKILL to the one process whose command line has arg.
func killProcessWithArg(t *testing.T, arg string) {
	t.Helper()
	cmdlines, err := filepath.Glob("/proc/[0-9]*/cmdline")
	require.NoError(t, err)
	var pids []int
	for _, p := range cmdlines {
		data, err := os.ReadFile(p)
		if err != nil || !slices.Contains(strings.Split(string(data), "\x00"), arg) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		require.NoError(t, err)
		pids = append(pids, pid)
	}
	require.Len(t, pids, 1, "processes with %s", arg)
	require.NoError(t, syscall.Kill(pids[0], syscall.SIGKILL))
}
