package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// noopWebhook is the floor of the overhead section: the cheapest webhook a validating
// configuration can call, an HTTPS server (HTTP/1.1, keep-alive, the same certificate) that
// reads the AdmissionReview and allows it, refusing only the probe namespace (so that
// switchWebhooks sees when the API server calls it). What a create costs with it is what any
// admission webhook costs on this machine, before it does any work.
type noopWebhook struct {
	srv *http.Server
	url string
}

func startNoopWebhook(certDir string) (*noopWebhook, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key"))
	if err != nil {
		return nil, fmt.Errorf("no-op webhook certificate: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	n := &noopWebhook{url: fmt.Sprintf("https://%s/validate", ln.Addr())}
	n.srv = &http.Server{Handler: http.HandlerFunc(noopAdmit), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}}
	go func() {
		if err := n.srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			progress("no-op webhook: %v", err)
		}
	}()
	return n, nil
}

func (n *noopWebhook) stop() { _ = n.srv.Shutdown(context.Background()) }

// noopProcessEnv, set to a serving-certificate directory, makes the bench binary serve the
// no-op webhook alone (serveNoopProcess) instead of benchmarking.
const noopProcessEnv = "MODELGUARD_BENCH_NOOP_CERTS"

// noopPlumbingEnv, set (to anything) beside noopProcessEnv, makes the no-op webhook answer
// through controller-runtime's webhook server and admission.Webhook, the plumbing modelguard
// serve builds on: the AdmissionReview decoded by its codecs, the answer encoded, its metrics.
const noopPlumbingEnv = "MODELGUARD_BENCH_NOOP_PLUMBING"

// serveNoopProcess serves the no-op webhook until killed, after writing its URL as the first
// line of stdout.
func serveNoopProcess(certDir string) error {
	if os.Getenv(noopPlumbingEnv) != "" {
		return serveNoopPlumbing(certDir)
	}
	n, err := startNoopWebhook(certDir)
	if err != nil {
		return err
	}
	fmt.Println(n.url)
	select {}
}

// serveNoopPlumbing is the no-op webhook on controller-runtime's webhook server, set up as
// modelguard serve sets it up (HTTP/1.1 only), with a handler that allows everything but the
// probe namespace.
func serveNoopPlumbing(certDir string) error {
	ctrllog.SetLogger(logr.Discard())
	port, err := freePort()
	if err != nil {
		return err
	}
	srv := ctrlwebhook.NewServer(ctrlwebhook.Options{Host: "127.0.0.1", Port: port, CertDir: certDir,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}})
	srv.Register("/validate", &admission.Webhook{Handler: admission.HandlerFunc(func(_ context.Context, req admission.Request) admission.Response {
		if req.Namespace == probeNamespace {
			return admission.Denied("probe")
		}
		return admission.Allowed("")
	})})
	errc := make(chan error, 1)
	go func() { errc <- srv.Start(context.Background()) }()
	started := srv.StartedChecker()
	for deadline := time.Now().Add(30 * time.Second); started(nil) != nil; {
		select {
		case err := <-errc:
			return fmt.Errorf("controller-runtime no-op webhook: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("controller-runtime no-op webhook: not serving after 30 s")
		}
	}
	fmt.Printf("https://127.0.0.1:%d/validate\n", port)
	return <-errc
}

// freePort is a TCP port on the loopback that nothing listens on (controller-runtime's server
// wants a port, not a listener).
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// noopProcess is the no-op webhook in a process of its own (the load section's floor), as
// modelguard serve is in its own.
type noopProcess struct {
	cmd *exec.Cmd
	url string
	pid string
}

// startNoopProcess starts the no-op webhook process, on controller-runtime's plumbing when
// plumbing is set.
func startNoopProcess(certDir string, plumbing bool) (*noopProcess, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), noopProcessEnv+"="+certDir)
	if plumbing {
		cmd.Env = append(cmd.Env, noopPlumbingEnv+"=1")
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("no-op webhook process: %w", err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("no-op webhook process: reading its URL: %w", err)
	}
	return &noopProcess{cmd: cmd, url: strings.TrimSpace(line), pid: strconv.Itoa(cmd.Process.Pid)}, nil
}

func (n *noopProcess) stop() {
	_ = n.cmd.Process.Kill()
	_ = n.cmd.Wait()
}

func (n *noopProcess) cpu() (time.Duration, error) { return processCPU(n.pid) }

func noopAdmit(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 3<<20))
	var review admissionv1.AdmissionReview
	if err == nil {
		err = json.Unmarshal(body, &review)
	}
	if err != nil || review.Request == nil {
		http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
		return
	}
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: review.Request.Namespace != probeNamespace}
	if !resp.Allowed {
		resp.Result = &metav1.Status{Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden, Message: "probe"}
	}
	review.Request, review.Response = nil, resp
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&review)
}

// configuration registers the no-op webhook for InferenceService creates, with modelguard's
// own settings (fail closed, 5 s, the same namespace exclusion).
func (n *noopWebhook) configuration(caBundle []byte) *admissionregistrationv1.ValidatingWebhookConfiguration {
	fail, none, equivalent := admissionregistrationv1.Fail, admissionregistrationv1.SideEffectClassNone, admissionregistrationv1.Equivalent
	timeout := int32(5)
	url := n.url
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: "overhead-noop"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:         "noop.overhead.modelguard.io",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caBundle},
			Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{"serving.kserve.io"}, APIVersions: []string{"v1beta1"}, Resources: []string{"inferenceservices"}}}},
			FailurePolicy: &fail, SideEffects: &none, MatchPolicy: &equivalent, TimeoutSeconds: &timeout, AdmissionReviewVersions: []string{"v1"},
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system"}}}},
		}},
	}
}
