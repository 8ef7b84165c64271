package policy

import "testing"

// relate's answers on the set shapes routes produce; "some" wherever the engine cannot prove
// "none" or "all".
func TestRelate(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		set     strSet
		want    tri
	}{
		{"*", prefixed("/v2/"), triAll},
		{"*", absent, triNone},
		{"*", anyStr, triSome},
		{"/v2/*", prefixed("/v2/"), triAll},
		{"/v2/*", prefixed("/v2/models/"), triAll},
		{"/v2/*", prefixed("/v2"), triSome}, // "/v2" and "/v2foo" escape
		{"/v2/*", prefixed("/"), triSome},
		{"/v2/*", prefixed("/inference."), triNone},
		{"/v2/*", exactly("/v2/models/m/infer"), triAll},
		{"/v2/*", exactly("/v2"), triNone},
		{"*/infer", prefixed("/v2/"), triSome},
		{"*/infer", exactly("/v2/models/m/infer"), triAll},
		{"*infer*", exactly("/a/infer*"), triAll}, // a leading "*" wins: suffix "infer*"
		{"*infer*", exactly("/a/inferx"), triNone},
		{"/v2/models/m/infer", prefixed("/v2/"), triSome},
		{"/v1/x", prefixed("/v2/"), triNone},
		{"https://issuer.example.com/*", prefixed("https://issuer.example.com/"), triAll},
		{"https://other/*", prefixed("https://issuer.example.com/"), triNone},
		{"*.example.com", suffixed(".example.com"), triAll},
		{"*.com", suffixed(".example.com"), triAll},
		{"*.example.com", suffixed(".com"), triSome},
		{"*.org", suffixed(".example.com"), triNone},
		{"a.example.com", suffixed(".example.com"), triSome},
	} {
		if got := relate(tc.pattern, tc.set); got != tc.want {
			t.Errorf("relate(%q, %v) = %v, want %v", tc.pattern, tc.set, got, tc.want)
		}
	}
}

func TestRelatePathTemplates(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		set     strSet
		want    tri
	}{
		{"/v2/{**}", prefixed("/v2/models/"), triSome}, // never "all": templates skip some characters
		{"/v2/{**}", prefixed("/v1/"), triNone},
		{"/v2/{*}/infer", exactly("/v2/m/infer"), triAll},
		{"/v2/{*}/infer", exactly("/v2/a/b/infer"), triNone},
		{"/v2/models/{*}/infer", prefixed("/v2/"), triSome},
	} {
		if got := relatePath(tc.pattern, tc.set); got != tc.want {
			t.Errorf("relatePath(%q, %v) = %v, want %v", tc.pattern, tc.set, got, tc.want)
		}
	}
}

func TestRelateHost(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		set     strSet
		want    tri
	}{
		{"SAMPLE.example.com", exactly("sample.example.com"), triAll}, // case-insensitive, port-tolerant
		{"sample.*", exactly("sample.example.com"), triAll},
		{"*.example.com", exactly("sample.example.com"), triSome}, // "sample.example.com:443" escapes
		{"other.org", exactly("sample.example.com"), triNone},
		{"sample.example.com", anyStr, triSome},
	} {
		if got := relateHost(tc.pattern, tc.set); got != tc.want {
			t.Errorf("relateHost(%q, %v) = %v, want %v", tc.pattern, tc.set, got, tc.want)
		}
	}
}

func TestTriLogic(t *testing.T) {
	all := []tri{triNone, triSome, triAll}
	for _, a := range all {
		if a.and(triAll) != a || a.or(triNone) != a || a.not().not() != a {
			t.Errorf("identities fail for %v", a)
		}
		if a.and(triNone) != triNone || a.or(triAll) != triAll {
			t.Errorf("absorption fails for %v", a)
		}
	}
	if triSome.and(triSome) != triSome || triSome.or(triSome) != triSome || triSome.not() != triSome {
		t.Error("some must stay some")
	}
}
