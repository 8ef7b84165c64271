package decode

import (
	"errors"
	"strings"
	"testing"
)

// A document that looks like a kind modelguard reads, with another case or an unserved
// version, is an input error: skipping it would silently drop a policy from the mesh state.
func TestNearMissKindsAreErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"apiVersion: security.istio.io/v1beta2\nkind: AuthorizationPolicy\nmetadata: {name: a}\n",
			"security.istio.io/v1beta2 is not served for kind AuthorizationPolicy: use one of security.istio.io/v1, security.istio.io/v1beta1"},
		{"apiVersion: security.istio.io/v1\nkind: authorizationpolicy\nmetadata: {name: a}\n",
			`kind "authorizationpolicy" is not known: did you mean "AuthorizationPolicy"?`},
		{"apiVersion: serving.kserve.io/v1alpha1\nkind: InferenceService\nmetadata: {name: a}\n",
			"use one of serving.kserve.io/v1beta1"},
		{"apiVersion: v1\nkind: service\nmetadata: {name: a}\n", `did you mean "Service"?`},
	} {
		_, _, err := Decode("doc.yaml", []byte(tc.doc))
		var de *Error
		if !errors.As(err, &de) || !strings.Contains(err.Error(), tc.want) || de.Line != 1 {
			t.Errorf("%q: got %v, want an *Error at line 1 containing %q", tc.doc, err, tc.want)
		}
	}
	// Kinds of the same groups that modelguard does not read stay ignored.
	objs, st, err := Decode("doc.yaml", []byte("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n"))
	if err != nil || len(objs) != 0 || st.Ignored["networking.istio.io/v1/ServiceEntry"] != 1 || st.Ignored["v1/ConfigMap"] != 1 {
		t.Errorf("unrelated kinds: objs %d, stats %v, err %v", len(objs), st, err)
	}
}

// Invalid UTF-8 is refused with its place, in streams and in single objects: decoding would
// otherwise replace the bytes and judge a name or path other than the one stored.
func TestInvalidUTF8(t *testing.T) {
	_, _, err := Decode("bad.yaml", []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: \"a\xffb\"}\n"))
	var de *Error
	if !errors.As(err, &de) || de.Line != 3 || !strings.Contains(err.Error(), "invalid UTF-8 at byte") {
		t.Errorf("stream: got %v", err)
	}
	if _, err := DecodeObject([]byte("{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"a\xff\"}}")); err == nil || !strings.Contains(err.Error(), "invalid UTF-8") {
		t.Errorf("object: got %v", err)
	}
}
