package webhook

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
