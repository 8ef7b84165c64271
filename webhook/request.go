package webhook

import (
	"fmt"
	"maps"
	"reflect"
	"strings"

	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
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
	if size := len(req.Object.Raw) + len(req.OldObject.Raw); size > MaxObjectBytes {
		return nil, &errTooLarge{size: size}
	}
	gk := schema.GroupKind{Group: req.Kind.Group, Kind: req.Kind.Kind}
	if !owned[gk] {
		return nil, fmt.Errorf("modelguard does not handle %s here: the webhook configuration sends it to the wrong handler", gk)
	}
	raw := req.Object.Raw
	if req.Operation == "DELETE" {
		raw = req.OldObject.Raw
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("the %s request for %s carries no object", req.Operation, gk)
	}
	o, err := decode.DecodeObject(raw)
	if err != nil {
		return nil, fmt.Errorf("%s %s/%s: %w", gk.Kind, req.Namespace, req.Name, err)
	}
	if got := (schema.GroupKind{Group: o.Obj.GetObjectKind().GroupVersionKind().Group, Kind: o.Kind}); got != gk {
		return nil, fmt.Errorf("the request is for %s but it carries a %s", gk, got)
	}
	if o.Obj.GetNamespace() == "" {
		o.Obj.SetNamespace(req.Namespace)
	}
	if req.Name != "" && o.Obj.GetName() != req.Name {
		return nil, fmt.Errorf("the object's name %q differs from the request's %q", o.Obj.GetName(), req.Name)
	}
	if req.Namespace != "" && o.Obj.GetNamespace() != req.Namespace {
		return nil, fmt.Errorf("the object's namespace %q differs from the request's %q", o.Obj.GetNamespace(), req.Namespace)
	}
	return o.Obj, nil
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
