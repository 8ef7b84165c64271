package webhook

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Hostile or broken AdmissionReviews at the HTTP level: controller-runtime's plumbing and the
// handler together must answer each with a clear error, never an allow, never a panic.
func TestHTTPBadReviews(t *testing.T) {
	f := newFixture(t, "", "kserve.yaml")
	hooks := map[string]*admission.Webhook{
		"validate": {Handler: f.validator},
		"mutate":   {Handler: f.mutator},
		"guard":    {Handler: f.guard()},
	}
	for name, body := range map[string]string{
		"malformed JSON":              `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{`,
		"no request":                  `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`,
		"null request":                `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}`,
		"request without kind":        `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","operation":"CREATE","object":{"apiVersion":"v1"}}}`,
		"object is not an object":     `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","operation":"CREATE","kind":{"group":"serving.kserve.io","version":"v1beta1","kind":"InferenceService"},"object":"text"}}`,
		"invalid UTF-8 in the object": "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"1\",\"operation\":\"CREATE\",\"kind\":{\"group\":\"serving.kserve.io\",\"version\":\"v1beta1\",\"kind\":\"InferenceService\"},\"namespace\":\"models\",\"name\":\"x\",\"object\":{\"apiVersion\":\"serving.kserve.io/v1beta1\",\"kind\":\"InferenceService\",\"metadata\":{\"name\":\"x\xff\",\"namespace\":\"models\"},\"spec\":{\"predictor\":{}}}}}",
		"null spec":                   `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","operation":"CREATE","kind":{"group":"serving.kserve.io","version":"v1beta1","kind":"InferenceService"},"namespace":"models","name":"x","object":{"apiVersion":"serving.kserve.io/v1beta1","kind":"InferenceService","metadata":{"name":"x","namespace":"models"},"spec":null}}}`,
		"DELETE without oldObject":    `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","operation":"DELETE","kind":{"group":"security.istio.io","version":"v1","kind":"PeerAuthentication"},"namespace":"models","name":"default"}}`,
		"deeply nested JSON":          `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","operation":"CREATE","kind":{"group":"serving.kserve.io","version":"v1beta1","kind":"InferenceService"},"namespace":"models","name":"x","object":{"apiVersion":"serving.kserve.io/v1beta1","kind":"InferenceService","metadata":{"name":"x"},"spec":{"predictor":` + strings.Repeat(`{"a":`, 200) + `1` + strings.Repeat(`}`, 200) + `}}}}`,
	} {
		for hookName, hook := range hooks {
			t.Run(name+"/"+hookName, func(t *testing.T) {
				rec := httptest.NewRecorder()
				req := httptest.NewRequest(http.MethodPost, "/"+hookName, bytes.NewBufferString(body))
				req.Header.Set("Content-Type", "application/json")
				hook.ServeHTTP(rec, req)
				assert.Equal(t, http.StatusOK, rec.Code, "admission errors travel inside the AdmissionReview")
				assert.NotContains(t, rec.Body.String(), `"allowed":true`, rec.Body.String())
				assert.Contains(t, rec.Body.String(), `"message":"`, "a message says what was wrong")
			})
		}
	}
	t.Run("body over the limit", func(t *testing.T) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/validate", bytes.NewReader(bytes.Repeat([]byte("x"), 8<<20)))
		req.Header.Set("Content-Type", "application/json")
		hooks["validate"].ServeHTTP(rec, req)
		assert.NotContains(t, rec.Body.String(), `"allowed":true`)
		assert.Contains(t, rec.Body.String(), "too large")
	})
}
