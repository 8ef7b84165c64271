package webhook

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"strings"

	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/modelguard/modelguard/policy"
	"github.com/modelguard/modelguard/policy/decode"
)

type errTooLarge struct{ size int }

func (e *errTooLarge) Error() string {
	return fmt.Sprintf("the request's objects are %d bytes, more than modelguard reads (%d): refused", e.size, MaxObjectBytes)
}

// decodeRequest checks that the request is one the handler owns and decodes its object with
// the strict decoder (an object the engine cannot read exactly is refused, never guessed at).
// For DELETE the object is the old one.
func decodeRequest(req admission.Request, owned map[schema.GroupKind]bool) (client.Object, error) {
	obj, _, err := decodeObjects(req, owned)
	return obj, err
}

// decodeObjects is decodeRequest that also returns the old object of an UPDATE (nil for
// other operations). Everything the API server always sets is required, and everything that
// must agree does: a request that breaks either did not come from an API server, and is
// refused rather than judged leniently. In particular an UPDATE's oldObject must be present,
// decode strictly, and be the same object (group, version, kind, namespace, name) as the
// new one: the validator admits an UPDATE that "changes nothing it judges" on the strength
// of the old object, so a mismatched or unreadable one is never compared. (The API server
// builds oldObject from storage, so only an object stored before modelguard judged it can be
// unreadable; it can be deleted and created anew.)
func decodeObjects(req admission.Request, owned map[schema.GroupKind]bool) (obj, old client.Object, err error) {
	if req.UID == "" && req.Operation == "" && req.Kind == (metav1.GroupVersionKind{}) {
		return nil, nil, errors.New("the AdmissionReview carries no request")
	}
	if req.UID == "" {
		return nil, nil, errors.New("the request has no uid: an API server always sets one, and the answer must echo it")
	}
	switch req.Operation {
	case admissionv1.Create, admissionv1.Update, admissionv1.Delete:
	default:
		return nil, nil, fmt.Errorf("operation %q is not one modelguard handles (CREATE, UPDATE, DELETE)", clip(string(req.Operation), 64))
	}
	// Kubernetes names are DNS subdomains (at most 253 bytes), namespaces DNS labels (63):
	// longer ones are refused before any message repeats them.
	if len(req.Name) > 253 || len(req.Namespace) > 63 {
		return nil, nil, fmt.Errorf("the request's name (%d bytes) or namespace (%d bytes) is longer than Kubernetes allows (253, 63)", len(req.Name), len(req.Namespace))
	}
	if size := len(req.Object.Raw) + len(req.OldObject.Raw); size > MaxObjectBytes {
		return nil, nil, &errTooLarge{size: size}
	}
	gk := schema.GroupKind{Group: req.Kind.Group, Kind: req.Kind.Kind}
	if !owned[gk] {
		return nil, nil, fmt.Errorf("modelguard does not handle %s here: the webhook configuration sends it to the wrong handler", clip(gk.String(), 200))
	}
	field, raw := "object", req.Object.Raw
	if req.Operation == admissionv1.Delete {
		field, raw = "oldObject", req.OldObject.Raw
	}
	if len(raw) == 0 {
		return nil, nil, fmt.Errorf("the %s request for %s carries no %s", req.Operation, gk, field)
	}
	o, err := decode.DecodeObject(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s/%s: %w", gk.Kind, req.Namespace, req.Name, err)
	}
	if err := sameObject(req, "", o); err != nil {
		return nil, nil, err
	}
	if req.Operation != admissionv1.Update {
		return o.Obj, nil, nil
	}
	if len(req.OldObject.Raw) == 0 {
		return nil, nil, fmt.Errorf("the UPDATE request for %s %s/%s carries no oldObject", gk.Kind, req.Namespace, req.Name)
	}
	prev, err := decode.DecodeObject(req.OldObject.Raw)
	if err != nil {
		return nil, nil, fmt.Errorf("oldObject of %s %s/%s: %w", gk.Kind, req.Namespace, req.Name, err)
	}
	if err := sameObject(req, "oldObject: ", prev); err != nil {
		return nil, nil, err
	}
	if prev.Obj.GetName() != o.Obj.GetName() || prev.Obj.GetNamespace() != o.Obj.GetNamespace() {
		return nil, nil, fmt.Errorf("oldObject: it is %s/%s but the object is %s/%s", clip(prev.Obj.GetNamespace(), 63), clip(prev.Obj.GetName(), 253),
			clip(o.Obj.GetNamespace(), 63), clip(o.Obj.GetName(), 253))
	}
	return o.Obj, prev.Obj, nil
}

// sameObject checks that a decoded object is the one the request names: the request's group,
// version and kind (the API server sends objects in the version of request.kind), its
// namespace (defaulted from the request, which an API server always sets for namespaced
// kinds; every kind modelguard handles is one but Namespace) and its name (when the request
// has one: a generated name may not be known yet on CREATE).
func sameObject(req admission.Request, what string, o decode.Object) error {
	gvk := o.Obj.GetObjectKind().GroupVersionKind()
	want := schema.GroupVersionKind{Group: req.Kind.Group, Version: req.Kind.Version, Kind: req.Kind.Kind}
	if got := (schema.GroupKind{Group: gvk.Group, Kind: o.Kind}); got != want.GroupKind() {
		return fmt.Errorf("%sthe request is for %s but it carries a %s", what, want.GroupKind(), got)
	}
	// Istio objects decode to their v1 type whatever their version: compare what was written.
	if got := want.GroupVersion().String(); o.APIVersion != got {
		return fmt.Errorf("%sthe request is for %s %s but it carries apiVersion %q", what, got, want.Kind, clip(o.APIVersion, 100))
	}
	if o.Obj.GetNamespace() == "" {
		o.Obj.SetNamespace(req.Namespace)
	}
	if o.Obj.GetNamespace() == "" && want.GroupKind() != (schema.GroupKind{Kind: "Namespace"}) {
		return fmt.Errorf("%sthe request and its %s name no namespace, and %s is namespaced", what, want.Kind, want.Kind)
	}
	if req.Name != "" && o.Obj.GetName() != req.Name {
		return fmt.Errorf("%sthe object's name %q differs from the request's %q", what, clip(o.Obj.GetName(), 253), clip(req.Name, 253))
	}
	if req.Namespace != "" && o.Obj.GetNamespace() != req.Namespace {
		return fmt.Errorf("%sthe object's namespace %q differs from the request's %q", what, clip(o.Obj.GetNamespace(), 63), clip(req.Namespace, 63))
	}
	return nil
}

// sameJudgedFields reports whether two versions of an object agree on everything the engine
// reads: spec, labels, and the modelguard.io/* annotations (and KServe's deployment mode).
func sameJudgedFields(a, b runtime.Object) bool {
	ma, okA := a.(client.Object)
	mb, okB := b.(client.Object)
	if !okA || !okB {
		return false
	}
	if !maps.Equal(ma.GetLabels(), mb.GetLabels()) || !maps.Equal(judgedAnnotations(ma), judgedAnnotations(mb)) {
		return false
	}
	switch ta := a.(type) {
	case *unstructured.Unstructured:
		tb, ok := b.(*unstructured.Unstructured)
		return ok && reflect.DeepEqual(ta.Object["spec"], tb.Object["spec"])
	case *networkingv1.VirtualService:
		tb, ok := b.(*networkingv1.VirtualService)
		return ok && proto.Equal(&ta.Spec, &tb.Spec)
	}
	return false
}

func judgedAnnotations(o client.Object) map[string]string {
	out := map[string]string{}
	for k, v := range o.GetAnnotations() {
		if strings.HasPrefix(k, policy.AnnotationPrefix) || k == policy.AnnotationKServeMode {
			out[k] = v
		}
	}
	return out
}

// jsonOnly refuses an AdmissionReview body that is not a JSON object before controller-
// runtime reads it. controller-runtime's decoder also accepts YAML, and reads a body that
// starts with a byte order mark as YAML: its YAML-to-JSON conversion keeps the last of two
// duplicate keys, so the object the handler received would no longer hold the first one
// (a later "gateways: [mesh]" would hide an earlier external gateway from the strict
// decoder). The API server always sends JSON, without a byte order mark.
func jsonOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r) // controller-runtime answers "request body is empty"
			return
		}
		// A small buffer: reads larger than it go straight to the body (bufio's default 4 KiB
		// per request was a tenth of what an admission allocated).
		br := bufio.NewReaderSize(r.Body, 64)
		// JSON may start with whitespace; skip a bounded amount of it (controller-runtime
		// refuses bodies larger than this anyway).
		for skipped := 0; skipped < maxReviewBytes; skipped++ {
			c, err := br.ReadByte()
			if err != nil {
				break // an empty or unreadable body: controller-runtime answers
			}
			if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
				continue
			}
			_ = br.UnreadByte()
			if c != '{' {
				what := fmt.Sprintf("%q", c)
				if c == 0xef {
					what = "a byte order mark"
				}
				writeReview(w, admission.Errored(http.StatusBadRequest,
					fmt.Errorf("the request body is not a JSON AdmissionReview (it starts with %s): modelguard reads JSON only, as the API server sends it", what)))
				return
			}
			break
		}
		r.Body = struct {
			io.Reader
			io.Closer
		}{br, r.Body}
		next.ServeHTTP(w, r)
	})
}

// maxReviewBytes is controller-runtime's limit on an AdmissionReview body.
const maxReviewBytes = 7 << 20

// writeReview answers with a v1 AdmissionReview holding resp, as controller-runtime does for
// a body it cannot read (there is no uid to echo).
func writeReview(w http.ResponseWriter, resp admission.Response) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Response: &resp.AdmissionResponse,
	})
}
