package webhook

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	istiometa "istio.io/api/meta/v1alpha1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The cache transforms keep exactly what the engine reads: workload template labels and
// service account, object labels and the annotations it reads (istio.io/dry-run here); they
// drop the bulk (containers, managed fields, kubectl's last-applied copy).
func TestCacheTransforms(t *testing.T) {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "m-predictor", Namespace: "ml", UID: "u1", ResourceVersion: "7",
			Labels:        map[string]string{"app": "m"},
			Annotations:   map[string]string{lastApplied: `{"huge":"copy"}`},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "m"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "m", "serving.kserve.io/inferenceservice": "m"}},
				Spec:       corev1.PodSpec{ServiceAccountName: "sa", Containers: []corev1.Container{{Name: "kserve-container", Image: "x"}}},
			},
		},
	}
	out, err := stripBulk(d)
	require.NoError(t, err)
	out, err = slimWorkload(out)
	require.NoError(t, err)
	slim := out.(*appsv1.Deployment)
	assert.Equal(t, d.Spec.Template.Labels, slim.Spec.Template.Labels)
	assert.Equal(t, "sa", slim.Spec.Template.Spec.ServiceAccountName)
	assert.Equal(t, d.Spec.Selector, slim.Spec.Selector)
	assert.Equal(t, "7", slim.ResourceVersion)
	assert.Empty(t, slim.Spec.Template.Spec.Containers)
	assert.Empty(t, slim.ManagedFields)
	assert.NotContains(t, slim.Annotations, lastApplied)

	ap := &securityv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: "deny", Namespace: "ml",
		Annotations:   map[string]string{"istio.io/dry-run": "true", lastApplied: "{}"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}}}
	got, err := stripBulk(ap)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"istio.io/dry-run": "true"}, got.(*securityv1.AuthorizationPolicy).Annotations)
	assert.Empty(t, got.(*securityv1.AuthorizationPolicy).ManagedFields)
}

// Every watched kind but Namespace loses its status in the cache, under the transform
// CacheOptions gives it: the engine reads none of them, and KServe's and Seldon's statuses
// are often most of the object. A Namespace keeps its phase, which says whether it is
// terminating.
func TestCacheTransformDropsUnreadStatus(t *testing.T) {
	opts := CacheOptions(nil)
	for _, obj := range WatchedKinds() {
		name := fmt.Sprintf("%T", obj)
		if u, ok := obj.(*unstructured.Unstructured); ok {
			name = u.GetKind()
		}
		t.Run(name, func(t *testing.T) {
			giveStatus(t, obj)
			transform := opts.DefaultTransform
			for o, by := range opts.ByObject {
				if reflect.TypeOf(o) == reflect.TypeOf(obj) && by.Transform != nil {
					transform = by.Transform
				}
			}
			out, err := transform(obj)
			require.NoError(t, err)
			switch o := out.(type) {
			case *corev1.Namespace:
				assert.Equal(t, corev1.NamespaceTerminating, o.Status.Phase)
			case *unstructured.Unstructured:
				assert.NotContains(t, o.Object, "status")
				assert.Contains(t, o.Object, "spec")
			default:
				status := reflect.ValueOf(out).Elem().FieldByName("Status")
				require.True(t, status.IsValid(), "%T has no status field", out)
				assert.True(t, isEmptyStatus(status), "the cache keeps the status of %s: %v", name, status.Interface())
			}
		})
	}
}

// giveStatus sets a status as the kind's controller writes it.
func giveStatus(t *testing.T, obj client.Object) {
	t.Helper()
	switch o := obj.(type) {
	case *unstructured.Unstructured:
		o.Object["spec"] = map[string]any{"predictor": map[string]any{"model": map[string]any{}}}
		o.Object["status"] = map[string]any{"url": "http://m.ml.example.com", "conditions": []any{map[string]any{"type": "Ready"}}}
	case *corev1.Namespace:
		o.Status.Phase = corev1.NamespaceTerminating
	case *corev1.Service:
		o.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.7"}}
	case *corev1.Pod:
		o.Status.Phase, o.Status.PodIP = corev1.PodRunning, "10.0.0.7"
	case *appsv1.Deployment:
		o.Status.Replicas = 3
	case *appsv1.StatefulSet:
		o.Status.Replicas = 3
	case *appsv1.DaemonSet:
		o.Status.NumberReady = 3
	default:
		v := reflect.ValueOf(obj).Elem().FieldByName("Status")
		st, ok := v.Addr().Interface().(*istiometa.IstioStatus)
		require.True(t, ok, "no status to give a %T", obj)
		st.ObservedGeneration = 3
		st.Conditions = []*istiometa.IstioCondition{{Type: "Reconciled", Status: "True"}}
	}
}

func isEmptyStatus(v reflect.Value) bool {
	if m, ok := v.Addr().Interface().(proto.Message); ok {
		return proto.Size(m) == 0
	}
	return v.IsZero()
}
