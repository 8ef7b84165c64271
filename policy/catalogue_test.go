package policy_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelguard/modelguard/policy"
)

// TestReadmeCatalogueInSync fails when README.md's findings section is not what
// `go generate ./policy` renders from policy.Catalogue.
func TestReadmeCatalogueInSync(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	text := string(data)
	begin := strings.Index(text, policy.CatalogueBegin)
	end := strings.Index(text, policy.CatalogueEnd)
	require.True(t, begin >= 0 && end > begin, "README.md lacks the findings markers")
	got := text[begin+len(policy.CatalogueBegin)+1 : end]
	assert.Equal(t, policy.CatalogueMarkdown(), got, "README.md is stale: run `make generate`")
}

// TestCatalogueComplete: every code is documented once, with a title and a meaning.
func TestCatalogueComplete(t *testing.T) {
	seen := map[policy.Code]bool{}
	for _, e := range policy.Catalogue {
		assert.False(t, seen[e.Code], "duplicate code %s", e.Code)
		seen[e.Code] = true
		assert.NotEmpty(t, e.Title, e.Code)
		assert.NotEmpty(t, e.Meaning, e.Code)
		assert.Contains(t, []policy.Severity{policy.SeverityError, policy.SeverityWarning, policy.SeverityInfo}, e.Severity)
	}
}
