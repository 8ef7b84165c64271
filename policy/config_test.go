package policy_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelguard/modelguard/policy"
)

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		file, field, contains string
		line                  int
	}{
		{"unknown-field.yaml", "rules[0].mdoe", "unknown field", 6},
		{"bad-mode.yaml", "rules[0].mode", "Enforced", 6},
		{"duplicate-key.yaml", "", "mode", 7},
		{"wrong-type.yaml", "", "requireMTLS", 1},
		{"no-rules.yaml", "rules", "at least one rule", 1},
		{"bad-inject.yaml", "rules[0].inject.issuer", "not in this rule's allowedIssuers", 8},
		{"missing-selector.yaml", "rules[0].namespaceSelector", "use {} to match every namespace", 4},
		{"two-documents.yaml", "", "exactly one YAML document", 1},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, err := policy.LoadConfig(filepath.Join("testdata/config", tc.file))
			require.Error(t, err)
			var ce *policy.ConfigError
			require.True(t, errors.As(err, &ce), "want a *ConfigError, got %T: %v", err, err)
			assert.Contains(t, err.Error(), tc.contains)
			assert.Contains(t, err.Error(), tc.file, "the error names the file")
			if tc.field != "" {
				assert.Equal(t, tc.field, ce.Field)
			}
			assert.Equal(t, tc.line, ce.Line, err.Error())
		})
	}
}

func TestParseConfigValidAndRuleSelection(t *testing.T) {
	cfg, err := policy.LoadConfig("testdata/config/valid-full.yaml")
	require.NoError(t, err)
	assert.Equal(t, "rollout", cfg.RuleFor(map[string]string{"team": "ml"}).Name)
	assert.Equal(t, policy.ModeWarn, cfg.RuleFor(map[string]string{"team": "ml"}).Mode)
	assert.Equal(t, "default", cfg.RuleFor(map[string]string{"team": "web"}).Name)
	assert.True(t, cfg.Exempt("kube-system"))
	assert.False(t, cfg.Exempt("ml"))
	assert.True(t, cfg.RuleFor(nil).MTLSRequired(), "requireMTLS defaults to true")
	assert.Equal(t, "knative-serving/knative-ingress-gateway", cfg.KServeIngressGateway)
}

func TestDefaultConfigIsTheDocumentedOne(t *testing.T) {
	cfg := policy.DefaultConfig()
	assert.Equal(t, "istio-system", cfg.MeshRootNamespace)
	assert.Equal(t, policy.ModeEnforce, cfg.RuleFor(map[string]string{}).Mode)
	assert.Equal(t, []string{"kube-system"}, cfg.ExemptNamespaces)
}

// FuzzParseConfig: no input panics, and an accepted config always has a rule list whose
// modes are valid (the engine relies on both).
func FuzzParseConfig(f *testing.F) {
	files, _ := filepath.Glob("testdata/config/*.yaml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := policy.ParseConfig("fuzz.yaml", data)
		if err != nil {
			return
		}
		require.NotEmpty(t, cfg.Rules)
		for _, r := range cfg.Rules {
			require.Contains(t, []policy.Mode{policy.ModeEnforce, policy.ModeWarn, policy.ModeAudit}, r.Mode)
		}
	})
}
