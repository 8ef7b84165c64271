package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/yaml"

	"github.com/modelguard/modelguard/policy/decode"
)

// FuzzAdmissionReview sends arbitrary bodies to every endpoint through the same HTTP path as
// production (jsonOnly, controller-runtime's admission webhook, the handlers). Whatever the
// body: no handler panics, every answer is an AdmissionReview (or an HTTP error), an answer
// to a request echoes its uid, and nothing is admitted on the validating endpoints unless its
// object decodes strictly (or it is a DELETE, whose object is the old one).
func FuzzAdmissionReview(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	var once sync.Once
	var srv *badInputServer
	f.Fuzz(func(t *testing.T, body []byte) {
		once.Do(func() { srv = newBadInputServer(t) })
		for _, path := range []string{PathValidate, PathMutate, PathGuard} {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			srv.mux.ServeHTTP(rec, req)
			if n := srv.panics.Load(); n > 0 {
				t.Fatalf("%s: a handler panicked on %q", path, body)
			}
			checkFuzzAnswer(t, path, body, rec)
		}
	})
}

func checkFuzzAnswer(t *testing.T, path string, body []byte, rec *httptest.ResponseRecorder) {
	if rec.Code != http.StatusOK {
		return // an HTTP error: the API server counts it as a failed call (fail closed)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
		t.Fatalf("%s: answer is not an AdmissionReview: %v %.300s", path, err, rec.Body.String())
	}
	var in admissionv1.AdmissionReview
	if json.Unmarshal(body, &in) != nil || in.Request == nil {
		if out.Response.Allowed && path != PathMutate {
			t.Fatalf("%s: admitted a body that is not an AdmissionReview: %q", path, body)
		}
		return
	}
	if in.Request.UID != "" && out.Response.UID != in.Request.UID {
		// A review controller-runtime's codec refuses (an apiVersion it cannot parse, say,
		// which encoding/json above ignores) is answered without its uid: that answer must be
		// an error that refuses. kube-apiserver also counts a uid it did not send as a failed
		// call.
		refused := out.Response.UID == "" && !out.Response.Allowed && out.Response.Result != nil && out.Response.Result.Code >= http.StatusBadRequest
		if !refused {
			t.Fatalf("%s: answered uid %q to request %q: %+v", path, out.Response.UID, in.Request.UID, out.Response)
		}
		return
	}
	if !out.Response.Allowed || path == PathMutate || in.Request.Operation == admissionv1.Delete {
		return
	}
	if _, err := decode.DecodeObject(in.Request.Object.Raw); err != nil {
		t.Fatalf("%s: admitted an object the strict decoder refuses (%v): %q", path, err, body)
	}
}

// fuzzSeeds are CREATE reviews of the hostile objects of the bad-input table, the reviews
// among them as they are, and a review the validator admits.
func fuzzSeeds(f *testing.F) [][]byte {
	paths, err := filepath.Glob(filepath.Join("testdata", "badinput", "*"))
	if err != nil {
		f.Fatal(err)
	}
	var out [][]byte
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		name := filepath.Base(p)
		switch {
		case strings.HasPrefix(name, "review-"):
			out = append(out, data)
		case strings.HasSuffix(name, ".json"), strings.HasSuffix(name, ".yaml"):
			if js, err := yaml.YAMLToJSON(data); err == nil {
				out = append(out, wrapReview(js))
			}
		}
	}
	return out
}

func wrapReview(object []byte) []byte {
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	_ = json.Unmarshal(object, &meta)
	group, version, found := strings.Cut(meta.APIVersion, "/")
	if !found {
		group, version = "", meta.APIVersion
	}
	review := map[string]any{
		"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
		"request": map[string]any{
			"uid": "fuzz", "operation": "CREATE", "name": meta.Metadata.Name, "namespace": meta.Metadata.Namespace,
			"kind":   map[string]string{"group": group, "version": version, "kind": meta.Kind},
			"object": json.RawMessage(object),
		},
	}
	body, _ := json.Marshal(review)
	return body
}
