package reconciler

import (
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/modelguard/modelguard/policy"
	"github.com/modelguard/modelguard/webhook"
)

// Sync: nothing to scope without the configuration; a configuration without webhooks is an
// error that says what to do (there is no clientConfig to copy); a scoped one is not written
// again; the broad one is replaced, keeping its clientConfig.
func TestWebhookScopeSync(t *testing.T) {
	url := "https://modelguard.example/mutate"
	broad, _ := webhook.Configurations(webhook.ConfigurationOptions{Name: "modelguard", Namespace: "modelguard-system",
		Client: func(string) admissionregistrationv1.WebhookClientConfig {
			return admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: []byte("ca")}
		}})
	empty := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "modelguard"}}

	for _, tc := range []struct {
		name     string
		objects  []client.Object
		written  bool
		errorHas string
	}{
		{name: "no configuration", written: false},
		{name: "no webhooks in it", objects: []client.Object{empty}, errorHas: "no webhook to take the clientConfig"},
		{name: "the installed broad webhook", objects: []client.Object{broad.DeepCopy()}, written: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(tc.objects...).Build()
			s := NewWebhookScope(WebhookScope{Client: c, Reader: c, Name: "modelguard", Namespace: "modelguard-system",
				Config: policy.DefaultConfig, Results: NewResults(prometheus.NewRegistry()), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			written, err := s.Sync(t.Context())
			if tc.errorHas != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.errorHas)
				assert.Contains(t, err.Error(), "MutatingWebhookConfiguration modelguard")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.written, written)
			if !written {
				return
			}
			live := &admissionregistrationv1.MutatingWebhookConfiguration{}
			require.NoError(t, c.Get(t.Context(), types.NamespacedName{Name: "modelguard"}, live))
			require.Len(t, live.Webhooks, 1, "the default GuardConfig injects nowhere")
			assert.Equal(t, webhook.AnnotatedWebhookName, live.Webhooks[0].Name)
			assert.Equal(t, url, *live.Webhooks[0].ClientConfig.URL)
			assert.Equal(t, []byte("ca"), live.Webhooks[0].ClientConfig.CABundle)
			again, err := s.Sync(t.Context())
			require.NoError(t, err)
			assert.False(t, again, "a scoped configuration is not written again")
		})
	}
}
