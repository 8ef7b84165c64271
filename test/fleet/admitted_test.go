package fleet_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/modelguard/modelguard/test/fleet"
)

// A synthetic review carries what kube-apiserver's does: the identity it assigned and the
// managedFields entry of the fields the request set (maps listed with ".", lists as leaves).
func TestCreateReview(t *testing.T) {
	vs := fleet.ModelVirtualService(fleet.Namespace(3))
	body, err := fleet.CreateReview(vs, "u-1", 7)
	require.NoError(t, err)
	var review admissionv1.AdmissionReview
	require.NoError(t, json.Unmarshal(body, &review))
	r := review.Request
	require.Equal(t, "u-1", string(r.UID))
	assert.Equal(t, admissionv1.Create, r.Operation)
	assert.Equal(t, "virtualservices", r.Resource.Resource)
	assert.Equal(t, r.Kind, *r.RequestKind)
	assert.Contains(t, string(r.Options.Raw), `"fieldManager":"kubectl-create"`)

	var obj struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	require.NoError(t, json.Unmarshal(r.Object.Raw, &obj))
	assert.Equal(t, vs.Name, obj.Metadata.Name)
	assert.Equal(t, "6f1c2d3e-0000-4000-8000-000000000007", string(obj.Metadata.UID))
	assert.Equal(t, int64(1), obj.Metadata.Generation)
	mf := obj.Metadata.ManagedFields
	require.Len(t, mf, 1)
	assert.Equal(t, fleet.CreateManager, mf[0].Manager)
	assert.Equal(t, "networking.istio.io/v1", mf[0].APIVersion)
	var set map[string]any
	require.NoError(t, json.Unmarshal(mf[0].FieldsV1.GetRawBytes(), &set))
	spec := set["f:spec"].(map[string]any)
	assert.Contains(t, spec, ".")
	assert.Equal(t, map[string]any{}, spec["f:hosts"], "a list is a leaf")
	assert.NotContains(t, set, "f:metadata", "identity fields are not the manager's, and the VirtualService sets no other")
}
