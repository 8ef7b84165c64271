package fleet

import (
	"encoding/json"
	"fmt"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CreateReview is the AdmissionReview kube-apiserver sends a validating webhook for a
// `kubectl create` of obj: the object as the API server holds it then (Admitted, with k
// numbering its uid), the create options, the requested kind and resource. (`kubectl apply`
// would also add its last-applied-configuration annotation, a copy of the object.)
func CreateReview(obj client.Object, uid types.UID, k int) ([]byte, error) {
	admitted, err := Admitted(obj, k)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(admitted)
	if err != nil {
		return nil, err
	}
	gvk := obj.GetObjectKind().GroupVersionKind()
	kind := metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind}
	resource := metav1.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: resourceOf(gvk.Kind)}
	dryRun := false
	return json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: uid, Kind: kind, Resource: resource, RequestKind: &kind, RequestResource: &resource,
			Namespace: obj.GetNamespace(), Name: obj.GetName(), Operation: admissionv1.Create,
			UserInfo: authenticationv1.UserInfo{Username: "bench", UID: "5d0e8d6c-0000-4000-8000-000000000001", Groups: []string{"system:masters", "system:authenticated"}},
			Object:   runtime.RawExtension{Raw: raw}, DryRun: &dryRun,
			Options: runtime.RawExtension{Raw: []byte(`{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1","fieldManager":"` + CreateManager + `","fieldValidation":"Strict"}`)},
		},
	})
}

func resourceOf(kind string) string {
	return map[string]string{"InferenceService": "inferenceservices", "Model": "models", "VirtualService": "virtualservices"}[kind]
}

// CreateManager is the field manager of `kubectl create`, which Admitted names.
const CreateManager = "kubectl-create"

// Admitted returns obj as kube-apiserver hands it to a validating webhook on CREATE: with the
// uid, creation time and generation it assigns, and the managedFields entry its field manager
// records for the fields the request set. Synthetic AdmissionReviews built from it weigh
// what real ones do, and carry what the webhook must read past.
func Admitted(obj client.Object, k int) (client.Object, error) {
	out, ok := obj.DeepCopyObject().(client.Object)
	if !ok {
		return nil, fmt.Errorf("%T is not a client.Object", obj)
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var fields map[string]any
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, err
	}
	delete(fields, "apiVersion")
	delete(fields, "kind")
	delete(fields, "status")
	if meta, ok := fields["metadata"].(map[string]any); ok {
		// The field manager tracks what the user set, not the identity fields.
		delete(meta, "name")
		delete(meta, "namespace")
		delete(meta, "creationTimestamp")
		if len(meta) == 0 {
			delete(fields, "metadata")
		}
	}
	set, err := json.Marshal(fieldSet(fields))
	if err != nil {
		return nil, err
	}
	created := metav1.NewTime(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))
	out.SetUID(types.UID(fmt.Sprintf("6f1c2d3e-0000-4000-8000-%012d", k)))
	out.SetCreationTimestamp(created)
	out.SetGeneration(1)
	out.SetManagedFields([]metav1.ManagedFieldsEntry{{
		Manager: CreateManager, Operation: metav1.ManagedFieldsOperationUpdate,
		APIVersion: obj.GetObjectKind().GroupVersionKind().GroupVersion().String(), Time: &created,
		FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(string(set)),
	}})
	return out, nil
}

// fieldSet is the FieldsV1 form of the fields set in v: every map key becomes "f:<key>",
// a map also lists itself ("."), and lists and scalars are leaves (lists without a
// list-type in the CRD schema are atomic).
func fieldSet(v map[string]any) map[string]any {
	out := map[string]any{}
	for k, x := range v {
		if m, ok := x.(map[string]any); ok && len(m) > 0 {
			sub := fieldSet(m)
			sub["."] = map[string]any{}
			out["f:"+k] = sub
			continue
		}
		out["f:"+k] = map[string]any{}
	}
	return out
}
