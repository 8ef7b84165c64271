package decode

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"

	yaml "go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	sigsjson "sigs.k8s.io/json"
)

// kindKey identifies an entry of the kind table by apiVersion and kind as
// written in the input.
type kindKey struct{ apiVersion, kind string }

// kindInfo says how to decode one apiVersion/kind.
type kindInfo struct {
	// gvk is set on the decoded object's TypeMeta. For Istio kinds it is
	// always the v1 version whatever version the input used: the spec
	// messages are shared by all versions, so decoding is the conversion.
	gvk    schema.GroupVersionKind
	decode func(w *walker, doc *docNodes, ki *kindInfo) (client.Object, *Error)
	// Exactly one of these is set, depending on the family.
	newTyped func() client.Object
	newIstio func() (client.Object, *metav1.ObjectMeta, proto.Message)
}

var kindTable = map[kindKey]*kindInfo{}

func init() {
	istio := func(group string, versions []string, kind string, fn func() (client.Object, *metav1.ObjectMeta, proto.Message)) {
		ki := &kindInfo{gvk: schema.GroupVersionKind{Group: group, Version: "v1", Kind: kind}, decode: decodeIstio, newIstio: fn}
		for _, v := range versions {
			kindTable[kindKey{group + "/" + v, kind}] = ki
		}
	}
	sec := []string{"v1", "v1beta1"}
	istio("security.istio.io", sec, "AuthorizationPolicy", func() (client.Object, *metav1.ObjectMeta, proto.Message) {
		o := &securityv1.AuthorizationPolicy{}
		return o, &o.ObjectMeta, &o.Spec
	})
	istio("security.istio.io", sec, "RequestAuthentication", func() (client.Object, *metav1.ObjectMeta, proto.Message) {
		o := &securityv1.RequestAuthentication{}
		return o, &o.ObjectMeta, &o.Spec
	})
	istio("security.istio.io", sec, "PeerAuthentication", func() (client.Object, *metav1.ObjectMeta, proto.Message) {
		o := &securityv1.PeerAuthentication{}
		return o, &o.ObjectMeta, &o.Spec
	})
	// networking v1beta1 and v1alpha3 wrap the same istio.io/api
	// networking/v1alpha3 messages as v1 (v1 declares type aliases).
	netv := []string{"v1", "v1beta1", "v1alpha3"}
	istio("networking.istio.io", netv, "VirtualService", func() (client.Object, *metav1.ObjectMeta, proto.Message) {
		o := &networkingv1.VirtualService{}
		return o, &o.ObjectMeta, &o.Spec
	})
	istio("networking.istio.io", netv, "Gateway", func() (client.Object, *metav1.ObjectMeta, proto.Message) {
		o := &networkingv1.Gateway{}
		return o, &o.ObjectMeta, &o.Spec
	})
	istio("networking.istio.io", netv, "DestinationRule", func() (client.Object, *metav1.ObjectMeta, proto.Message) {
		o := &networkingv1.DestinationRule{}
		return o, &o.ObjectMeta, &o.Spec
	})

	typed := func(apiVersion, kind string, fn func() client.Object) {
		gv, _ := schema.ParseGroupVersion(apiVersion)
		kindTable[kindKey{apiVersion, kind}] = &kindInfo{gvk: gv.WithKind(kind), decode: decodeTyped, newTyped: fn}
	}
	typed("v1", "Pod", func() client.Object { return &corev1.Pod{} })
	typed("v1", "Service", func() client.Object { return &corev1.Service{} })
	typed("v1", "Namespace", func() client.Object { return &corev1.Namespace{} })
	typed("apps/v1", "Deployment", func() client.Object { return &appsv1.Deployment{} })
	typed("apps/v1", "StatefulSet", func() client.Object { return &appsv1.StatefulSet{} })
	typed("apps/v1", "DaemonSet", func() client.Object { return &appsv1.DaemonSet{} })

	// No Go module exists for these CRDs: they decode to Unstructured with
	// strict metadata and a mapping spec.
	for _, k := range []kindKey{{"mlops.seldon.io/v1alpha1", "Model"}, {"serving.kserve.io/v1beta1", "InferenceService"}} {
		gv, _ := schema.ParseGroupVersion(k.apiVersion)
		kindTable[k] = &kindInfo{gvk: gv.WithKind(k.kind), decode: decodeUnstructured}
	}
}

var (
	objectMetaType = goTypeOf(reflect.TypeFor[metav1.ObjectMeta]())
	listMetaType   = goTypeOf(reflect.TypeFor[metav1.ListMeta]())
)

// decodeTyped decodes a Kubernetes built-in kind with sigs.k8s.io/json's
// strict decoder after the walker has checked it. status is dropped.
func decodeTyped(w *walker, doc *docNodes, ki *kindInfo) (client.Object, *Error) {
	obj := ki.newTyped()
	gt := goTypeOf(reflect.TypeOf(obj).Elem())
	if err := w.walkTop(doc.metadata, "metadata", objectMetaType); err != nil {
		return nil, err
	}
	if err := w.walkTop(doc.spec, "spec", gt.fields["spec"]); err != nil {
		return nil, err
	}
	b := make([]byte, 0, 1024)
	b = append(b, '{')
	if doc.metadata != nil {
		b = append(b, `"metadata":`...)
		b = appendJSON(b, doc.metadata)
	}
	if doc.spec != nil {
		if doc.metadata != nil {
			b = append(b, ',')
		}
		b = append(b, `"spec":`...)
		b = appendJSON(b, doc.spec)
	}
	b = append(b, '}')
	if err := w.strictDecode(b, obj, doc.root); err != nil {
		return nil, err
	}
	obj.GetObjectKind().SetGroupVersionKind(ki.gvk)
	return obj, w.requireName(doc, obj.GetName(), obj.GetGenerateName())
}

// decodeIstio decodes metadata strictly and the spec with protojson after
// the descriptor walk.
func decodeIstio(w *walker, doc *docNodes, ki *kindInfo) (client.Object, *Error) {
	obj, meta, spec := ki.newIstio()
	if err := w.decodeMeta(doc, meta); err != nil {
		return nil, err
	}
	if doc.spec != nil && !isNull(doc.spec) {
		if err := w.walkTopMessage(doc.spec, spec); err != nil {
			return nil, err
		}
		if err := (protojson.UnmarshalOptions{}).Unmarshal(appendJSON(nil, doc.spec), spec); err != nil {
			backstopHits.Add(1)
			return nil, &Error{File: w.file, Line: doc.spec.Line, Path: w.sub("spec"), Msg: cleanProtoErr(err), Err: err}
		}
	}
	obj.GetObjectKind().SetGroupVersionKind(ki.gvk)
	return obj, nil
}

// decodeUnstructured builds an Unstructured for CRDs without Go types.
func decodeUnstructured(w *walker, doc *docNodes, ki *kindInfo) (client.Object, *Error) {
	var meta metav1.ObjectMeta
	if err := w.decodeMeta(doc, &meta); err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": doc.apiVersionValue,
		"kind":       doc.kindValue,
	}}
	for _, f := range []struct {
		name string
		n    *yaml.Node
	}{{"metadata", doc.metadata}, {"spec", doc.spec}} {
		if f.n == nil || isNull(f.n) {
			continue
		}
		w.path.pushKey(f.name)
		if f.n.Kind != yaml.MappingNode {
			return nil, w.fail(f.n, "expected a mapping, got %s", describe(f.n))
		}
		v, err := w.toGeneric(f.n)
		if err != nil {
			return nil, err
		}
		w.path.pop()
		u.Object[f.name] = v
	}
	return u, nil
}

// decodeMeta checks and decodes metadata into meta and requires a name.
func (w *walker) decodeMeta(doc *docNodes, meta *metav1.ObjectMeta) *Error {
	if err := w.walkTop(doc.metadata, "metadata", objectMetaType); err != nil {
		return err
	}
	if doc.metadata != nil && !isNull(doc.metadata) {
		w.path.pushKey("metadata")
		err := w.strictDecode(appendJSON(nil, doc.metadata), meta, doc.metadata)
		w.path.pop()
		if err != nil {
			return err
		}
	}
	return w.requireName(doc, meta.Name, meta.GenerateName)
}

func (w *walker) requireName(doc *docNodes, name, generateName string) *Error {
	if name != "" || (w.generateName && generateName != "") {
		return nil
	}
	at := doc.root
	if doc.metadataKey != nil {
		at = doc.metadataKey
		if k, _ := lookupKey(doc.metadata, "name"); k != nil {
			at = k
		}
	}
	return &Error{File: w.file, Line: at.Line, Path: w.sub("metadata.name"), Msg: "a name is required"}
}

// walkTop walks a top-level section (metadata, spec) against gt, if set.
func (w *walker) walkTop(n *yaml.Node, name string, gt *goType) *Error {
	if n == nil {
		return nil
	}
	w.path.pushKey(name)
	if err := w.walkGo(n, gt); err != nil {
		return err
	}
	w.path.pop()
	return nil
}

func (w *walker) walkTopMessage(n *yaml.Node, m proto.Message) *Error {
	w.path.pushKey("spec")
	if err := w.walkMessage(n, m.ProtoReflect().Descriptor()); err != nil {
		return err
	}
	w.path.pop()
	return nil
}

// sub renders the current path extended by a relative one.
func (w *walker) sub(rel string) string {
	if p := w.path.String(); p != "" {
		return p + "." + rel
	}
	return rel
}

// backstopHits counts errors found by the final decoders but missed by the
// walkers; tests assert it stays zero, since such errors are less precise.
var backstopHits atomic.Int64

// strictDecode runs sigs.k8s.io/json's strict decoder. The walker should
// have caught every problem already; if not, the error is still reported,
// located through its field path where there is one.
func (w *walker) strictDecode(b []byte, v any, root *yaml.Node) *Error {
	strictErrs, err := sigsjson.UnmarshalStrict(b, v)
	if err == nil && len(strictErrs) == 0 {
		return nil
	}
	if err == nil {
		err = strictErrs[0]
	}
	backstopHits.Add(1)
	e := &Error{File: w.file, Line: root.Line, Path: w.path.String(), Msg: err.Error(), Err: err}
	var fe sigsjson.FieldError
	if errors.As(err, &fe) && fe.FieldPath() != "" {
		e.Line = findNode(root, fe.FieldPath()).Line
		e.Path = w.sub(fe.FieldPath())
	}
	return e
}

// nearMiss explains why a document that is not in the kind table looks like one that is: a
// kind modelguard reads, written with another case or an unserved version. Such a document is
// a mistake, not an unrelated object: skipping it would drop a policy from the mesh state.
func nearMiss(apiVersion, kind string) string {
	group, _, _ := strings.Cut(apiVersion, "/")
	if !strings.Contains(apiVersion, "/") {
		group = ""
	}
	var versions []string
	for k := range kindTable {
		kGroup, _, _ := strings.Cut(k.apiVersion, "/")
		if !strings.Contains(k.apiVersion, "/") {
			kGroup = ""
		}
		if kGroup != group || !strings.EqualFold(k.kind, kind) {
			continue
		}
		if k.apiVersion == apiVersion {
			return fmt.Sprintf("kind %q is not known: did you mean %q?", kind, k.kind)
		}
		if k.kind == kind {
			versions = append(versions, k.apiVersion)
		}
	}
	if len(versions) == 0 {
		return ""
	}
	slices.Sort(versions)
	return fmt.Sprintf("%s is not served for kind %s: use one of %s", apiVersion, kind, strings.Join(versions, ", "))
}
