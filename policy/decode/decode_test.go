package decode

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// objWant is the expected summary of one decoded object.
type objWant struct {
	apiVersion, kind string
	name             string // namespace/name
	line             int
	goType           any
}

func TestDecodeValidFixtures(t *testing.T) {
	ap := &securityv1.AuthorizationPolicy{}
	cases := []struct {
		file    string
		want    []objWant
		ignored map[string]int
	}{
		{"authorizationpolicy-v1.yaml", []objWant{{"security.istio.io/v1", "AuthorizationPolicy", "models/model-access", 2, ap}}, nil},
		{"authorizationpolicy-v1beta1.yaml", []objWant{
			{"security.istio.io/v1beta1", "AuthorizationPolicy", "models/deny-admin", 1, ap},
			{"security.istio.io/v1beta1", "AuthorizationPolicy", "models/allow-nothing", 14, ap},
			{"security.istio.io/v1beta1", "AuthorizationPolicy", "/ext-authz", 21, ap},
		}, nil},
		{"requestauthentication-v1.yaml", []objWant{{"security.istio.io/v1", "RequestAuthentication", "models/jwt", 1, &securityv1.RequestAuthentication{}}}, nil},
		{"peerauthentication-v1beta1.yaml", []objWant{{"security.istio.io/v1beta1", "PeerAuthentication", "models/strict", 1, &securityv1.PeerAuthentication{}}}, nil},
		{"virtualservice-v1alpha3.yaml", []objWant{{"networking.istio.io/v1alpha3", "VirtualService", "models/llm", 1, &networkingv1.VirtualService{}}}, nil},
		{"gateway-v1beta1.yaml", []objWant{{"networking.istio.io/v1beta1", "Gateway", "models/public", 1, &networkingv1.Gateway{}}}, nil},
		{"destinationrule-v1.yaml", []objWant{{"networking.istio.io/v1", "DestinationRule", "models/llm", 1, &networkingv1.DestinationRule{}}}, nil},
		{"core.yaml", []objWant{
			{"v1", "Namespace", "/models", 1, &corev1.Namespace{}},
			{"v1", "Service", "models/llm", 8, &corev1.Service{}},
			{"v1", "Pod", "models/debug", 24, &corev1.Pod{}},
		}, nil},
		{"apps.yaml", []objWant{
			{"apps/v1", "Deployment", "models/llm-server", 1, &appsv1.Deployment{}},
			{"apps/v1", "StatefulSet", "models/vector-db", 35, &appsv1.StatefulSet{}},
			{"apps/v1", "DaemonSet", "kube-system/node-agent", 62, &appsv1.DaemonSet{}},
		}, nil},
		{"mlops.yaml", []objWant{
			{"mlops.seldon.io/v1alpha1", "Model", "models/iris", 1, &unstructured.Unstructured{}},
			{"serving.kserve.io/v1beta1", "InferenceService", "models/sklearn-iris", 14, &unstructured.Unstructured{}},
		}, nil},
		{"list.yaml", []objWant{
			{"security.istio.io/v1", "PeerAuthentication", "istio-system/default", 7, &securityv1.PeerAuthentication{}},
			{"v1", "Namespace", "/apps", 21, &corev1.Namespace{}},
		}, map[string]int{"v1/ConfigMap": 1}},
		{"typed-list.yaml", []objWant{
			{"security.istio.io/v1beta1", "AuthorizationPolicy", "a/first", 7, ap},
			{"security.istio.io/v1beta1", "AuthorizationPolicy", "b/second", 12, ap},
		}, nil},
		{"multi.yaml", []objWant{{"security.istio.io/v1", "PeerAuthentication", "/default", 13, &securityv1.PeerAuthentication{}}},
			map[string]int{"v1/ConfigMap": 2, "example.com/v1/Widget": 1}},
		{"kubectl-export.yaml", []objWant{
			{"apps/v1", "Deployment", "models/llm-server", 3, &appsv1.Deployment{}},
			{"security.istio.io/v1", "AuthorizationPolicy", "models/model-access", 97, ap},
		}, nil},
		{"stream.json", []objWant{
			{"security.istio.io/v1", "AuthorizationPolicy", "models/json-ap", 1, ap},
			{"v1", "Namespace", "/json-ns", 10, &corev1.Namespace{}},
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			file := filepath.Join("testdata", "valid", tc.file)
			objs, st, err := Decode(file, readFixture(t, file))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			var got []objWant
			for _, o := range objs {
				got = append(got, objWant{o.APIVersion, o.Kind, o.Obj.GetNamespace() + "/" + o.Obj.GetName(), o.Source.Line, reflect.TypeOf(o.Obj)})
				if o.Source.File != file {
					t.Errorf("Source.File = %q, want %q", o.Source.File, file)
				}
			}
			var want []objWant
			for _, w := range tc.want {
				w.goType = reflect.TypeOf(w.goType)
				want = append(want, w)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("objects:\n got %v\nwant %v", got, want)
			}
			if st.Decoded != len(objs) {
				t.Errorf("Stats.Decoded = %d, want %d", st.Decoded, len(objs))
			}
			if tc.ignored == nil {
				tc.ignored = map[string]int{}
			}
			if !reflect.DeepEqual(st.Ignored, tc.ignored) {
				t.Errorf("Stats.Ignored = %v, want %v", st.Ignored, tc.ignored)
			}
		})
	}
}

// TestDecodedContent spot-checks that values reach the typed objects.
func TestDecodedContent(t *testing.T) {
	decodeFile := func(name string) []Object {
		t.Helper()
		file := filepath.Join("testdata", "valid", name)
		objs, _, err := Decode(file, readFixture(t, file))
		if err != nil {
			t.Fatal(err)
		}
		return objs
	}

	ap := decodeFile("authorizationpolicy-v1beta1.yaml")[0].Obj.(*securityv1.AuthorizationPolicy)
	if ap.APIVersion != "security.istio.io/v1" || ap.Kind != "AuthorizationPolicy" {
		t.Errorf("TypeMeta = %v, want the v1 apiVersion", ap.TypeMeta)
	}
	if ap.Spec.GetAction().String() != "DENY" || ap.Spec.GetRules()[0].GetTo()[0].GetOperation().GetPaths()[0] != "/admin*" {
		t.Errorf("spec not decoded: %v", ap.Spec.String())
	}

	full := decodeFile("authorizationpolicy-v1.yaml")[0].Obj.(*securityv1.AuthorizationPolicy)
	src := full.Spec.GetRules()[0].GetFrom()[0].GetSource()
	if got := src.GetNotRequestPrincipals(); len(got) != 1 || got[0] != "*" {
		t.Errorf("notRequestPrincipals = %v", got)
	}
	if got := full.Spec.GetRules()[0].GetTo()[0].GetOperation().GetPorts(); len(got) != 1 || got[0] != "8080" {
		t.Errorf("ports = %v", got)
	}

	dr := decodeFile("destinationrule-v1.yaml")[0].Obj.(*networkingv1.DestinationRule)
	tp := dr.Spec.GetTrafficPolicy()
	if d := tp.GetConnectionPool().GetTcp().GetConnectTimeout().AsDuration(); d != 500*time.Millisecond {
		t.Errorf("connectTimeout = %v, want 500ms", d)
	}
	if d := tp.GetOutlierDetection().GetBaseEjectionTime().AsDuration(); d != time.Minute {
		t.Errorf("baseEjectionTime = %v, want 1m", d)
	}
	if v := tp.GetOutlierDetection().GetConsecutive_5XxErrors().GetValue(); v != 5 {
		t.Errorf("consecutive5xxErrors = %d, want 5", v)
	}

	pa := decodeFile("peerauthentication-v1beta1.yaml")[0].Obj.(*securityv1.PeerAuthentication)
	if m := pa.Spec.GetPortLevelMtls(); m[8080].GetMode().String() != "PERMISSIVE" || m[9090].GetMode().String() != "DISABLE" {
		t.Errorf("portLevelMtls = %v", m)
	}

	core := decodeFile("core.yaml")
	svc := core[1].Obj.(*corev1.Service)
	if svc.Spec.Ports[0].TargetPort.String() != "http" || svc.Spec.Ports[1].TargetPort.IntValue() != 9000 {
		t.Errorf("targetPorts = %v", svc.Spec.Ports)
	}
	pod := core[2].Obj.(*corev1.Pod)
	if m := pod.Spec.Volumes[0].ConfigMap.DefaultMode; m == nil || *m != 0o644 {
		t.Errorf("defaultMode = %v, want 0644 (YAML octal)", m)
	}
	if q := pod.Spec.Containers[0].Resources.Requests.Cpu().String(); q != "100m" {
		t.Errorf("cpu request = %s, want 100m", q)
	}
	if pod.APIVersion != "v1" || pod.Kind != "Pod" {
		t.Errorf("TypeMeta = %v", pod.TypeMeta)
	}

	export := decodeFile("kubectl-export.yaml")[0].Obj.(*appsv1.Deployment)
	if len(export.ManagedFields) != 2 || export.UID == "" || export.Generation != 3 || export.CreationTimestamp.IsZero() {
		t.Errorf("server-set metadata lost: %+v", export.ObjectMeta)
	}
	if export.Status.Replicas != 0 {
		t.Errorf("status should be dropped, got %+v", export.Status)
	}

	model := decodeFile("mlops.yaml")[0].Obj.(*unstructured.Unstructured)
	if uri, _, _ := unstructured.NestedString(model.Object, "spec", "storageUri"); !strings.HasPrefix(uri, "gs://") {
		t.Errorf("storageUri = %q", uri)
	}
	if r, _, _ := unstructured.NestedInt64(model.Object, "spec", "replicas"); r != 1 {
		t.Errorf("replicas = %d", r)
	}
	model.DeepCopy() // panics on values that are not JSON-compatible

	js := decodeFile("stream.json")
	if p := js[0].Obj.(*securityv1.AuthorizationPolicy).Spec.GetRules()[0].GetTo()[0].GetOperation().GetPaths()[0]; p != "/admin" {
		t.Errorf(`"\/" escape: path = %q`, p)
	}
	if a := js[1].Obj.GetAnnotations()["note"]; a != "emoji 😀" {
		t.Errorf("surrogate pair: %q", a)
	}
}

func TestDecodeInvalidFixtures(t *testing.T) {
	cases := []struct {
		file string
		want errWant
	}{
		{"ap-unknown-field.yaml", errWant{11, "spec.rules[0].from[0].source.notRequestPrincipal", `unknown field "notRequestPrincipal" (did you mean "notRequestPrincipals"?)`}},
		{"duplicate-key.yaml", errWant{11, "spec.action", `duplicate key "action" (first defined at line 6)`}},
		{"wrong-type.yaml", errWant{9, "spec.rules[0].to[0].operation.paths", `expected a list, got a string ("/admin")`}},
		{"bad-enum.yaml", errWant{6, "spec.action", `unknown value "DENNY" for enum Action (valid: ALLOW, DENY, AUDIT, CUSTOM)`}},
		{"bad-mtls-mode.yaml", errWant{7, "spec.mtls.mode", `unknown value "STRIKT"`}},
		{"missing-kind.yaml", errWant{7, "", "document has no kind"}},
		{"alias.yaml", errWant{7, "data.b[0]", "YAML aliases are not allowed"}},
		{"malformed.yaml", errWant{9, "", "invalid YAML"}},
		{"metadata-typo.yaml", errWant{5, "metadata.namespce", `unknown field "namespce" (did you mean "namespace"?)`}},
		{"pod-unknown-field.yaml", errWant{10, "spec.containers[1].imagee", `unknown field "imagee"`}},
		{"pod-wrong-type.yaml", errWant{11, "spec.containers[0].env[0].value", "expected a string, got an integer (8080)"}},
		{"missing-name.yaml", errWant{3, "metadata.name", "a name is required"}},
		{"unknown-field.json", errWant{9, "spec.jwtRules[0].jwksURI", `unknown field "jwksURI" (did you mean "jwksUri"?)`}},
		{"oneof.yaml", errWant{11, "spec.http[0].match[0].uri.prefix", `only one of the fields of oneof "match_type" may be set ("exact" already set at line 10)`}},
		{"bad-quantity.yaml", errWant{15, "spec.template.spec.containers[0].resources.limits.memory", "invalid value for resource.Quantity"}},
		{"top-level-typo.yaml", errWant{5, "specs", `unknown field "specs" (did you mean "spec"?)`}},
		{"bad-duration.yaml", errWant{10, "spec.http[0].timeout", `invalid duration "5 seconds"`}},
		{"port-out-of-range.yaml", errWant{7, "spec.servers[0].port.number", "expected a 32-bit unsigned integer, got an integer (-443)"}},
		{"merge-key.yaml", errWant{4, "metadata", "merge keys"}},
		{"list-item-error.yaml", errWant{16, "items[1].spec.portLevelMtls.http", `invalid map key "http"`}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			file := filepath.Join("testdata", "invalid", tc.file)
			objs, st, err := Decode(file, readFixture(t, file))
			checkErr(t, err, tc.want)
			if objs != nil || st.Decoded != 0 || st.Ignored != nil {
				t.Errorf("partial result returned with error: %v %v", objs, st)
			}
			var de *Error
			if errors.As(err, &de) && de.File != file {
				t.Errorf("File = %q, want %q", de.File, file)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	cases := []struct {
		err  *Error
		want string
	}{
		{&Error{File: "a.yaml", Line: 3, Path: "spec.x", Msg: `unknown field "x"`}, `a.yaml:3: field spec.x: unknown field "x"`},
		{&Error{File: "a.yaml", Msg: "permission denied"}, "a.yaml: permission denied"},
		{&Error{Line: 7, Msg: "boom"}, "line 7: boom"},
		{&Error{File: "-", Line: 2, Msg: "boom"}, "<stdin>:2: boom"},
		{&Error{Path: "metadata.name", Msg: "required"}, "field metadata.name: required"},
	}
	for _, tc := range cases {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
	if got := (Source{File: "x.yaml", Line: 4}).String(); got != "x.yaml:4" {
		t.Errorf("Source.String() = %q", got)
	}
	wrapped := fmt.Errorf("loading: %w", &Error{Msg: "x", Err: ErrUnknownKind})
	if !errors.Is(wrapped, ErrUnknownKind) {
		t.Error("Error does not unwrap to its cause")
	}
}
