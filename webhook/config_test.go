package webhook

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelguard/modelguard/policy"
)

func TestConfigReloadKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "guard.yaml")
	write := func(s string) { require.NoError(t, os.WriteFile(path, []byte(s), 0o600)) }
	write("apiVersion: modelguard.io/v1alpha1\nkind: GuardConfig\nrules: [{name: first, namespaceSelector: {}}]\n")
	logs := &bytes.Buffer{}
	m := NewMetrics(prometheus.NewRegistry())
	s, err := NewConfigStore(path, slog.New(slog.NewJSONHandler(logs, nil)), m)
	require.NoError(t, err)
	changes := 0
	s.OnChange(func(old, cur *policy.GuardConfig) { changes++ })

	write("apiVersion: modelguard.io/v1alpha1\nkind: GuardConfig\nrules: [{name: second, namespaceSelector: {}, mode: Warn}]\n")
	require.NoError(t, s.Reload())
	assert.Equal(t, "second", s.Get().Rules[0].Name)
	assert.Equal(t, 1, changes)
	assert.Equal(t, 1.0, testutil.ToFloat64(m.ConfigValid))

	write("apiVersion: modelguard.io/v1alpha1\nkind: GuardConfig\nrules: [{name: third, namespaceSelector: {}, mdoe: Warn}]\n")
	err = s.Reload()
	require.Error(t, err)
	assert.Equal(t, "second", s.Get().Rules[0].Name, "the last valid config stays")
	assert.Equal(t, 0.0, testutil.ToFloat64(m.ConfigValid))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.ConfigReloads.WithLabelValues("invalid")))
	assert.Contains(t, logs.String(), "rules[0].mdoe", "the log names the field")
	assert.Contains(t, logs.String(), "guard.yaml:3")
	assert.Equal(t, 1, changes)

	require.NoError(t, s.Reload(), "the same invalid bytes are reported once")
	assert.Equal(t, 1.0, testutil.ToFloat64(m.ConfigReloads.WithLabelValues("invalid")))

	write("apiVersion: modelguard.io/v1alpha1\nkind: GuardConfig\nrules: [{name: second, namespaceSelector: {}, mode: Warn}]\n")
	require.NoError(t, s.Reload())
	assert.Equal(t, 1.0, testutil.ToFloat64(m.ConfigValid), "reverting the file clears the alarm")
}

func TestConfigStoreRefusesToStartInvalid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "guard.yaml")
	require.NoError(t, os.WriteFile(path, []byte("kind: GuardConfig\n"), 0o600))
	_, err := NewConfigStore(path, slog.New(slog.NewJSONHandler(&bytes.Buffer{}, nil)), NewMetrics(prometheus.NewRegistry()))
	require.Error(t, err, "the server never runs without a valid config")
}
