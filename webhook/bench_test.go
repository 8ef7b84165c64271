package webhook

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/modelguard/modelguard/policy"
	"github.com/modelguard/modelguard/test/fleet"
)

// BenchmarkValidatingAdmission is one validating admission of an InferenceService, in
// process and end to end: the AdmissionReview JSON decoded by controller-runtime, the object
// decoded strictly, the snapshot of 10,000 AuthorizationPolicies (and as many
// RequestAuthentications) consulted, the verdict, the response encoded. It reports the p50
// and p99 of the individual admissions besides the mean.
func BenchmarkValidatingAdmission(b *testing.B) {
	for _, policies := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("policies=%d", policies), func(b *testing.B) {
			benchAdmission(b, policies, "model", true)
		})
	}
	// An InferenceService no policy covers: the denial path, with its message, audit line
	// and finding metrics (30% of the load generator's mix).
	b.Run("denied/policies=10000", func(b *testing.B) {
		benchAdmission(b, 10_000, "open", false)
	})
}

func benchAdmission(b *testing.B, policies int, name string, allowed bool) {
	hook, body := benchHook(b, policies/fleet.PoliciesPerNamespace, name)
	want := []byte(fmt.Sprintf(`"allowed":%t`, allowed))
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, PathValidate, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		hook.ServeHTTP(rec, req)
		lat = append(lat, time.Since(start))
		if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), want) {
			b.Fatalf("unexpected response %d: %s", rec.Code, rec.Body.String())
		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// benchHook is the validating path as `modelguard serve` serves it (httpHandler), with
// controller-runtime's logger a JSON one, as serve sets it.
func benchHook(b *testing.B, namespaces int, name string) (http.Handler, []byte) {
	b.Helper()
	ctrllog.SetLogger(logr.FromSlogHandler(slog.NewJSONHandler(io.Discard, nil)))
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	m := NewMetrics(prometheus.NewRegistry())
	cfg, err := NewConfigStore("", log, m)
	if err != nil {
		b.Fatal(err)
	}
	snap := policy.NewSnapshot(cfg.Get())
	for _, o := range fleet.Mesh(namespaces) {
		if err := snap.Upsert(o); err != nil {
			b.Fatal(err)
		}
	}
	v := &Validator{Config: cfg, Mesh: &fakeMesh{snap: snap}, Audit: &Auditor{Log: log, Metrics: m}}
	subject := fleet.InferenceService(fleet.Namespace(namespaces/2), name)
	// The AdmissionReview as kube-apiserver sends it, managedFields and all.
	body, err := fleet.CreateReview(subject, "bench", 0)
	if err != nil {
		b.Fatal(err)
	}
	return httpHandler(v), body
}
