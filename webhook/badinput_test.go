package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/events"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/modelguard/modelguard/policy"
)

// Hostile and malformed inputs (issue 7), each sent over HTTP to a controller-runtime webhook
// server that serves the handlers exactly as Setup does (register), to every endpoint the
// input concerns. Each must get an AdmissionReview answer (HTTP 200, as controller-runtime
// answers even its own errors) that:
//   - refuses it: allowed is false on /validate and /guard for everything malformed;
//   - echoes the request's uid whenever the body could be read (an answer without the uid is a
//     failed call to the API server, refused under failurePolicy Fail);
//   - says what was wrong and where (the message is asserted on);
//   - stays small (a hostile object can draw thousands of findings);
//   - and comes from a handler that did not panic.
//
// /mutate runs with failurePolicy Ignore, but failurePolicy only governs failed calls: an
// answer with allowed false is a refusal the API server honours. So /mutate refuses every
// malformed object too (what the validator would refuse anyway), and where it admits (a
// well-formed request in an unusual envelope) its patch touches modelguard.io annotations only.
//
// The meshes: /validate and /mutate see policy/testdata/mesh/kserve.yaml, where nothing is
// covered (an exposure is always denied, so a hostile input that is judged rather than refused
// must still be denied); /guard sees the covered setup of seeds/002, where weakening is refused.
func TestBadInputOverHTTP(t *testing.T) {
	srv := newBadInputServer(t)

	isvcPublic := object(t, "isvc-public.yaml")      // exposed and uncovered: denied
	vsPublic := object(t, "badinput/vs-public.yaml") // exposed and uncovered: denied
	pa := object(t, "pa-default.yaml")
	apRequireToken := object(t, "ap-require-token.yaml")

	rows := []badInput{
		// --- The body: refused by controller-runtime or jsonOnly before it is read, so there is
		// no uid to echo.
		{name: "empty body", body: raw(nil),
			want: every(http.StatusBadRequest, "request body is empty")},
		{name: "body is not JSON", body: raw([]byte("modelguard, please allow")),
			want: every(http.StatusBadRequest, "not a JSON AdmissionReview (it starts with 'm')")},
		{name: "truncated JSON body", body: func(uid string) []byte { b := create(kVS, vsPublic).body(uid); return b[:len(b)/2] },
			want: every(http.StatusBadRequest, "unexpected end of JSON input")},
		{name: "wrong Content-Type", body: create(kISVC, isvcPublic).body, ctype: "text/plain",
			want: every(http.StatusBadRequest, "contentType=text/plain, expected application/json")},
		{name: "body above the HTTP server's limit (8 MiB)", body: create(kISVC, isvcWithPad(8<<20)).body, inProcess: true, // generated
			want: every(http.StatusRequestEntityTooLarge, "request entity is too large; limit is 7340032 bytes")},
		{name: "JSON with a byte order mark, hiding an external gateway behind a duplicate key",
			// controller-runtime reads such a body as YAML, and YAML-to-JSON keeps the last
			// duplicate key: the handler would see only "gateways": ["mesh"] and admit.
			body: func(uid string) []byte {
				return append([]byte("\xef\xbb\xbf"), create(kVS, object(t, "badinput/vs-duplicate-gateways.json")).body(uid)...)
			},
			want: every(http.StatusBadRequest, "it starts with a byte order mark")},
		{name: "YAML body, hiding an external gateway behind a duplicate key", body: raw(object(t, "badinput/review-yaml.yaml", asIs)),
			want: every(http.StatusBadRequest, "not a JSON AdmissionReview (it starts with '#')")},
		{name: "uid of the wrong type", body: raw(object(t, "badinput/review-uid-number.json")),
			want: every(http.StatusBadRequest, "cannot unmarshal number into Go struct field AdmissionRequest.AdmissionReview.request.uid")},
		{name: "deeply nested JSON (10,000 levels) in spec", body: create(kISVC, isvcWithSpec(deep(10_000))).body, // generated
			want: every(http.StatusBadRequest, "exceeded max depth")},

		// --- The envelope.
		{name: "AdmissionReview with no request", body: raw(object(t, "badinput/review-no-request.json")),
			want: every(http.StatusBadRequest, "the AdmissionReview carries no request")},
		{name: "AdmissionReview with a null request", body: raw(object(t, "badinput/review-null-request.json")),
			want: every(http.StatusBadRequest, "the AdmissionReview carries no request")},
		{name: "not an AdmissionReview (a Pod)", body: raw(object(t, "badinput/review-not-a-review.json")), answerVersion: "-",
			want: every(http.StatusBadRequest, "the AdmissionReview carries no request")},
		{name: "request without a uid", body: review{op: "CREATE", kind: kISVC, ns: "models", name: "private", noUID: true, object: isvcPublic}.body,
			want: every(http.StatusBadRequest, "the request has no uid")},
		{name: "AdmissionReview v1beta1", echo: true, answerVersion: "admission.k8s.io/v1beta1",
			// Not what modelguard's configuration asks for (admissionReviewVersions [v1]), but
			// controller-runtime reads it as v1 and answers in kind: the verdict is the same.
			body: func(uid string) []byte {
				r := create(kISVC, isvcPublic)
				r.version = "admission.k8s.io/v1beta1"
				return r.body(uid)
			},
			want: merge(on(http.StatusForbidden, "[JWT_ROUTE_UNCOVERED] Requests without a JWT reach InferenceService models/private", PathValidate),
				admitted(PathMutate))},
		{name: "AdmissionReview of an unknown version (admission.k8s.io/v2)", echo: true, answerVersion: "admission.k8s.io/v2",
			// controller-runtime decodes any version into its v1 type and answers in that
			// version, which no API server accepts; the request inside is judged as usual.
			body: func(uid string) []byte {
				r := create(kISVC, isvcPublic)
				r.version = "admission.k8s.io/v2"
				return r.body(uid)
			},
			want: merge(on(http.StatusForbidden, "[JWT_ROUTE_UNCOVERED]", PathValidate), admitted(PathMutate))},
		{name: "request.name of 1 MiB", echo: true, body: review{op: "CREATE", kind: kISVC, ns: "models", name: strings.Repeat("n", 1<<20), object: isvcPublic}.body,
			want: every(http.StatusBadRequest, "the request's name (1048576 bytes) or namespace (6 bytes) is longer than Kubernetes allows (253, 63)")},
		{name: "100,000 groups in userInfo", echo: true, body: func(uid string) []byte { r := create(kVS, vsPublic); r.groups = 100_000; return r.body(uid) },
			// Judged as usual; the audit line lists a few groups (asserted: audit lines stay small).
			want: on(http.StatusForbidden, "[JWT_ROUTE_UNCOVERED]", PathValidate)},
		{name: "invented kind and operation", echo: true,
			// Refused; and counted under kind and operation "other" (asserted after the table):
			// each new label value would be a metric series held for good.
			body: review{op: "FROBNICATE", kind: "example.com/v1/Frobnicator", ns: "models", name: "bad", object: vsPublic}.body,
			want: every(http.StatusBadRequest, `operation "FROBNICATE" is not one modelguard handles`)},
		{name: "unknown operation (CONNECT)", echo: true, body: review{op: "CONNECT", kind: kISVC, ns: "models", name: "private", object: isvcPublic}.body,
			want: every(http.StatusBadRequest, `operation "CONNECT" is not one modelguard handles`)},
		{name: "request.kind of another case (Virtualservice)", echo: true,
			body: review{op: "CREATE", kind: "networking.istio.io/v1/Virtualservice", ns: "models", name: "bad", object: vsPublic}.body,
			want: on(http.StatusBadRequest, "modelguard does not handle Virtualservice.networking.istio.io here", PathValidate, PathMutate, PathGuard)},
		{name: "request.kind differs from the object's kind", echo: true,
			body: review{op: "CREATE", kind: kVS, ns: "models", name: "private", object: isvcPublic}.body,
			want: on(http.StatusBadRequest, "the request is for VirtualService.networking.istio.io but it carries a InferenceService.serving.kserve.io", PathValidate)},
		{name: "request.kind version differs from the object's apiVersion", echo: true,
			body: review{op: "CREATE", kind: kVS, ns: "models", name: "bad", object: object(t, "badinput/vs-v1alpha3.yaml")}.body,
			want: on(http.StatusBadRequest, `the request is for networking.istio.io/v1 VirtualService but it carries apiVersion "networking.istio.io/v1alpha3"`, PathValidate)},
		{name: "object's name differs from the request's", echo: true,
			body: review{op: "CREATE", kind: kISVC, ns: "models", name: "other", object: isvcPublic}.body,
			want: on(http.StatusBadRequest, `the object's name "private" differs from the request's "other"`, PathValidate, PathMutate)},
		{name: "object's namespace differs from the request's", echo: true,
			body: review{op: "CREATE", kind: kPAv1beta1, ns: "istio-system", name: "default", object: pa}.body,
			want: on(http.StatusBadRequest, `the object's namespace "models" differs from the request's "istio-system"`, PathGuard)},
		{name: "no namespace in the request or the object", echo: true,
			body: review{op: "CREATE", kind: kISVC, name: "bad", object: isvcWithSpec(`{"predictor":{}}`, withoutNamespace)}.body,
			want: on(http.StatusBadRequest, "the request and its InferenceService name no namespace", PathValidate, PathMutate)},
		{name: "CREATE with a null object", echo: true, body: review{op: "CREATE", kind: kISVC, ns: "models", name: "private", object: []byte("null")}.body,
			want: on(http.StatusBadRequest, "the CREATE request for InferenceService.serving.kserve.io carries no object", PathValidate, PathMutate)},
		{name: "object is a JSON string", echo: true, body: review{op: "CREATE", kind: kISVC, ns: "models", name: "private", object: []byte(`"InferenceService"`)}.body,
			want: on(http.StatusBadRequest, `invalid JSON: expected an object, found '"'`, PathValidate, PathMutate)},
		{name: "object is a JSON array", echo: true, body: review{op: "CREATE", kind: kAP, ns: "models", name: "bad", object: []byte(`[{"kind":"AuthorizationPolicy"}]`)}.body,
			want: on(http.StatusBadRequest, `invalid JSON: expected an object, found '['`, PathGuard)},

		// --- UPDATE and DELETE: the old object must be there, readable, and the same object.
		{name: "UPDATE without oldObject", echo: true, body: review{op: "UPDATE", kind: kISVC, ns: "models", name: "private", object: isvcPublic}.body,
			want: on(http.StatusBadRequest, "the UPDATE request for InferenceService models/private carries no oldObject", PathValidate, PathMutate)},
		{name: "UPDATE of a policy without oldObject", echo: true, body: review{op: "UPDATE", kind: kPAv1beta1, ns: "models", name: "default", object: pa}.body,
			want: on(http.StatusBadRequest, "the UPDATE request for PeerAuthentication models/default carries no oldObject", PathGuard)},
		{name: "UPDATE whose oldObject is another kind", echo: true,
			// The old object is the same private-to-public change a real update would show,
			// but of another kind: never compared, refused.
			body: review{op: "UPDATE", kind: kISVC, ns: "models", name: "private", object: isvcPublic, oldObject: object(t, "badinput/vs-public.yaml")}.body,
			want: on(http.StatusBadRequest, "oldObject: the request is for InferenceService.serving.kserve.io but it carries a VirtualService.networking.istio.io", PathValidate, PathMutate)},
		{name: "UPDATE whose oldObject has another name", echo: true,
			body: review{op: "UPDATE", kind: kISVC, ns: "models", name: "private", object: isvcPublic, oldObject: isvcWithSpec(`{"predictor":{}}`)}.body,
			want: on(http.StatusBadRequest, `oldObject: the object's name "bad" differs from the request's "private"`, PathValidate, PathMutate)},
		{name: "UPDATE whose oldObject is in another namespace", echo: true,
			body: review{op: "UPDATE", kind: kAPv1beta1, ns: "models", name: "require-token-for-external", object: apRequireToken,
				oldObject: bytes.Replace(apRequireToken, []byte(`"namespace":"models"`), []byte(`"namespace":"istio-system"`), 1)}.body,
			want: on(http.StatusBadRequest, `oldObject: the object's namespace "istio-system" differs from the request's "models"`, PathGuard)},
		{name: "UPDATE whose oldObject does not decode", echo: true,
			body: review{op: "UPDATE", kind: kVS, ns: "models", name: "bad", object: vsPublic, oldObject: object(t, "badinput/vs-old-unknown-field.yaml")}.body,
			want: on(http.StatusBadRequest, `oldObject of VirtualService models/bad: line 1: field spec.gatways: unknown field "gatways"`, PathValidate)},
		{name: "Namespace relabel whose oldObject is another namespace", echo: true,
			// A namespace's request.namespace is its own name, as the API server sends it.
			body: review{op: "UPDATE", kind: "v1/Namespace", ns: "models", name: "models", object: object(t, "badinput/ns-models-relabelled.yaml"),
				oldObject: object(t, "badinput/ns-elsewhere.yaml")}.body,
			want: on(http.StatusBadRequest, `oldObject: the object's name "elsewhere" differs from the request's "models"`, PathGuard)},
		{name: "DELETE without oldObject", echo: true, body: review{op: "DELETE", kind: kPAv1beta1, ns: "models", name: "default"}.body,
			want: on(http.StatusBadRequest, "the DELETE request for PeerAuthentication.security.istio.io carries no oldObject", PathGuard)},

		// --- Objects of the wrong shape.
		{name: "spec is a string", echo: true, body: create(kISVC, object(t, "badinput/isvc-spec-string.yaml")).body,
			want: on(http.StatusBadRequest, `field spec: expected a mapping, got a string ("predictor: sklearn")`, PathValidate, PathMutate)},
		{name: "spec is a number", echo: true, body: create(kVS, object(t, "badinput/vs-spec-number.yaml")).body,
			want: on(http.StatusBadRequest, "field spec: expected a mapping, got an integer (42)", PathValidate)},
		{name: "spec is a list", echo: true, body: create(kAP, object(t, "badinput/ap-spec-list.yaml")).body,
			want: on(http.StatusBadRequest, "field spec: expected a mapping, got a list", PathGuard)},
		{name: "metadata.name is a number", echo: true,
			body: review{op: "CREATE", kind: kISVC, ns: "models", name: "12345", object: object(t, "badinput/isvc-name-number.json")}.body,
			want: on(http.StatusBadRequest, "field metadata.name: expected a string, got an integer (12345)", PathValidate, PathMutate)},
		{name: "metadata is a string", echo: true, body: review{op: "CREATE", kind: kISVC, ns: "models", object: object(t, "badinput/isvc-metadata-string.yaml")}.body,
			want: on(http.StatusBadRequest, `field metadata: expected a mapping, got a string ("bad")`, PathValidate, PathMutate)},
		{name: "object without apiVersion", echo: true, body: create(kISVC, object(t, "badinput/isvc-no-apiversion.yaml")).body,
			want: on(http.StatusBadRequest, "document has no apiVersion", PathValidate, PathMutate)},
		{name: "spec: null", echo: true, body: create(kISVC, object(t, "badinput/isvc-spec-null.yaml")).body,
			// Decodes (null is an absent spec), then the engine refuses what it cannot judge.
			want: merge(on(http.StatusForbidden, "[INVALID_OBJECT] InferenceService models/bad: spec: required", PathValidate),
				on(http.StatusBadRequest, "InferenceService models/bad: spec: required", PathMutate))},
		{name: "missing spec", echo: true, body: create(kVS, object(t, "badinput/vs-no-spec.yaml")).body,
			want: on(http.StatusForbidden, "[INVALID_OBJECT] VirtualService models/bad has no spec", PathValidate)},

		// --- Huge, generated under the 3 MiB cap: answered quickly, judged right, answered briefly.
		{name: "100,000 hosts", echo: true, body: create(kVS, vsWith(list(100_000, `"h%d.models.example.com"`), `{"route":[{"destination":{"host":"sample-predictor"}}]}`)).body,
			want: on(http.StatusForbidden, "[JWT_ROUTE_UNCOVERED]", PathValidate)},
		{name: "100,000 http routes, the last one to the model", echo: true,
			body: create(kVS, vsWith(`"a.models.example.com"`, strings.Repeat(`{},`, 99_999)+`{"route":[{"destination":{"host":"sample-predictor"}}]}`)).body,
			want: on(http.StatusForbidden, "VirtualService models/bad http[99999]", PathValidate)},
		{name: "gateways x matches x destinations past MaxRoutes, in 4 KB", echo: true,
			body: func(uid string) []byte {
				spec := fmt.Sprintf(`{"gateways":[%s],"hosts":["a.models.example.com"],"http":[{"match":[%s],"route":[{"destination":{"host":"sample-predictor"}}]}]}`,
					list(60, `"istio-system/g%d"`), list(100, `{"uri":{"prefix":"/p%d"}}`))
				return create(kVS, vsWithSpec(spec)).body(uid)
			},
			want: on(http.StatusForbidden, fmt.Sprintf("[INVALID_OBJECT] VirtualService models/bad expands to more than %d routes", MaxRoutes), PathValidate)},
		{name: "AuthorizationPolicy with 50,000 rules", echo: true,
			// ALLOW with rules {} allows every request: the guard refuses it whatever its length.
			body: create(kAP, apWithSpec(`{"rules":[`+strings.TrimSuffix(strings.Repeat(`{},`, 50_000), ",")+`]}`)).body,
			want: on(http.StatusForbidden, "this change would leave InferenceService models/sample uncovered", PathGuard)},
		{name: "PeerAuthentication with 10,000 port overrides", echo: true,
			// One finding per port: the answer lists a few and counts the rest.
			body: create(kPA, paWithSpec(`{"selector":{"matchLabels":{"app":"isvc.sample-predictor"}},"mtls":{"mode":"STRICT"},"portLevelMtls":{`+
				list(10_000, `"%d":{"mode":"DISABLE"}`, 1)+`}}`)).body,
			want: on(http.StatusForbidden, "more findings (codes: MTLS_PORT_OVERRIDE)", PathGuard)},
		{name: "object above 3 MiB (MaxObjectBytes)", echo: true, body: create(kISVC, isvcWithPad(MaxObjectBytes)).body,
			want: on(http.StatusRequestEntityTooLarge, "more than modelguard reads (3145728): refused", PathValidate, PathMutate)},
		{name: "policy above 3 MiB", echo: true, body: create(kPA, paWithSpec(`{"mtls":{"mode":"STRICT"}}`, MaxObjectBytes)).body,
			want: on(http.StatusRequestEntityTooLarge, "more than modelguard reads", PathGuard)},
		{name: "object and oldObject above 3 MiB together", echo: true,
			body: review{op: "UPDATE", kind: kISVC, ns: "models", name: "bad", object: isvcWithPad(MaxObjectBytes / 2), oldObject: isvcWithPad(MaxObjectBytes / 2)}.body,
			want: on(http.StatusRequestEntityTooLarge, "more than modelguard reads", PathValidate)},
		{name: "deeply nested JSON (9,000 levels) in spec", echo: true, body: create(kISVC, isvcWithSpec(`{"predictor":`+deep(9_000)+`}`)).body, // generated
			// Under encoding/json's limit of 10,000, so it reaches the strict decoder.
			want: on(http.StatusBadRequest, "InferenceService models/bad: line 1: document nesting exceeds the maximum depth of 100", PathValidate, PathMutate)},
		{name: "deeply nested JSON (9,000 levels) in an unknown field", echo: true,
			body: create(kVS, vsWithSpec(`{"hosts":["a"],"x-unknown":`+deep(9_000)+`}`)).body, // generated
			want: on(http.StatusBadRequest, "document nesting exceeds the maximum depth of 100", PathValidate)},

		// --- Text and numbers.
		{name: "invalid UTF-8 in the name", echo: true, body: create(kISVC, object(t, "badinput/isvc-invalid-utf8-name.yaml")).body,
			want: on(http.StatusBadRequest, "InferenceService models/bad\uFFFD: line 1: invalid UTF-8 at byte", PathValidate, PathMutate)},
		{name: "invalid UTF-8 in a path", echo: true, body: create(kVS, object(t, "badinput/vs-invalid-utf8-path.yaml")).body,
			want: on(http.StatusBadRequest, "VirtualService models/bad: line 1: invalid UTF-8 at byte", PathValidate)},
		{name: "invalid UTF-8 in an annotation", echo: true, body: create(kISVC, object(t, "badinput/isvc-invalid-utf8-annotation.yaml")).body,
			want: on(http.StatusBadRequest, "InferenceService models/bad: line 1: invalid UTF-8 at byte", PathValidate, PathMutate)},
		{name: "unknown API version of a known kind (networking.istio.io/v2)", echo: true,
			body: create("networking.istio.io/v2/VirtualService", object(t, "badinput/vs-v2.yaml")).body,
			want: on(http.StatusBadRequest, "networking.istio.io/v2 is not served for kind VirtualService: use one of", PathValidate)},
		{name: "unknown API version of a known kind (serving.kserve.io/v1alpha9)", echo: true,
			body: create("serving.kserve.io/v1alpha9/InferenceService", object(t, "badinput/isvc-v1alpha9.yaml")).body,
			want: on(http.StatusBadRequest, "serving.kserve.io/v1alpha9 is not served for kind InferenceService: use one of serving.kserve.io/v1beta1", PathValidate, PathMutate)},
		{name: "near-miss kind in the object (virtualservice)", echo: true,
			body: review{op: "CREATE", kind: kVS, ns: "models", name: "bad", object: object(t, "badinput/vs-kind-lowercase.yaml")}.body,
			want: on(http.StatusBadRequest, `kind "virtualservice" is not known: did you mean "VirtualService"?`, PathValidate)},
		{name: "duplicate JSON keys: a later gateways key hiding an external gateway", echo: true,
			body: create(kVS, object(t, "badinput/vs-duplicate-gateways.json")).body,
			want: on(http.StatusBadRequest, `field spec.gateways: duplicate key "gateways" (first defined at line 6)`, PathValidate)},
		{name: "one field under its JSON and its proto name", echo: true, body: create(kAP, object(t, "badinput/ap-both-spellings.yaml")).body,
			want: on(http.StatusBadRequest, `field spec.rules[0].from[0].source.not_request_principals: field "not_request_principals" is set twice (also as "notRequestPrincipals"`, PathGuard)},
		{name: "unknown field at depth", echo: true, body: create(kVS, object(t, "badinput/vs-unknown-field-deep.yaml")).body,
			want: on(http.StatusBadRequest, `field spec.http[0].route[0].destination.hostt: unknown field "hostt"`, PathValidate)},
		{name: "unknown field in a guarded policy (notRequestPrincipal)", echo: true, body: create(kAP, object(t, "badinput/ap-typo.yaml")).body,
			want: on(http.StatusBadRequest, `field spec.rules[0].from[0].source.notRequestPrincipal: unknown field "notRequestPrincipal" (did you mean "notRequestPrincipals"?)`, PathGuard)},
		{name: "port number overflowing 32 bits", echo: true, body: create(kVS, object(t, "badinput/vs-port-overflow.yaml")).body,
			want: on(http.StatusBadRequest, "field spec.http[0].route[0].destination.port.number: expected a 32-bit unsigned integer, got an integer (4294967376)", PathValidate)},
		{name: "port number with a fraction", echo: true, body: create(kVS, object(t, "badinput/vs-port-fraction.yaml")).body,
			want: on(http.StatusBadRequest, "field spec.http[0].route[0].destination.port.number", PathValidate)},
		{name: "integer overflowing 64 bits", echo: true, body: create(kISVC, object(t, "badinput/isvc-int64-overflow.json")).body,
			want: on(http.StatusBadRequest, "field spec.predictor.containers[0].ports[0].containerPort: integer 9223372036854775808 does not fit in 64 bits", PathValidate, PathMutate)},
		{name: "port key overflowing 32 bits", echo: true, body: create(kPA, object(t, "badinput/pa-port-key-overflow.yaml")).body,
			want: on(http.StatusBadRequest, `field spec.portLevelMtls.4294967376: invalid map key "4294967376": expected a uint32`, PathGuard)},
		{name: "weight overflowing int32", echo: true, body: create(kVS, object(t, "badinput/vs-weight-overflow.yaml")).body,
			want: on(http.StatusBadRequest, "field spec.http[0].route[0].weight: expected a 32-bit integer, got an integer (2147483649)", PathValidate)},
		{name: "negative weight", echo: true, body: create(kVS, object(t, "badinput/vs-negative-weight.yaml")).body,
			// Istio refuses it; modelguard judges the route to the model all the same.
			want: on(http.StatusForbidden, "[JWT_ROUTE_UNCOVERED]", PathValidate)},
		{name: "null in arrays", echo: true, body: create(kVS, object(t, "badinput/vs-null-in-arrays.yaml")).body,
			want: on(http.StatusBadRequest, "field spec.gateways[0]: null is not allowed here", PathValidate)},
		{name: "unknown enum value", echo: true, body: create(kDR, object(t, "badinput/dr-bad-enum.yaml")).body,
			want: on(http.StatusBadRequest, `field spec.trafficPolicy.tls.mode: unknown value "DISABLEE"`, PathGuard)},
	}
	require.GreaterOrEqual(t, len(rows), 35)
	defer srv.checkMetricLabels(t)

	for i, row := range rows {
		uid := fmt.Sprintf("uid-badinput-%02d", i)
		body := row.body(uid)
		for _, path := range []string{PathValidate, PathMutate, PathGuard} {
			want, ok := row.want[path]
			if !ok {
				continue
			}
			t.Run(row.name+path, func(t *testing.T) {
				srv.check(t, row, path, uid, body, want)
			})
		}
	}
}

// badInput is one row: a request body and what each endpoint it is sent to must answer.
type badInput struct {
	name  string
	body  func(uid string) []byte // the request body, holding the row's uid where it has one
	ctype string                  // Content-Type; "" is application/json
	// echo: the answer carries the row's uid. Not where the body is refused before it is
	// read, or holds no uid: the answer's uid is then empty.
	echo bool
	// inProcess: served by the same mux, in process. The server stops reading a body at its
	// limit and closes the connection, which races the client's upload of the rest.
	inProcess bool
	// answerVersion is the apiVersion of the answer: "" is admission.k8s.io/v1 (or none, for
	// a body that could not be read), "-" is not checked.
	answerVersion string
	want          map[string]expect // by endpoint
}

// expect is what one endpoint answers.
type expect struct {
	code    int32  // the status code inside the AdmissionReview
	msg     string // a substring of the status message (ignored when allowed)
	allowed bool   // /mutate only: admitted, with a patch of modelguard.io annotations at most
}

func on(code int32, msg string, paths ...string) map[string]expect {
	out := map[string]expect{}
	for _, p := range paths {
		out[p] = expect{code: code, msg: msg}
	}
	return out
}

func every(code int32, msg string) map[string]expect {
	return on(code, msg, PathValidate, PathMutate, PathGuard)
}

func admitted(path string) map[string]expect {
	return map[string]expect{path: {code: http.StatusOK, allowed: true}}
}

func merge(ms ...map[string]expect) map[string]expect {
	out := map[string]expect{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// badInputServer serves the handlers of three fixtures as Setup does, over HTTP.
type badInputServer struct {
	url      string
	mux      http.Handler
	client   *http.Client        // a connection per request: a refused body leaves none half read
	fixtures map[string]*fixture // by endpoint
	audit    map[string]*lockedBuffer
	panics   atomic.Int64
}

func newBadInputServer(t *testing.T) *badInputServer {
	t.Helper()
	s := &badInputServer{
		fixtures: map[string]*fixture{
			PathValidate: newFixture(t, "", "kserve.yaml"),
			PathMutate:   newFixture(t, "config-inject.yaml", "kserve.yaml"),
			PathGuard:    seed002(t),
		},
		audit: map[string]*lockedBuffer{},
	}
	for path, f := range s.fixtures {
		// The handlers run on the server's goroutines: audit lines go to a locked buffer, and
		// Events to a recorder that does not block after ten.
		buf := &lockedBuffer{}
		s.audit[path] = buf
		f.validator.Audit.Log = slog.New(slog.NewJSONHandler(buf, nil))
		f.validator.Audit.Recorder = events.NewFakeRecorder(10_000)
	}
	srv := crwebhook.NewServer(crwebhook.Options{})
	register(srv, s.spy(s.fixtures[PathValidate].validator), s.spy(s.fixtures[PathMutate].mutator), s.spy(s.fixtures[PathGuard].guard()))
	ts := httptest.NewServer(srv.WebhookMux())
	t.Cleanup(ts.Close)
	s.url, s.mux = ts.URL, srv.WebhookMux()
	s.client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	return s
}

// panicSpy counts a handler's panics; controller-runtime still recovers them as in production
// (a 500 answer), and the test fails on the count.
type panicSpy struct {
	admission.Handler
	panics *atomic.Int64
}

func (s *badInputServer) spy(h admission.Handler) admission.Handler {
	return panicSpy{Handler: h, panics: &s.panics}
}

func (p panicSpy) Handle(ctx context.Context, req admission.Request) admission.Response {
	defer func() {
		if r := recover(); r != nil {
			p.panics.Add(1)
			panic(r)
		}
	}()
	return p.Handler.Handle(ctx, req)
}

// answer is the AdmissionReview the server sends back.
type answer struct {
	APIVersion string                         `json:"apiVersion"`
	Kind       string                         `json:"kind"`
	Response   *admissionv1.AdmissionResponse `json:"response"`
}

func (s *badInputServer) check(t *testing.T, row badInput, path, uid string, body []byte, want expect) {
	ctype := row.ctype
	if ctype == "" {
		ctype = "application/json"
	}
	auditBefore := s.audit[path].Len()
	panicsBefore := s.panics.Load()
	start := time.Now()
	var status int
	var out []byte
	if row.inProcess {
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		rec := httptest.NewRecorder()
		s.mux.ServeHTTP(rec, req)
		status, out = rec.Code, rec.Body.Bytes()
	} else {
		resp, err := s.client.Post(s.url+path, ctype, bytes.NewReader(body))
		require.NoError(t, err, "a panic that escaped would break the connection")
		defer resp.Body.Close()
		status = resp.StatusCode
		out, err = io.ReadAll(resp.Body)
		require.NoError(t, err)
	}
	elapsed := time.Since(start)

	assert.Equal(t, int64(0), s.panics.Load()-panicsBefore, "the handler panicked")
	require.Equal(t, http.StatusOK, status, "controller-runtime answers errors inside the AdmissionReview: %s", out)
	var ans answer
	require.NoError(t, json.Unmarshal(out, &ans), "%s", out)
	require.NotNil(t, ans.Response, "%s", out)
	r := ans.Response
	require.NotNil(t, r.Result, "%s", out)
	msg := r.Result.Message

	assert.NotContains(t, msg, "panic", "no panic, even recovered")
	wantUID := ""
	if row.echo {
		wantUID = uid
	}
	assert.Equal(t, wantUID, string(r.UID), "the uid echoed")
	switch {
	case row.answerVersion == "-":
	case row.answerVersion != "":
		assert.Equal(t, row.answerVersion, ans.APIVersion)
	case row.echo:
		assert.Equal(t, "admission.k8s.io/v1", ans.APIVersion)
	}
	assert.Less(t, len(out), 64<<10, "the answer stays small")
	assert.LessOrEqual(t, len(msg), maxDenialBytes)
	assert.Less(t, elapsed, 20*time.Second, "answered in reasonable time (the API server waits 5 s; the race detector slows this down)")
	t.Logf("%s %s: %d bytes in, answered in %v: %.300q", row.name, path, len(body), elapsed.Round(time.Millisecond), msg)

	if want.allowed {
		require.Equal(t, PathMutate, path, "only /mutate may admit a hostile input")
		assert.True(t, r.Allowed, "%s", msg)
		if len(r.Patch) > 0 {
			var ops []struct {
				Path string `json:"path"`
			}
			require.NoError(t, json.Unmarshal(r.Patch, &ops))
			for _, op := range ops {
				assert.True(t, strings.HasPrefix(op.Path, "/metadata/annotations"), "the patch touches only annotations: %s", r.Patch)
			}
		}
		return
	}
	assert.False(t, r.Allowed, "a malformed or hostile input is never admitted: %s", clip(msg, 2000))
	assert.Empty(t, r.Patch, "a refusal carries no patch")
	assert.Equal(t, want.code, r.Result.Code, "%s", clip(msg, 2000))
	assert.Contains(t, msg, want.msg)

	// A refusal by the handler is audited, under the request's uid.
	if row.echo {
		lines := s.audit[path].linesFrom(t, auditBefore)
		require.NotEmpty(t, lines, "an audit line")
		last := lines[len(lines)-1]
		assert.Equal(t, uid, last["uid"])
		assert.Contains(t, []string{"errored", "denied"}, last["decision"])
	}
}

// checkMetricLabels checks that the decisions were counted under bounded label values only.
func (s *badInputServer) checkMetricLabels(t *testing.T) {
	kinds := map[string]bool{"other": true}
	for _, owned := range []map[schema.GroupKind]bool{judgedKinds, modelKinds, guardedKinds} {
		for gk := range owned {
			kinds[gk.Kind] = true
		}
	}
	ops := map[string]bool{"CREATE": true, "UPDATE": true, "DELETE": true, "other": true}
	for path, f := range s.fixtures {
		ch := make(chan prometheus.Metric, 1000)
		f.metrics.Decisions.Collect(ch)
		close(ch)
		for m := range ch {
			var pb dto.Metric
			require.NoError(t, m.Write(&pb))
			for _, l := range pb.GetLabel() {
				switch l.GetName() {
				case "kind":
					assert.True(t, kinds[l.GetValue()], "%s: kind label %q", path, clip(l.GetValue(), 100))
				case "operation":
					assert.True(t, ops[l.GetValue()], "%s: operation label %q", path, clip(l.GetValue(), 100))
				}
			}
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for the server's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// linesFrom parses the JSON lines written after offset from.
func (b *lockedBuffer) linesFrom(t *testing.T, from int) []map[string]any {
	t.Helper()
	b.mu.Lock()
	text := b.buf.String()[from:]
	b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		assert.Less(t, len(line), 128<<10, "an audit line stays small")
		out = append(out, m)
	}
	return out
}

// Kinds of requests, as "group/version/Kind".
const (
	kVS   = "networking.istio.io/v1/VirtualService"
	kDR   = "networking.istio.io/v1/DestinationRule"
	kISVC = "serving.kserve.io/v1beta1/InferenceService"
	kAP   = "security.istio.io/v1/AuthorizationPolicy"
	kPA   = "security.istio.io/v1/PeerAuthentication"

	kAPv1beta1 = "security.istio.io/v1beta1/AuthorizationPolicy" // the testdata policies' version
	kPAv1beta1 = "security.istio.io/v1beta1/PeerAuthentication"
)

// review is an AdmissionReview written around objects kept byte for byte (duplicate keys,
// invalid UTF-8 and all), which encoding an admissionv1.AdmissionReview would not do.
type review struct {
	version           string // the AdmissionReview's apiVersion; "" is admission.k8s.io/v1
	noUID             bool
	op                string
	kind              string // "group/version/Kind"
	ns, name          string
	object, oldObject []byte // nil: left out
	groups            int    // userInfo groups generated; 0: one
}

// create is a CREATE of obj, named in the request as it names itself (the fixtures are all
// models/bad, or the testdata objects reused).
func create(kind string, obj []byte) review {
	r := review{op: "CREATE", kind: kind, ns: "models", name: "bad", object: obj}
	var meta struct {
		Metadata struct{ Name, Namespace string }
	}
	if json.Unmarshal(obj, &meta) == nil && meta.Metadata.Name != "" {
		r.name, r.ns = meta.Metadata.Name, meta.Metadata.Namespace
	}
	return r
}

func (r review) body(uid string) []byte {
	str := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	version := r.version
	if version == "" {
		version = "admission.k8s.io/v1"
	}
	parts := strings.Split(r.kind, "/")
	if len(parts) == 2 {
		parts = append([]string{""}, parts...)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"apiVersion":%s,"kind":"AdmissionReview","request":{`, str(version))
	if !r.noUID {
		fmt.Fprintf(&b, `"uid":%s,`, str(uid))
	}
	fmt.Fprintf(&b, `"operation":%s,"kind":{"group":%s,"version":%s,"kind":%s},`, str(r.op), str(parts[0]), str(parts[1]), str(parts[2]))
	if r.ns != "" {
		fmt.Fprintf(&b, `"namespace":%s,`, str(r.ns))
	}
	if r.name != "" {
		fmt.Fprintf(&b, `"name":%s,`, str(r.name))
	}
	if r.object != nil {
		b.WriteString(`"object":`)
		b.Write(r.object)
		b.WriteString(",")
	}
	if r.oldObject != nil {
		b.WriteString(`"oldObject":`)
		b.Write(r.oldObject)
		b.WriteString(",")
	}
	groups := `"system:authenticated"`
	if r.groups > 0 {
		groups = list(r.groups, `"group-%d"`)
	}
	b.WriteString(`"userInfo":{"username":"mallory","groups":[` + groups + `]}}}`)
	return b.Bytes()
}

func raw(body []byte) func(string) []byte { return func(string) []byte { return body } }

// asIs keeps a fixture's bytes (no YAML-to-JSON conversion).
const asIs = true

// object reads a fixture under testdata: YAML is converted to JSON, JSON kept byte for byte;
// "@INVALID-UTF8@" becomes the byte 0xff.
func object(t *testing.T, file string, keep ...bool) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", file))
	require.NoError(t, err)
	if strings.HasSuffix(file, ".yaml") && len(keep) == 0 {
		data, err = yaml.YAMLToJSON(data)
		require.NoError(t, err)
	}
	return bytes.ReplaceAll(data, []byte("@INVALID-UTF8@"), []byte{0xff})
}

// Generated objects, all models/bad.

const withoutNamespace = true

func isvcWithSpec(spec string, noNamespace ...bool) []byte {
	ns := `,"namespace":"models"`
	if len(noNamespace) > 0 {
		ns = ""
	}
	return []byte(`{"apiVersion":"serving.kserve.io/v1beta1","kind":"InferenceService","metadata":{"name":"bad"` + ns + `},"spec":` + spec + `}`)
}

// isvcWithPad is an exposed InferenceService of more than pad bytes (an annotation pads it).
func isvcWithPad(pad int) []byte {
	return []byte(`{"apiVersion":"serving.kserve.io/v1beta1","kind":"InferenceService","metadata":{"name":"bad","namespace":"models","annotations":{"pad":"` +
		strings.Repeat("x", pad) + `"}},"spec":{"predictor":{}}}`)
}

func vsWithSpec(spec string) []byte {
	return []byte(`{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"bad","namespace":"models"},"spec":` + spec + `}`)
}

// vsWith is a VirtualService on the external gateway with the given hosts and HTTP routes.
func vsWith(hosts, http string) []byte {
	return vsWithSpec(`{"gateways":["istio-system/public-gateway"],"hosts":[` + hosts + `],"http":[` + http + `]}`)
}

func apWithSpec(spec string) []byte {
	return []byte(`{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"bad","namespace":"models"},"spec":` + spec + `}`)
}

// paWithSpec is a PeerAuthentication, padded past pad bytes when pad is given.
func paWithSpec(spec string, pad ...int) []byte {
	ann := ""
	if len(pad) > 0 {
		ann = `,"annotations":{"pad":"` + strings.Repeat("x", pad[0]) + `"}`
	}
	return []byte(`{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"bad","namespace":"models"` + ann + `},"spec":` + spec + `}`)
}

// deep is JSON nested n levels deep.
func deep(n int) string {
	return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n)
}

// list formats n items with format, whose one verb takes the index (plus offset).
func list(n int, format string, offset ...int) string {
	off := 0
	if len(offset) > 0 {
		off = offset[0]
	}
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf(format, i+off)
	}
	return strings.Join(items, ",")
}

// A verdict with thousands of findings (what a hostile object can draw) gives a denial, warnings
// and an audit line of bounded size that still say how many findings there were.
func TestAnswersStaySmall(t *testing.T) {
	route := "gateway istio-system/public-gateway, host " + list(100_000, "h%d.example.com")
	v := policy.Verdict{Mode: policy.ModeEnforce, Rule: "default"}
	for i := range 10_000 {
		v.Findings = append(v.Findings, policy.Finding{Code: policy.CodeMTLSPortOverride, Severity: policy.SeverityError, Route: route,
			Message: fmt.Sprintf("port %d: %s", i, strings.Repeat("é", 1000)), Fix: fmt.Sprintf("fix %d", i)})
	}
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{UID: "u", Kind: metav1.GroupVersionKind{Kind: "PeerAuthentication"}, Namespace: "models", Name: "bad"}}

	msg := denialMessage(req, v)
	assert.LessOrEqual(t, len(msg), maxDenialBytes)
	assert.True(t, utf8.ValidString(msg), "clipping never cuts a character")
	assert.Contains(t, msg, "more findings (codes: MTLS_PORT_OVERRIDE)")
	assert.Equal(t, maxListedFixes, strings.Count(msg, "\nfix:\n"))

	ws := warnings(v)
	total := 0
	for _, w := range ws {
		total += len(w)
		assert.True(t, utf8.ValidString(w))
	}
	assert.LessOrEqual(t, len(ws), maxWarnings+1)
	assert.LessOrEqual(t, total, 4096, "the API server keeps 4 KiB of warnings")
	assert.Contains(t, ws[len(ws)-1], "more findings")

	var buf bytes.Buffer
	a := &Auditor{Log: slog.New(slog.NewJSONHandler(&buf, nil)), Metrics: NewMetrics(prometheus.NewRegistry())}
	a.record(context.Background(), decisionRecord{req: req, decision: "denied", verdict: v})
	assert.Less(t, buf.Len(), 128<<10)
	var line map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &line))
	assert.Len(t, line["findings"], maxAuditFindings)
	assert.EqualValues(t, 10_000-maxAuditFindings, line["findingsOmitted"])
}
