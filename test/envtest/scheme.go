package testenv

import (
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

// Seldon and KServe publish no Go types in modules modelguard depends on: their objects are
// read and written as unstructured.Unstructured with these kinds (the client finds their
// resources through discovery, so they need no scheme entry).
var (
	ModelGVK            = schema.GroupVersionKind{Group: "mlops.seldon.io", Version: "v1alpha1", Kind: "Model"}
	InferenceServiceGVK = schema.GroupVersionKind{Group: "serving.kserve.io", Version: "v1beta1", Kind: "InferenceService"}
)

// NewScheme returns the scheme of Env.Client: every built-in kind client-go knows (core, apps,
// admissionregistration, ...), CustomResourceDefinition, and Istio's networking and security
// v1 kinds. Objects applied as v1beta1 read back fine as v1: Istio serves both versions from
// one schema.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme,
		apiextensionsv1.AddToScheme,
		networkingv1.AddToScheme,
		securityv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// NewUnstructured returns an empty object of the given kind, namespace and name, ready for
// Client.Get or, once its content is filled in, Client.Create.
func NewUnstructured(gvk schema.GroupVersionKind, namespace, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	u.SetNamespace(namespace)
	u.SetName(name)
	return u
}
