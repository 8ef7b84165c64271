package policy

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group/version/kinds of the objects the engine judges.
var (
	GVKInferenceService = schema.GroupVersionKind{Group: "serving.kserve.io", Version: "v1beta1", Kind: "InferenceService"}
	GVKModel            = schema.GroupVersionKind{Group: "mlops.seldon.io", Version: "v1alpha1", Kind: "Model"}
)

// KServe labels and annotations the engine reads.
const (
	LabelKServeVisibility   = "networking.kserve.io/visibility"
	LabelKnativeVisibility  = "networking.knative.dev/visibility"
	LabelKServeISVC         = "serving.kserve.io/inferenceservice"
	AnnotationKServeMode    = "serving.kserve.io/deploymentMode"
	visibilityClusterLocal  = "cluster-local"
	kserveModeServerless    = "Serverless"
	kserveModeRaw           = "RawDeployment"
	kserveModeStandard      = "Standard"
	seldonModelHeader       = "seldon-model"
	grpcInferenceServiceAPI = "/inference.GRPCInferenceService/"
)

// InferenceService gives typed access to the fields of a KServe InferenceService the engine
// reads. KServe has no Go module here, so the object stays unstructured.
type InferenceService struct{ U *unstructured.Unstructured }

// Name and Namespace of the InferenceService.
func (s InferenceService) Name() string      { return s.U.GetName() }
func (s InferenceService) Namespace() string { return s.U.GetNamespace() }

// DeploymentMode is Serverless unless the annotation says RawDeployment or Standard.
func (s InferenceService) DeploymentMode() string {
	switch m := s.U.GetAnnotations()[AnnotationKServeMode]; m {
	case kserveModeRaw, kserveModeStandard:
		return m
	}
	return kserveModeServerless
}

// ClusterLocal reports whether KServe keeps the service off the external gateway.
func (s InferenceService) ClusterLocal() bool {
	l := s.U.GetLabels()
	if l[LabelKServeVisibility] == visibilityClusterLocal {
		return true
	}
	return s.DeploymentMode() == kserveModeServerless && l[LabelKnativeVisibility] == visibilityClusterLocal
}

// HasTransformer reports whether spec.transformer is set: KServe then routes to it first.
// Validate has checked its type.
func (s InferenceService) HasTransformer() bool {
	t, found, _ := unstructured.NestedFieldNoCopy(s.U.Object, "spec", "transformer")
	return found && t != nil
}

// Validate checks that the fields the engine reads have the types KServe's API gives them, so
// that a malformed object is refused with a clear error rather than judged on a guess.
func (s InferenceService) Validate() error {
	spec, err := objectField(s.U.Object, "spec")
	if err != nil {
		return err
	}
	if spec == nil {
		return fmt.Errorf("spec: required (an InferenceService needs spec.predictor)")
	}
	if p, err := objectField(spec, "predictor"); err != nil {
		return fmt.Errorf("spec.%w", err)
	} else if p == nil {
		return fmt.Errorf("spec.predictor: required")
	}
	if _, err := objectField(spec, "transformer"); err != nil {
		return fmt.Errorf("spec.%w", err)
	}
	return nil
}

// objectField returns m[key] when it is an object, nil when absent or null.
func objectField(m map[string]any, key string) (map[string]any, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return nil, nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: must be an object, not %s", key, jsonType(v))
	}
	return obj, nil
}

func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int64, float64, int:
		return "a number"
	case []any:
		return "a list"
	}
	return fmt.Sprintf("%T", v)
}

// ServiceNames are the Services KServe creates for an InferenceService; a route to any of
// them reaches the model.
func (s InferenceService) ServiceNames() []string {
	n := s.Name()
	return []string{n, n + "-predictor", n + "-predictor-default", n + "-transformer"}
}

// WorkloadLabels are labels every predictor pod of the InferenceService carries.
func (s InferenceService) WorkloadLabels() map[string]string {
	l := map[string]string{LabelKServeISVC: s.Name(), "component": "predictor"}
	if m := s.DeploymentMode(); m == kserveModeRaw || m == kserveModeStandard {
		l["app"] = "isvc." + s.Name() + "-predictor"
	}
	return l
}

// SeldonModel gives typed access to a Seldon Core v2 Model.
type SeldonModel struct{ U *unstructured.Unstructured }

// Name and Namespace of the Model.
func (m SeldonModel) Name() string      { return m.U.GetName() }
func (m SeldonModel) Namespace() string { return m.U.GetNamespace() }

// Validate checks that the Model has the shape Seldon's API gives it.
func (m SeldonModel) Validate() error {
	spec, err := objectField(m.U.Object, "spec")
	if err != nil {
		return err
	}
	if spec == nil {
		return fmt.Errorf("spec: required (a Model needs spec.storageUri)")
	}
	if v, ok := spec["storageUri"]; ok {
		if _, isStr := v.(string); !isStr {
			return fmt.Errorf("spec.storageUri: must be a string, not %s", jsonType(v))
		}
	}
	return nil
}

// ValidateObject checks the fields of a Model or InferenceService the engine reads; other
// objects are typed by their decoder and need no check here.
func ValidateObject(obj runtime.Object) error {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil
	}
	var err error
	switch u.GroupVersionKind() {
	case GVKInferenceService:
		err = InferenceService{U: u}.Validate()
	case GVKModel:
		err = SeldonModel{U: u}.Validate()
	default:
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	return nil
}

// objectRef names an object in findings and routes.
func objectRef(kind, ns, name string) string { return kind + " " + ns + "/" + name }
