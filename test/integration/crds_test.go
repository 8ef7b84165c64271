package integration_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	testenv "github.com/modelguard/modelguard/test/envtest"
)

// TestCRDsRejectMalformed checks that test/crds/ validates like the real CRDs: objects that
// Seldon's or KServe's API server would refuse are refused here too, so a later webhook test
// cannot pass on an object no real cluster would store.
func TestCRDsRejectMalformed(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})

	// Controls first: well-formed objects are accepted, so each rejection below is the
	// schema's doing and not, say, a missing namespace.
	t.Run("valid model", func(t *testing.T) {
		require.NoError(t, create(t, env.Client, testenv.ModelGVK, "valid", map[string]any{
			"storageUri": "gs://seldon-models/iris", "requirements": []any{"sklearn"},
			"memory": "100Ki", "replicas": int64(2), "server": "mlserver",
			"explainer":  map[string]any{"type": "anchor_tabular", "modelRef": "iris"},
			"parameters": []any{map[string]any{"name": "k", "value": "v"}},
		}))
	})
	t.Run("valid inference service", func(t *testing.T) {
		require.NoError(t, create(t, env.Client, testenv.InferenceServiceGVK, "valid", map[string]any{
			"predictor": map[string]any{"sklearn": map[string]any{"storageUri": "gs://models/sklearn"}},
		}))
	})

	cases := []struct {
		name   string
		gvk    schema.GroupVersionKind
		spec   map[string]any
		opts   []client.CreateOption
		isKind func(error) bool
		field  string // the error must name it
	}{
		{name: "model without storageUri", gvk: testenv.ModelGVK,
			spec:   map[string]any{"requirements": []any{"sklearn"}},
			isKind: apierrors.IsInvalid, field: "spec.storageUri"},
		{name: "model with numeric storageUri", gvk: testenv.ModelGVK,
			spec:   map[string]any{"storageUri": int64(5)},
			isKind: apierrors.IsInvalid, field: "spec.storageUri"},
		{name: "model with string replicas", gvk: testenv.ModelGVK,
			spec:   map[string]any{"storageUri": "gs://m", "replicas": "two"},
			isKind: apierrors.IsInvalid, field: "spec.replicas"},
		{name: "model with malformed memory", gvk: testenv.ModelGVK,
			spec:   map[string]any{"storageUri": "gs://m", "memory": "lots"},
			isKind: apierrors.IsInvalid, field: "spec.memory"},
		// Seldon's schema is closed: a misspelt field is refused under strict field validation
		// (kubectl's default) instead of being stored.
		{name: "model with misspelt field, strict", gvk: testenv.ModelGVK,
			spec:   map[string]any{"storageUri": "gs://m", "storageURI": "gs://n"},
			opts:   []client.CreateOption{client.FieldValidation("Strict")},
			isKind: apierrors.IsBadRequest, field: "spec.storageURI"},
		{name: "inference service without predictor", gvk: testenv.InferenceServiceGVK,
			spec:   map[string]any{"transformer": map[string]any{}},
			isKind: apierrors.IsInvalid, field: "spec.predictor"},
		{name: "inference service model without modelFormat", gvk: testenv.InferenceServiceGVK,
			spec:   map[string]any{"predictor": map[string]any{"model": map[string]any{"storageUri": "gs://m"}}},
			isKind: apierrors.IsInvalid, field: "spec.predictor.model.modelFormat"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := create(t, env.Client, tc.gvk, fmt.Sprintf("malformed-%d", i), tc.spec, tc.opts...)
			require.Error(t, err, "the API server stored it")
			assert.True(t, tc.isKind(err), "unexpected kind of error: %v", err)
			assert.Contains(t, err.Error(), tc.field)
		})
	}

	// What a user sees: kubectl reports the schema error and stores nothing.
	t.Run("kubectl apply of numeric storageUri", func(t *testing.T) {
		_, stderr, err := env.TryApply(t, strings.Join([]string{
			"apiVersion: mlops.seldon.io/v1alpha1",
			"kind: Model",
			"metadata: {name: numeric-uri, namespace: default}",
			"spec: {storageUri: 5}",
		}, "\n"))
		require.Error(t, err, "kubectl apply succeeded")
		assert.Contains(t, stderr, "spec.storageUri")
		_, _, getErr := env.Kubectl(t, "get", "models.mlops.seldon.io", "numeric-uri", "-n", "default")
		assert.Error(t, getErr, "the Model was stored")
	})
}

// create creates an object of kind gvk named name in the default namespace with the given spec.
func create(t *testing.T, c client.Client, gvk schema.GroupVersionKind, name string, spec map[string]any, opts ...client.CreateOption) error {
	t.Helper()
	u := testenv.NewUnstructured(gvk, "default", name)
	u.Object["spec"] = spec
	return c.Create(t.Context(), u, opts...)
}
