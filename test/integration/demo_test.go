package integration_test

import (
	"bytes"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelguard/modelguard/test/envtest"
)

// TestDemo runs `make demo`'s program end to end: it must finish cleanly and show each
// refusal and the generated policies.
func TestDemo(t *testing.T) {
	root, err := testenv.RepoRoot()
	require.NoError(t, err)
	cmd := exec.Command("go", "run", "./hack/demo")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "MODELGUARD_BIN="+buildModelguard(t))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Run(), out.String())
	text := out.String()
	assert.Contains(t, text, `admission webhook "validate.models.modelguard.io" denied the request: modelguard denied VirtualService seldon-mesh/iris-route`)
	assert.Contains(t, text, `admission webhook "guard.policies.modelguard.io" denied the request`)
	assert.Contains(t, text, "Warning: [MODEL_UNREACHABLE]")
	assert.Contains(t, text, "inject=true issuer=https://issuer.example.com rule=generated")
	assert.Contains(t, text, "name: modelguard-isvc-sample")
	assert.Contains(t, text, `"decision":"denied"`)
}
