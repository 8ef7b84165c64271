package decode

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Inline documents for the rule tables. Each starts at line 1.
const apHeader = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ap
spec:
`

const podHeader = `apiVersion: v1
kind: Pod
metadata:
  name: p
spec:
`

type ruleCase struct {
	name string
	in   string
	want errWant
}

func runRuleCases(t *testing.T, cases []ruleCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs, _, err := Decode("in.yaml", []byte(tc.in))
			checkErr(t, err, tc.want)
			if objs != nil {
				t.Errorf("partial result: %v", objs)
			}
		})
	}
}

// Rule 1: unknown fields at any depth, with path and line.
func TestRuleUnknownFields(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{"istio deep", apHeader + "  rules:\n  - to:\n    - operation:\n        method: [GET]\n",
			errWant{9, "spec.rules[0].to[0].operation.method", `unknown field "method" (did you mean "methods"?)`}},
		{"istio spec top", apHeader + "  actions: DENY\n", errWant{6, "spec.actions", `unknown field "actions"`}},
		{"istio selector", apHeader + "  selector:\n    matchLabel: {a: b}\n", errWant{7, "spec.selector.matchLabel", `unknown field "matchLabel"`}},
		{"istio json and proto name together", apHeader + "  rules:\n  - from:\n    - source:\n        requestPrincipals: [a]\n        request_principals: [b]\n",
			errWant{10, "spec.rules[0].from[0].source.request_principals", `set twice (also as "requestPrincipals" at line 9)`}},
		{"k8s deep", podHeader + "  containers:\n  - name: c\n    image: x\n    securityContext:\n      runAsNonroot: true\n",
			errWant{10, "spec.containers[0].securityContext.runAsNonroot", `unknown field "runAsNonroot" (did you mean "runAsNonRoot"?)`}},
		{"k8s case sensitive", podHeader + "  Containers: []\n", errWant{6, "spec.Containers", `unknown field "Containers"`}},
		{"metadata", apHeader[:len(apHeader)-6] + "  labeles: {a: b}\n", errWant{5, "metadata.labeles", `unknown field "labeles"`}},
		{"managedFields entry", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: n\n  managedFields:\n  - manager: x\n    operations: Update\n",
			errWant{7, "metadata.managedFields[0].operations", `unknown field "operations"`}},
		{"top level", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: n\ndata: {}\n", errWant{5, "data", `unknown field "data"`}},
		{"unstructured metadata", "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n  name: n\n  annotation: {}\n",
			errWant{5, "metadata.annotation", `unknown field "annotation" (did you mean "annotations"?)`}},
		{"list metadata", "apiVersion: v1\nkind: List\nmetadata:\n  resourceVersion: \"\"\n  name: x\nitems: []\n",
			errWant{5, "metadata.name", `unknown field "name"`}},
		{"list top level", "apiVersion: v1\nkind: List\nitems: []\nspec: {}\n", errWant{4, "spec", `unknown field "spec"`}},
		{"label key with dots in path", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: n\n  labels:\n    app.kubernetes.io/name: {x: 1}\n",
			errWant{6, `metadata.labels["app.kubernetes.io/name"]`, "expected a string, got a mapping"}},
	})
}

// Rule 2: duplicate keys anywhere, naming both lines.
func TestRuleDuplicateKeys(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{"top level", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\nkind: Pod\n", errWant{5, "kind", `duplicate key "kind" (first defined at line 2)`}},
		{"metadata name", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  name: b\n", errWant{5, "metadata.name", "first defined at line 4"}},
		{"labels", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  labels:\n    x: \"1\"\n    \"x\": \"2\"\n", errWant{7, "metadata.labels.x", `duplicate key "x"`}},
		{"int and string key", apHeader[:len(apHeader)-6] + "spec:\n  portLevelMtls:\n    80: {mode: STRICT}\n    \"80\": {mode: DISABLE}\n", errWant{0, "spec.portLevelMtls.80", `duplicate key "80"`}},
		{"ignored kind still checked", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: a\n  k: b\n", errWant{7, "data.k", `duplicate key "k"`}},
		{"json", "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\",\n \"metadata\": {\"name\": \"a\",\n  \"name\": \"b\"}}", errWant{3, "metadata.name", "first defined at line 2"}},
		{"large mapping", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n" + manyKeys(40) + "  k7: dup\n", errWant{46, "data.k7", "first defined at line 13"}},
	})
}

func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "  k%d: v\n", i)
	}
	return b.String()
}

// Rule 3: wrong types.
func TestRuleWrongTypes(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{"istio string for list", apHeader + "  rules:\n  - from:\n    - source:\n        principals: cluster.local/ns/a/sa/b\n",
			errWant{9, "spec.rules[0].from[0].source.principals", `expected a list, got a string`}},
		{"istio list for message", apHeader + "  selector: [a]\n", errWant{6, "spec.selector", "expected a mapping, got a list"}},
		{"istio number for string", apHeader + "  rules:\n  - to:\n    - operation:\n        ports: [8080]\n",
			errWant{9, "spec.rules[0].to[0].operation.ports[0]", "expected a string, got an integer (8080)"}},
		{"istio bool as string", "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r}\nspec:\n  jwtRules:\n  - issuer: x\n    forwardOriginalToken: \"true\"\n",
			errWant{7, "spec.jwtRules[0].forwardOriginalToken", "expected a boolean, got a string"}},
		{"istio null list element", apHeader + "  rules:\n  - ~\n", errWant{7, "spec.rules[0]", "null is not allowed here"}},
		{"istio float for int", "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n  servers:\n  - port: {number: 80.5, name: h, protocol: HTTP}\n",
			errWant{6, "spec.servers[0].port.number", "expected a 32-bit unsigned integer, got a number (80.5)"}},
		{"istio wrapper", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n  host: h\n  trafficPolicy:\n    outlierDetection:\n      consecutive5xxErrors: many\n",
			errWant{8, "spec.trafficPolicy.outlierDetection.consecutive5xxErrors", "invalid UInt32Value"}},
		{"spec not a mapping", apHeader[:len(apHeader)-6] + "spec: [a]\n", errWant{5, "spec", "expected a mapping, got a list"}},
		{"k8s number for string", podHeader + "  containers:\n  - name: 42\n", errWant{7, "spec.containers[0].name", "expected a string, got an integer (42)"}},
		{"k8s bool for string", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: n\n  labels: {enabled: true}\n", errWant{5, "metadata.labels.enabled", "expected a string, got a boolean (true)"}},
		{"k8s string for list", podHeader + "  containers: busybox\n", errWant{6, "spec.containers", "expected a list, got a string"}},
		{"k8s float for int", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicas: 1.5\n", errWant{5, "spec.replicas", "expected an integer, got a number (1.5)"}},
		{"k8s int32 overflow", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicas: 3000000000\n", errWant{5, "spec.replicas", "out of range for int32"}},
		{"k8s string for bool", podHeader + "  hostNetwork: \"yes\"\n", errWant{6, "spec.hostNetwork", "expected a boolean"}},
		{"k8s intorstring float", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - port: 80\n    targetPort: 80.5\n", errWant{7, "spec.ports[0].targetPort", "invalid value for intstr.IntOrString"}},
		{"k8s time", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: n\n  creationTimestamp: yesterday\n", errWant{5, "metadata.creationTimestamp", "invalid value for v1.Time"}},
		{"metadata not a mapping", "apiVersion: v1\nkind: Namespace\nmetadata: n\n", errWant{3, "metadata", "expected a mapping, got a string"}},
		{"unstructured spec", "apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata: {name: m}\nspec: gs://x\n", errWant{4, "spec", "expected a mapping, got a string"}},
		{"unstructured infinity", "apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata: {name: m}\nspec:\n  x: [.inf]\n", errWant{5, "spec.x[0]", "cannot be represented in JSON"}},
		{"kind not a string", "apiVersion: v1\nkind: [Pod]\n", errWant{2, "kind", "kind must be a non-empty string, got a list"}},
	})
}

// Rule 4: unknown enum values.
func TestRuleEnums(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{"action typo", apHeader + "  action: DENNY\n", errWant{6, "spec.action", `unknown value "DENNY" for enum Action (valid: ALLOW, DENY, AUDIT, CUSTOM)`}},
		{"action lower case", apHeader + "  action: deny\n", errWant{6, "spec.action", `unknown value "deny"`}},
		{"undefined number", apHeader + "  action: 42\n", errWant{6, "spec.action", "unknown value 42"}},
		{"enum as list", apHeader + "  action: [DENY]\n", errWant{6, "spec.action", "expected an enum name, got a list"}},
		{"mtls mode", "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: p}\nspec:\n  mtls: {mode: STRIKT}\n",
			errWant{5, "spec.mtls.mode", `unknown value "STRIKT" for enum Mode (valid: UNSET, DISABLE, PERMISSIVE, STRICT)`}},
		{"port level mtls", "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: p}\nspec:\n  portLevelMtls:\n    8080: {mode: OFF}\n",
			errWant{6, "spec.portLevelMtls.8080.mode", `unknown value "OFF"`}},
		{"destination rule tls", "apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n  host: h\n  trafficPolicy:\n    tls: {mode: MUTUAL_ISTIO}\n",
			errWant{7, "spec.trafficPolicy.tls.mode", `unknown value "MUTUAL_ISTIO"`}},
	})
	// A defined number is accepted, as protojson and Istio accept it.
	ap := decodeOne(t, apHeader+"  action: 1\n").Obj.(*securityv1.AuthorizationPolicy)
	if ap.Spec.GetAction().String() != "DENY" {
		t.Errorf("action 1 decoded as %v, want DENY", ap.Spec.GetAction())
	}
}

// Rule 7: aliases, size and depth limits, and other YAML features that
// have no place in manifests.
func TestRuleLimits(t *testing.T) {
	deepYAML := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: " + strings.Repeat("[", 150) + strings.Repeat("]", 150) + "\n"
	deepJSON := `{"apiVersion": "v1", "kind": "ConfigMap", "data": ` + strings.Repeat("[", 150) + strings.Repeat("]", 150) + "}"
	big := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata:\n  k: " + strings.Repeat("x", MaxDocumentSize) + "\n"
	runRuleCases(t, []ruleCase{
		{"alias", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: &n a\n  labels: {x: *n}\n", errWant{5, "metadata.labels.x", "YAML aliases are not allowed (alias *n)"}},
		{"alias in ignored kind", "apiVersion: v1\nkind: ConfigMap\nx: &a [1]\ny: *a\n", errWant{4, "y", "YAML aliases are not allowed"}},
		{"billion laughs", billionLaughs, errWant{msg: "YAML aliases are not allowed"}},
		{"merge key", "apiVersion: v1\nkind: Namespace\nbase: &b {name: a}\nmetadata:\n  <<: *b\n", errWant{msg: "not allowed"}},
		{"deep yaml", deepYAML, errWant{4, "", "maximum depth of 100"}},
		{"deep json", deepJSON, errWant{1, "", "maximum depth of 100"}},
		{"large document", big, errWant{1, "", "document exceeds the maximum size"}},
		{"large second document", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n" + big, errWant{4, "", "document exceeds the maximum size"}},
		{"binary tag", "apiVersion: v1\nkind: Secret\ndata: !!binary aGk=\n", errWant{3, "data", "explicit YAML tag !!binary is not supported"}},
		{"custom tag", "apiVersion: v1\nkind: Namespace\nmetadata: !foo {name: a}\n", errWant{3, "metadata", "explicit YAML tag !foo"}},
		{"complex key", "apiVersion: v1\nkind: Namespace\n? [a]\n: b\n", errWant{3, "", "mapping keys must be strings, got a list"}},
		{"null key", "apiVersion: v1\nkind: Namespace\n~: b\n", errWant{3, "", "mapping keys must be strings, got null"}},
	})
	// Unquoted YAML timestamps stay text, as metav1.Time expects.
	ns := decodeOne(t, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  creationTimestamp: 2025-11-02T09:14:07Z\n  labels: {day: 2025-11-02}\n")
	if ts := ns.Obj.GetCreationTimestamp(); ts.Year() != 2025 || ns.Obj.GetLabels()["day"] != "2025-11-02" {
		t.Errorf("timestamp %v, label %q", ts, ns.Obj.GetLabels()["day"])
	}
	// An anchor without an alias is harmless and accepted.
	decodeOne(t, "apiVersion: v1\nkind: Namespace\nmetadata: &m\n  name: a\n")
	// An explicit !!str tag is accepted.
	if o := decodeOne(t, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: !!str 123\n"); o.Obj.GetName() != "123" {
		t.Errorf("name = %q", o.Obj.GetName())
	}
}

var billionLaughs = `apiVersion: v1
kind: ConfigMap
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
`

// Documents: structure, empty documents, missing type information.
func TestRuleDocuments(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{"missing apiVersion", "kind: Pod\nmetadata: {name: a}\n", errWant{1, "", "document has no apiVersion"}},
		{"missing kind after comment", "# c\n\napiVersion: v1\nmetadata: {name: a}\n", errWant{3, "", "document has no kind"}},
		{"empty kind", "apiVersion: v1\nkind: \"\"\n", errWant{2, "kind", "kind must be a non-empty string"}},
		{"not a mapping", "- a\n- b\n", errWant{1, "", "a document must be a mapping, got a list"}},
		{"scalar", "---\njust text\n", errWant{2, "", "a document must be a mapping"}},
		{"missing name", "apiVersion: v1\nkind: Namespace\nmetadata:\n  labels: {a: b}\n", errWant{3, "metadata.name", "a name is required"}},
		{"empty name", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: \"\"\n", errWant{4, "metadata.name", "a name is required"}},
		{"no metadata", apHeader[:len(apHeader)-len("metadata:\n  name: ap\nspec:\n")] + "spec: {}\n", errWant{1, "metadata.name", "a name is required"}},
		{"list item not a mapping", "apiVersion: v1\nkind: List\nitems:\n- 3\n", errWant{4, "items[0]", "a document must be a mapping"}},
		{"list items not a list", "apiVersion: v1\nkind: List\nitems: {}\n", errWant{3, "items", "expected a list"}},
		{"list item missing kind", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  metadata: {name: a}\n", errWant{4, "items[0]", "document has no kind"}},
	})

	// Empty documents and documents of unknown kinds are not errors.
	objs, st, err := Decode("", []byte("---\n---\n# nothing\n---\n~\n---\napiVersion: example.com/v1\nkind: Pod\n---\napiVersion: v1\nkind: ConfigMap\n"))
	if err != nil || len(objs) != 0 || st.Decoded != 0 || st.Ignored["example.com/v1/Pod"] != 1 || st.Ignored["v1/ConfigMap"] != 1 {
		t.Errorf("got %v %v %v", objs, st, err)
	}
	// Items of a typed list of a CRD inherit its apiVersion and kind.
	objs, _, err = Decode("", []byte("apiVersion: mlops.seldon.io/v1alpha1\nkind: ModelList\nitems:\n- metadata: {name: m}\n  spec: {}\n"))
	if err != nil || len(objs) != 1 || objs[0].Obj.GetObjectKind().GroupVersionKind().Kind != "Model" || objs[0].APIVersion != "mlops.seldon.io/v1alpha1" {
		t.Errorf("typed CRD list: %v %v", objs, err)
	}
	objs, st, err = Decode("", nil)
	if err != nil || objs != nil || st.Decoded != 0 || st.Ignored == nil {
		t.Errorf("empty input: got %v %+v %v", objs, st, err)
	}
}

// Windows line endings change nothing, including line numbers.
func TestCRLF(t *testing.T) {
	data := readFixture(t, "testdata/valid/authorizationpolicy-v1beta1.yaml")
	crlf := bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n"))
	objs, _, err := Decode("crlf.yaml", crlf)
	if err != nil || len(objs) != 3 || objs[2].Source.Line != 21 {
		t.Fatalf("got %v %v", objs, err)
	}
	bad := bytes.ReplaceAll(readFixture(t, "testdata/invalid/ap-unknown-field.yaml"), []byte("\n"), []byte("\r\n"))
	_, _, err = Decode("crlf.yaml", bad)
	checkErr(t, err, errWant{11, "spec.rules[0].from[0].source.notRequestPrincipal", "unknown field"})
}

// Rule 8: JSON input has its own line numbers, streams and escapes.
func TestRuleJSON(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{"unknown field line", "{\n  \"apiVersion\": \"security.istio.io/v1beta1\",\n  \"kind\": \"AuthorizationPolicy\",\n  \"metadata\": {\"name\": \"a\"},\n  \"spec\": {\n    \"action\": \"DENY\",\n    \"rule\": []\n  }\n}\n",
			errWant{7, "spec.rule", `unknown field "rule" (did you mean "rules"?)`}},
		{"second object", "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"a\"}}\n{\"apiVersion\": \"v1\",\n \"kind\": \"Namespace\",\n \"metadata\": {\"nme\": \"a\"}}\n",
			errWant{4, "metadata.nme", `unknown field "nme"`}},
		{"syntax error in second object", "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"a\"}}\n{\n\"apiVersion\": \"v1\",\n\"kind\" \"Pod\"}\n",
			errWant{4, "", "invalid JSON"}},
		{"truncated second object", "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"a\"}}\n{\"apiVersion\": \"v1\",\n", errWant{0, "", "invalid JSON: unexpected end of input"}},
		{"array after object", "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"a\"}}\n[]\n", errWant{2, "", "expected an object"}},
		{"number too large", "{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"x\": 1e999}", errWant{1, "x", "out of range"}},
		// Duplicates are the walker's to report, as in YAML: with the path and both lines.
		{"duplicate key", "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\",\n \"metadata\": {\"name\": \"a\",\n \"name\": \"b\"}}",
			errWant{3, "metadata.name", `duplicate key "name" (first defined at line 2)`}},
	})

	// Concatenated objects without newlines, a BOM, and compact JSON.
	in := "\xef\xbb\xbf{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"a\"}}{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"b\"}}"
	objs, _, err := Decode("", []byte(in))
	if err != nil || len(objs) != 2 || objs[1].Obj.GetName() != "b" {
		t.Fatalf("JSON stream: %v %v", objs, err)
	}
	// A YAML flow mapping looks like JSON but is read as YAML.
	if o := decodeOne(t, "{apiVersion: v1, kind: Namespace,\n metadata: {name: flow}}\n"); o.Obj.GetName() != "flow" {
		t.Errorf("flow mapping: %v", o.Obj.GetName())
	}
	// JSON numbers keep their meaning in typed fields.
	d := decodeOne(t, `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"replicas":3}}`)
	if d.Source.Line != 1 {
		t.Errorf("Source.Line = %d", d.Source.Line)
	}
}

// Rule 9: all errors are *Error and carry the file.
func TestErrorsAreTyped(t *testing.T) {
	for _, in := range []string{"a: [", "{\"a\": ", "- x", "apiVersion: v1\nkind: Pod\nmetadata: {name: 1}\n", "\x00"} {
		_, _, err := Decode("f.yaml", []byte(in))
		var de *Error
		if !errors.As(err, &de) || de.File != "f.yaml" {
			t.Errorf("%q: error %v is not a *Error naming the file", in, err)
		}
	}
}

func TestDecodeObject(t *testing.T) {
	ap := `{"apiVersion":"security.istio.io/v1beta1","kind":"AuthorizationPolicy","metadata":{"name":"a","namespace":"n"},"spec":{"action":"DENY"}}`
	o, err := DecodeObject([]byte(ap))
	if err != nil {
		t.Fatal(err)
	}
	if o.APIVersion != "security.istio.io/v1beta1" || o.Obj.(*securityv1.AuthorizationPolicy).APIVersion != "security.istio.io/v1" || o.Source.Line != 1 {
		t.Errorf("got %+v", o)
	}

	cases := []struct {
		name string
		in   string
		want errWant
		is   error
	}{
		{"unknown kind", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}`, errWant{1, "", `unknown kind "ConfigMap" (apiVersion "v1")`}, ErrUnknownKind},
		{"list", `{"apiVersion":"v1","kind":"List","items":[]}`, errWant{1, "", "not accepted here"}, nil},
		{"trailing data", ap + "\n{}", errWant{2, "", "unexpected data after the JSON object"}, nil},
		{"two objects", ap + ap, errWant{1, "", "unexpected data"}, nil},
		{"yaml", "apiVersion: v1\nkind: Namespace\n", errWant{1, "", "invalid JSON"}, nil},
		{"empty", "", errWant{0, "", "invalid JSON"}, nil},
		// The first syntax error of the object, on its line (Decode would read such input as YAML).
		{"missing colon", "{\"apiVersion\": \"v1\",\n \"kind\" \"Namespace\"}", errWant{2, "", "invalid JSON: invalid character '\"' after object name (expecting ':')"}, nil},
		{"misplaced bracket", "{\"apiVersion\": \"v1\",\n \"kind\": ]}", errWant{2, "", "invalid JSON: invalid character ']'"}, nil},
		// An escaped lone surrogate is not text; like invalid UTF-8 it is refused, not replaced.
		{"lone surrogate", "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\",\n \"metadata\": {\"name\": \"a\\ud800\"}}", errWant{2, "", "invalid JSON: invalid surrogate pair"}, nil},
		{"unknown field", "{\"apiVersion\":\"security.istio.io/v1\",\"kind\":\"AuthorizationPolicy\",\n\"metadata\":{\"name\":\"a\"},\n\"spec\":{\"rules\":[{\"from\":[{\"source\":{\"notRequestPrincipal\":[\"*\"]}}]}]}}",
			errWant{3, "spec.rules[0].from[0].source.notRequestPrincipal", `unknown field "notRequestPrincipal"`}, nil},
		// An admission request's object in a version the kind is not served in is a mistake
		// to explain, not an unknown kind.
		{"unserved version", `{"apiVersion":"networking.istio.io/v2","kind":"VirtualService","metadata":{"name":"a"}}`,
			errWant{1, "kind", "networking.istio.io/v2 is not served for kind VirtualService"}, nil},
		// A CRD's free-form fields take any JSON number that fits in 64 bits, and no other.
		{"integer past 64 bits in a CRD", `{"apiVersion":"serving.kserve.io/v1beta1","kind":"InferenceService","metadata":{"name":"a"},"spec":{"predictor":{"minReplicas":9223372036854775808}}}`,
			errWant{1, "spec.predictor.minReplicas", "integer 9223372036854775808 does not fit in 64 bits"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeObject([]byte(tc.in))
			checkErr(t, err, tc.want)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.is)
			}
			if tc.is == nil && errors.Is(err, ErrUnknownKind) {
				t.Errorf("unexpected ErrUnknownKind: %v", err)
			}
		})
	}
}

// A CRD's null spec decodes as no spec at all (as the API server stores it): the engine, not
// the decoder, refuses an InferenceService or Model without one (policy.ValidateObject).
func TestDecodeObjectNullSpec(t *testing.T) {
	o, err := DecodeObject([]byte(`{"apiVersion":"serving.kserve.io/v1beta1","kind":"InferenceService","metadata":{"name":"a"},"spec":null}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, found := o.Obj.(*unstructured.Unstructured).Object["spec"]; found {
		t.Errorf("spec: null decoded as %v, want no spec", o.Obj)
	}
}

// TestParallelMatchesSequential checks that a long stream, decoded by
// several goroutines, gives the same objects and the earliest error.
func TestParallelMatchesSequential(t *testing.T) {
	data, _ := mixedStream(t, 600)
	if len(data) < parallelBytes {
		t.Fatalf("stream too small (%d bytes) to exercise the parallel path", len(data))
	}
	objs, st, err := Decode("s.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	seq := newDecoder("s.yaml", false)
	if err := seq.pipeline(false, func(emit func(*yaml.Node) bool) *Error { return seq.yamlDocs(data, emit) }); err != nil {
		t.Fatal(err)
	}
	if len(objs) != len(seq.objs) || st.Decoded != seq.stats.Decoded || fmt.Sprint(st.Ignored) != fmt.Sprint(seq.stats.Ignored) {
		t.Fatalf("parallel %d objects %v, sequential %d %v", len(objs), st, len(seq.objs), seq.stats)
	}
	for i := range objs {
		if objs[i].Source != seq.objs[i].Source || objs[i].Obj.GetName() != seq.objs[i].Obj.GetName() {
			t.Fatalf("object %d differs: %v vs %v", i, objs[i].Source, seq.objs[i].Source)
		}
	}

	// Two bad documents: the first one is reported, every time.
	lines := bytes.Count(data, []byte("\n"))
	bad := append(append([]byte{}, data...), "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a, bad1: x}\n"...)
	bad = append(bad, data...)
	bad = append(bad, "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a, bad2: x}\n"...)
	for range 5 {
		_, _, err := Decode("s.yaml", bad)
		checkErr(t, err, errWant{lines + 4, "metadata.bad1", "unknown field"})
	}
}

// A generateName stands in for the name only in admission (DecodeObject): a file for the CLI
// must name its objects, since the engine matches workloads by name.
func TestGenerateNameOnlyInAdmission(t *testing.T) {
	obj := []byte(`{"apiVersion":"serving.kserve.io/v1beta1","kind":"InferenceService","metadata":{"generateName":"sklearn-","namespace":"ml"},"spec":{"predictor":{}}}`)
	o, err := DecodeObject(obj)
	if err != nil || o.Obj.GetGenerateName() != "sklearn-" {
		t.Fatalf("DecodeObject with generateName: %v %v", o.Obj, err)
	}
	if _, _, err = Decode("isvc.json", obj); err == nil || !strings.Contains(err.Error(), "a name is required") {
		t.Errorf("Decode of a file without a name: %v", err)
	}
	_, err = DecodeObject([]byte(`{"apiVersion":"serving.kserve.io/v1beta1","kind":"InferenceService","metadata":{"namespace":"ml"},"spec":{}}`))
	if err == nil || !strings.Contains(err.Error(), "a name is required") {
		t.Errorf("DecodeObject without name or generateName: %v", err)
	}
}

// An admission request's object carries the API server's managedFields, which no verdict
// reads: DecodeObject checks them as JSON and leaves them out. Only the root's
// metadata.managedFields is skipped; the same key anywhere else is decoded as always.
func TestDecodeObjectManagedFields(t *testing.T) {
	const managed = `"managedFields":[{"manager":"kubectl-client-side-apply","operation":"Update","apiVersion":"serving.kserve.io/v1beta1",` +
		`"time":"2026-12-03T10:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{".":{},"f:predictor":{}}},"unknownToTheDecoder":1}]`
	isvc := func(meta, spec string) string {
		return `{"apiVersion":"serving.kserve.io/v1beta1","kind":"InferenceService",` + "\n" + `"metadata":{` + meta + `},` + "\n" + `"spec":` + spec + `}`
	}
	o, err := DecodeObject([]byte(isvc(`"name":"m","namespace":"ml",`+managed+`,"labels":{"app":"m"}`, `{"predictor":{}}`)))
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Obj.GetManagedFields()) != 0 || o.Obj.GetName() != "m" || o.Obj.GetLabels()["app"] != "m" {
		t.Errorf("got name %q labels %v managedFields %v", o.Obj.GetName(), o.Obj.GetLabels(), o.Obj.GetManagedFields())
	}
	// Decode, for files, still reads them strictly.
	if _, _, err := Decode("f.json", []byte(isvc(`"name":"m",`+managed, `{}`))); err == nil || !strings.Contains(err.Error(), `unknown field "unknownToTheDecoder"`) {
		t.Errorf("Decode: %v, want the unknown field in managedFields refused", err)
	}
	// So is the status, which an UPDATE carries.
	status := `{"conditions":[{"type":"Ready","status":"True"}],"url":"http://m","url":"dup"}`
	o, err = DecodeObject([]byte(isvc(`"name":"m"`, `{"predictor":{}},"status":`+status)))
	if err != nil {
		t.Fatal(err)
	}
	if _, has := o.Obj.(*unstructured.Unstructured).Object["status"]; has {
		t.Errorf("status kept: %v", o.Obj)
	}
	if _, _, err := Decode("f.json", []byte(isvc(`"name":"m"`, `{},"status":`+status))); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("Decode: %v, want the duplicate key in status refused", err)
	}
	// managedFields of an object whose metadata came first as a scalar stays a spec field.
	o, err = DecodeObject([]byte(isvc(`"name":"m"`, `{"managedFields":{"a":1}}`)))
	if err != nil {
		t.Fatal(err)
	}
	if spec := o.Obj.(*unstructured.Unstructured).Object["spec"].(map[string]any); spec["managedFields"] == nil {
		t.Errorf("spec.managedFields dropped: %v", spec)
	}
	deep := strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth)
	cases := []struct {
		name string
		in   string
		want errWant
	}{
		{"syntax error inside", isvc(`"name":"m","managedFields":[{"manager":}]`, `{}`), errWant{2, "", "invalid JSON"}},
		{"nesting past the limit", isvc(`"name":"m","managedFields":`+deep, `{}`), errWant{2, "", "maximum depth of 100"}},
		{"unterminated", `{"apiVersion":"v1","kind":"Namespace","metadata":{"managedFields":[{"a":1}`, errWant{1, "", "invalid JSON: unexpected end of input"}},
		{"status with a syntax error", isvc(`"name":"m"`, `{},"status":{"url":}`), errWant{3, "", "invalid JSON"}},
		{"status nested past the limit", isvc(`"name":"m"`, `{},"status":`+deep+deep[:1]), errWant{3, "", "maximum depth of 100"}},
		{"status of a List", `{"apiVersion":"v1","kind":"List","items":[],"status":{}}`, errWant{1, "", "not accepted here"}},
		{"in an Istio spec", `{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":"x","spec":{"managedFields":[]}}`,
			errWant{1, "metadata", "expected a mapping"}},
		{"in an Istio spec after metadata", `{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"a"},"spec":{"managedFields":[]}}`,
			errWant{1, "spec.managedFields", `unknown field "managedFields"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeObject([]byte(tc.in))
			checkErr(t, err, tc.want)
		})
	}
	// The depth limit falls where it falls for the same value parsed (spec.x is as deep).
	// Innermost an empty list, a scalar, or an object with a name (names count as values).
	for _, inner := range []string{"", "1", `{"a":{}}`} {
		for n := MaxDepth - 4; n <= MaxDepth; n++ {
			v := strings.Repeat("[", n) + inner + strings.Repeat("]", n)
			_, skipped := DecodeObject([]byte(isvc(`"name":"m","managedFields":`+v, `{}`)))
			_, parsed := DecodeObject([]byte(isvc(`"name":"m"`, `{"x":`+v+`}`)))
			if (skipped == nil) != (parsed == nil) {
				t.Errorf("%d levels around %q: skipped %v, parsed %v", n, inner, skipped, parsed)
			}
		}
	}
}

// Strings are read from their raw text; escaped ones are unescaped, also for interned names.
func TestDecodeObjectEscapes(t *testing.T) {
	o, err := DecodeObject([]byte(`{"apiVersion":"v1","kind":"Namespace","metadata":{"n\u0061me":"a\u0062\/c","labels":{"app":"\u00e9"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if o.Obj.GetName() != "ab/c" || o.Obj.GetLabels()["app"] != "é" {
		t.Errorf("name %q labels %v", o.Obj.GetName(), o.Obj.GetLabels())
	}
}
