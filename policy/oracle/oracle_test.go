package oracle

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	"sigs.k8s.io/yaml"
)

// scenario is one group of fixture cases sharing the same policies (see testdata/README.md).
type scenario struct {
	Scenario string            `json:"scenario"`
	Options  Options           `json:"options"`
	Policies []json.RawMessage `json:"policies"`
	Base     json.RawMessage   `json:"base"`
	Cases    []fixtureCase     `json:"cases"`
}

type fixtureCase struct {
	Name        string          `json:"name"`
	Request     json.RawMessage `json:"request"`
	Allowed     *bool           `json:"allowed"`
	Policy      string          `json:"policy"`
	Action      string          `json:"action"`
	Reason      string          `json:"reason"`
	Assumptions []string        `json:"assumptions"`
}

func TestDecideFixtures(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			for _, sc := range loadScenarios(t, file) {
				t.Run(sc.Scenario, func(t *testing.T) { runScenario(t, sc) })
			}
		})
	}
}

func runScenario(t *testing.T, sc scenario) {
	policies := make([]*securityv1.AuthorizationPolicy, 0, len(sc.Policies))
	for _, raw := range sc.Policies {
		policies = append(policies, decodePolicy(t, raw))
	}
	require.NotEmpty(t, sc.Cases, "scenario without cases")
	for _, c := range sc.Cases {
		t.Run(c.Name, func(t *testing.T) {
			require.NotNil(t, c.Allowed, "case must state allowed")
			req := buildRequest(t, sc.Base, c.Request)
			got := Decide(req, policies, sc.Options)
			assert.Equal(t, *c.Allowed, got.Allowed, "allowed (reason: %s)", got.Reason)
			assert.Equal(t, c.Policy, got.Policy, "deciding policy")
			assert.Equal(t, c.Action, got.Action, "deciding action")
			if c.Reason != "" {
				assert.Equal(t, c.Reason, got.Reason, "reason")
			}
			assert.Equal(t, normalize(c.Assumptions), normalize(got.Assumptions), "assumptions")
		})
	}
}

func normalize(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func loadScenarios(t *testing.T, file string) []scenario {
	t.Helper()
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	js, err := yaml.YAMLToJSON(data)
	require.NoError(t, err)
	var scenarios []scenario
	strictDecode(t, js, &scenarios)
	require.NotEmpty(t, scenarios)
	return scenarios
}

// strictDecode rejects unknown fields, so a typo in a fixture fails the test instead of
// silently testing nothing.
func strictDecode(t *testing.T, js []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(v), "decoding %s", js)
}

// buildRequest decodes the scenario's base request, then the case's request on top of
// it (fields override; maps merge).
func buildRequest(t *testing.T, base, override json.RawMessage) Request {
	t.Helper()
	var req Request
	for _, raw := range []json.RawMessage{base, override} {
		if len(raw) > 0 && string(raw) != "null" {
			strictDecode(t, raw, &req)
		}
	}
	return req
}

// decodePolicy decodes one AuthorizationPolicy. Istio's spec unmarshaler ignores unknown
// fields, so the spec is re-encoded and compared with the fixture to catch typos.
func decodePolicy(t *testing.T, raw json.RawMessage) *securityv1.AuthorizationPolicy {
	t.Helper()
	var ap securityv1.AuthorizationPolicy
	strictDecode(t, raw, &ap)

	var in struct {
		Spec any `json:"spec"`
	}
	require.NoError(t, json.Unmarshal(raw, &in))
	out, err := ap.Spec.MarshalJSON()
	require.NoError(t, err)
	var roundTrip any
	require.NoError(t, json.Unmarshal(out, &roundTrip))
	require.Equal(t, pruneDefaults(in.Spec), pruneDefaults(roundTrip),
		"policy %s/%s: spec has unknown or misspelt fields", ap.Namespace, ap.Name)
	return &ap
}

// pruneDefaults drops what the protobuf JSON encoder omits: empty lists and the default
// action ALLOW.
func pruneDefaults(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if l, ok := e.([]any); ok && len(l) == 0 {
				continue
			}
			if k == "action" && e == "ALLOW" {
				continue
			}
			out[k] = pruneDefaults(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = pruneDefaults(e)
		}
		return out
	case nil:
		return map[string]any{}
	default:
		return v
	}
}

// TestDecideIgnoresNilPolicies checks robustness to nil entries, which YAML cannot express.
func TestDecideIgnoresNilPolicies(t *testing.T) {
	got := Decide(Request{Path: "/"}, []*securityv1.AuthorizationPolicy{nil}, Options{})
	assert.Equal(t, Decision{Allowed: true, Reason: "no ALLOW policy applies"}, got)
}
