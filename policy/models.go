package policy

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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
func (s InferenceService) HasTransformer() (bool, error) {
	t, found, err := unstructured.NestedFieldNoCopy(s.U.Object, "spec", "transformer")
	if err != nil {
		return false, fmt.Errorf("inferenceService %s/%s: spec.transformer: %w", s.Namespace(), s.Name(), err)
	}
	if !found || t == nil {
		return false, nil
	}
	if _, ok := t.(map[string]any); !ok {
		return false, fmt.Errorf("inferenceService %s/%s: spec.transformer must be an object, not %T", s.Namespace(), s.Name(), t)
	}
	return true, nil
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

// Validate checks the fields the engine relies on have the types Seldon's API gives them.
func (m SeldonModel) Validate() error {
	if _, _, err := unstructured.NestedString(m.U.Object, "spec", "storageUri"); err != nil {
		return fmt.Errorf("model %s/%s: spec.storageUri: %w", m.Namespace(), m.Name(), err)
	}
	return nil
}

// objectRef names an object in findings and routes.
func objectRef(kind, ns, name string) string { return kind + " " + ns + "/" + name }
