package webhook

import (
	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// NewScheme knows every typed object modelguard reads (Models and InferenceServices are
// unstructured).
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, securityv1.AddToScheme, networkingv1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// CacheOptions keep the informer caches small: of every object no managed fields, no
// kubectl last-applied-configuration annotation (a second copy of the object on everything
// applied with kubectl) and no status the engine does not read (see dropStatus); of Pods and workloads only what the engine reads (labels, pod template
// labels, service account), since a cluster has many of them. With health, every informer's
// watch is tracked (see WatchHealth).
func CacheOptions(health *WatchHealth) cache.Options {
	opts := cache.Options{
		DefaultTransform: stripBulk,
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}:         {Transform: slimPod},
			&appsv1.Deployment{}:  {Transform: slimWorkload},
			&appsv1.StatefulSet{}: {Transform: slimWorkload},
			&appsv1.DaemonSet{}:   {Transform: slimWorkload},
		},
	}
	if health != nil {
		opts.NewInformer = health.newInformer
	}
	return opts
}

// lastApplied is kubectl's copy of the applied object; the engine never reads it.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// stripBulk drops managed fields, kubectl's last-applied copy and the status no verdict
// reads, in place (the informer owns the object it transforms).
func stripBulk(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
		if a := m.GetAnnotations(); a[lastApplied] != "" {
			delete(a, lastApplied)
			m.SetAnnotations(a)
		}
	}
	dropStatus(obj)
	return obj, nil
}

// dropStatus empties the status of the kinds whose status the engine never reads: istiod's
// validation messages on Istio objects, KServe's and Seldon's component states and
// conditions (often the larger part of those objects), a Service's load-balancer ingress.
// A Namespace keeps its status: its phase says whether it is terminating. The reconciler's
// updates of its generated policies go to the main resource, where the API server ignores
// the status.
func dropStatus(obj any) {
	switch o := obj.(type) {
	case *unstructured.Unstructured:
		delete(o.Object, "status")
	case *securityv1.AuthorizationPolicy:
		proto.Reset(&o.Status)
	case *securityv1.RequestAuthentication:
		proto.Reset(&o.Status)
	case *securityv1.PeerAuthentication:
		proto.Reset(&o.Status)
	case *networkingv1.VirtualService:
		proto.Reset(&o.Status)
	case *networkingv1.Gateway:
		proto.Reset(&o.Status)
	case *networkingv1.DestinationRule:
		proto.Reset(&o.Status)
	case *corev1.Service:
		o.Status = corev1.ServiceStatus{}
	}
}

// slimMeta keeps what identifies an object and what the engine reads of its metadata.
func slimMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		Labels: m.Labels, DeletionTimestamp: m.DeletionTimestamp}
}

func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	return &corev1.Pod{
		TypeMeta:   p.TypeMeta,
		ObjectMeta: slimMeta(p.ObjectMeta),
		Spec:       corev1.PodSpec{ServiceAccountName: p.Spec.ServiceAccountName},
	}, nil
}

// slimTemplate keeps of a pod template the labels and service account the engine matches
// policies against.
func slimTemplate(t corev1.PodTemplateSpec) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: t.Labels},
		Spec: corev1.PodSpec{ServiceAccountName: t.Spec.ServiceAccountName}}
}

func slimWorkload(obj any) (any, error) {
	switch w := obj.(type) {
	case *appsv1.Deployment:
		return &appsv1.Deployment{TypeMeta: w.TypeMeta, ObjectMeta: slimMeta(w.ObjectMeta),
			Spec: appsv1.DeploymentSpec{Selector: w.Spec.Selector, Template: slimTemplate(w.Spec.Template)}}, nil
	case *appsv1.StatefulSet:
		return &appsv1.StatefulSet{TypeMeta: w.TypeMeta, ObjectMeta: slimMeta(w.ObjectMeta),
			Spec: appsv1.StatefulSetSpec{Selector: w.Spec.Selector, Template: slimTemplate(w.Spec.Template)}}, nil
	case *appsv1.DaemonSet:
		return &appsv1.DaemonSet{TypeMeta: w.TypeMeta, ObjectMeta: slimMeta(w.ObjectMeta),
			Spec: appsv1.DaemonSetSpec{Selector: w.Spec.Selector, Template: slimTemplate(w.Spec.Template)}}, nil
	}
	return obj, nil
}
