package policy

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// combineRules adds the requirements of two rules up; weakerRule names what a rule gives up.
func TestCombineAndCompareRules(t *testing.T) {
	no := false
	enforce := &Rule{Name: "default", Mode: ModeEnforce}
	warn := &Rule{Name: "sandbox", Mode: ModeWarn}
	plaintext := &Rule{Name: "plaintext", Mode: ModeEnforce, RequireMTLS: &no}
	issuersAB := &Rule{Name: "ab", Mode: ModeEnforce, AllowedIssuers: []string{"a", "b"}}
	issuersBC := &Rule{Name: "bc", Mode: ModeWarn, AllowedIssuers: []string{"b", "c"}}

	r, stricter := combineRules(nil, warn)
	assert.True(t, stricter)
	assert.Same(t, warn, r, "no rule of its own: the target's")

	r, stricter = combineRules(warn, enforce)
	assert.True(t, stricter)
	assert.Same(t, enforce, r, "the target asks at least as much in every respect")

	r, stricter = combineRules(enforce, warn)
	assert.False(t, stricter)
	assert.Same(t, enforce, r)

	r, stricter = combineRules(plaintext, enforce)
	assert.True(t, stricter)
	assert.True(t, r.MTLSRequired())

	r, stricter = combineRules(issuersAB, issuersBC)
	assert.True(t, stricter)
	assert.Equal(t, "ab+bc", r.Name)
	assert.Equal(t, ModeEnforce, r.Mode)
	assert.Equal(t, []string{"b"}, r.AllowedIssuers)

	r, _ = combineRules(&Rule{Name: "a", Mode: ModeEnforce, AllowedIssuers: []string{"a"}}, &Rule{Name: "c", Mode: ModeEnforce, AllowedIssuers: []string{"c"}})
	assert.False(t, r.IssuerAllowed("a"))
	assert.False(t, r.IssuerAllowed("c"), "no issuer in common: none allowed, not every one")

	assert.Equal(t, []string{"no rule would guard the namespace"}, weakerRule(enforce, nil))
	assert.Equal(t, []string{"mode Warn instead of Enforce"}, weakerRule(enforce, warn))
	assert.Equal(t, []string{"mTLS no longer required"}, weakerRule(enforce, plaintext))
	assert.Empty(t, weakerRule(enforce, issuersAB), "fewer issuers is stricter")
	assert.Equal(t, []string{"allowedIssuers (any) instead of [a b]"}, weakerRule(issuersAB, enforce))
	assert.Equal(t, []string{"mode Warn instead of Enforce", "allowedIssuers [b c] instead of [a b]"}, weakerRule(issuersAB, issuersBC))
	in := &Rule{Name: "in", Mode: ModeEnforce, Inject: &Inject{Issuer: "i", JwksURI: "https://i/k", Audiences: []string{"m"}}}
	other := &Rule{Name: "other", Mode: ModeEnforce, Inject: &Inject{Issuer: "i", JwksURI: "https://evil/k", AllowSameNamespace: true}}
	assert.Equal(t, []string{
		"the generated policies would accept tokens signed by the keys of https://evil/k instead of https://i/k",
		"the generated policies would accept audiences (any) instead of [m]",
		"callers in the model's namespace would need no token",
	}, weakerRule(in, other))
}
