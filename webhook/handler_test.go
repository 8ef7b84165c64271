package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/modelguard/modelguard/policy"
	"github.com/modelguard/modelguard/policy/decode"
)

// fixture is a handler wired to a snapshot of the engine's test meshes, a config, a buffer
// for audit lines, a fresh metrics registry and a fake event recorder.
type fixture struct {
	validator *Validator
	mutator   *Mutator
	audit     *bytes.Buffer
	metrics   *Metrics
	events    *events.FakeRecorder
	mesh      *fakeMesh

	guardHandler *Guard
}

type fakeMesh struct {
	snap *policy.Snapshot
	err  error
}

func (f *fakeMesh) Snapshot() (*policy.Snapshot, error) { return f.snap, f.err }

func newFixture(t *testing.T, configFile string, meshFiles ...string) *fixture {
	t.Helper()
	audit := &bytes.Buffer{}
	log := slog.New(slog.NewJSONHandler(audit, nil))
	m := NewMetrics(prometheus.NewRegistry())
	path := ""
	if configFile != "" {
		path = filepath.Join("testdata", configFile)
	}
	cfg, err := NewConfigStore(path, log, m)
	require.NoError(t, err)
	snap := policy.NewSnapshot(cfg.Get())
	for _, f := range meshFiles {
		data, err := os.ReadFile(filepath.Join("..", "policy", "testdata", "mesh", f))
		require.NoError(t, err)
		objs, _, err := decode.Decode(f, data)
		require.NoError(t, err)
		for _, o := range objs {
			require.NoError(t, snap.Upsert(o.Obj))
		}
	}
	rec := events.NewFakeRecorder(10)
	a := &Auditor{Log: log, Metrics: m, Recorder: rec}
	mesh := &fakeMesh{snap: snap}
	return &fixture{validator: &Validator{Config: cfg, Mesh: mesh, Audit: a}, mutator: &Mutator{Config: cfg, Mesh: mesh, Audit: a},
		audit: audit, metrics: m, events: rec, mesh: mesh}
}

// request builds an AdmissionRequest for the object in a testdata YAML file.
func request(t *testing.T, op admissionv1.Operation, file string, mutate ...func(map[string]any)) admission.Request {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", file))
	require.NoError(t, err)
	var obj map[string]any
	require.NoError(t, yaml.Unmarshal(data, &obj))
	for _, m := range mutate {
		m(obj)
	}
	raw, err := json.Marshal(obj)
	require.NoError(t, err)
	return rawRequest(op, obj, raw)
}

func rawRequest(op admissionv1.Operation, obj map[string]any, raw []byte) admission.Request {
	md, _ := obj["metadata"].(map[string]any)
	apiVersion, _ := obj["apiVersion"].(string)
	group, version, _ := strings.Cut(apiVersion, "/")
	kind, _ := obj["kind"].(string)
	name, _ := md["name"].(string)
	ns, _ := md["namespace"].(string)
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "uid-1", Kind: metav1.GroupVersionKind{Group: group, Version: version, Kind: kind},
		Name: name, Namespace: ns, Operation: op, Object: runtime.RawExtension{Raw: raw},
		UserInfo: authenticationv1.UserInfo{Username: "alice", Groups: []string{"ml-team"}},
	}}
}

// auditLines parses the JSON audit lines written so far.
func (f *fixture) auditLines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(f.audit.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		out = append(out, m)
	}
	return out
}

func TestValidatorDeniesUncoveredExposure(t *testing.T) {
	f := newFixture(t, "", "seldon.yaml", "seldon-seed-policies.yaml")
	resp := f.validator.Handle(context.Background(), request(t, admissionv1.Create, "seldon-uncovered-vs.yaml"))

	require.False(t, resp.Allowed)
	assert.EqualValues(t, http.StatusForbidden, resp.Result.Code)
	msg := resp.Result.Message
	assert.Contains(t, msg, `modelguard denied VirtualService seldon-mesh/iris-route (rule "default", Enforce)`)
	assert.Contains(t, msg, "[JWT_ROUTE_UNCOVERED]")
	assert.Contains(t, msg, "route: gateway istio-system/seldon-gateway")
	assert.Contains(t, msg, "[MTLS_NOT_STRICT]")
	assert.Contains(t, msg, "fix:\n  apiVersion: security.istio.io/v1")
	assert.Less(t, len(msg), 12000, "kubectl shows the message whole")
	assert.Equal(t, "denied", resp.AuditAnnotations[AuditDecision])
	assert.Contains(t, resp.AuditAnnotations[AuditCodes], "JWT_ROUTE_UNCOVERED")

	lines := f.auditLines(t)
	require.Len(t, lines, 1)
	l := lines[0]
	for _, k := range []string{"time", "level", "msg", "uid", "operation", "kind", "namespace", "name", "user", "groups", "dryRun", "decision", "mode", "rule", "codes", "findings"} {
		assert.Contains(t, l, k, "audit line field")
	}
	assert.Equal(t, "admission", l["msg"])
	assert.Equal(t, "denied", l["decision"])
	assert.Equal(t, "alice", l["user"])
	assert.Equal(t, false, l["dryRun"])
	assert.Contains(t, l["codes"], "JWT_ROUTE_UNCOVERED")

	assert.Equal(t, 1.0, testutil.ToFloat64(f.metrics.Decisions.WithLabelValues("VirtualService", "CREATE", "denied")))
	assert.GreaterOrEqual(t, testutil.ToFloat64(f.metrics.Findings.WithLabelValues("JWT_ROUTE_UNCOVERED")), 1.0)
	assert.Equal(t, 1, testutil.CollectAndCount(f.metrics.Duration))
	require.Len(t, f.events.Events, 1)
	assert.Contains(t, <-f.events.Events, "Warning ExposureDenied")
}

func TestValidatorDryRunHasNoSideEffects(t *testing.T) {
	f := newFixture(t, "", "seldon.yaml", "seldon-seed-policies.yaml")
	req := request(t, admissionv1.Create, "seldon-uncovered-vs.yaml")
	dry := true
	req.DryRun = &dry
	resp := f.validator.Handle(context.Background(), req)
	assert.False(t, resp.Allowed, "server-side dry-run gets the same verdict")
	assert.Equal(t, true, f.auditLines(t)[0]["dryRun"])
	assert.Empty(t, f.events.Events, "no Event on dry-run")
}

func TestValidatorModes(t *testing.T) {
	t.Run("allowed: nothing exposed, nothing logged", func(t *testing.T) {
		f := newFixture(t, "", "seldon.yaml")
		resp := f.validator.Handle(context.Background(), request(t, admissionv1.Create, "seldon-internal-vs.yaml"))
		assert.True(t, resp.Allowed)
		assert.Empty(t, resp.Warnings)
		assert.Empty(t, f.audit.String())
		assert.Equal(t, 1.0, testutil.ToFloat64(f.metrics.Decisions.WithLabelValues("VirtualService", "CREATE", "allowed")))
	})
	t.Run("Warn admits with kubectl warnings", func(t *testing.T) {
		f := newFixture(t, "config-warn.yaml", "seldon.yaml", "seldon-seed-policies.yaml")
		resp := f.validator.Handle(context.Background(), request(t, admissionv1.Create, "seldon-uncovered-vs.yaml"))
		assert.True(t, resp.Allowed)
		require.NotEmpty(t, resp.Warnings)
		total := 0
		for _, w := range resp.Warnings {
			assert.LessOrEqual(t, len(w), 256, "the API server truncates longer warnings")
			total += len(w)
		}
		assert.Less(t, total, 4096)
		assert.Contains(t, resp.Warnings[0], "[JWT_ROUTE_UNCOVERED]")
		assert.Equal(t, "warned", resp.AuditAnnotations[AuditDecision])
		assert.Equal(t, "warned", f.auditLines(t)[0]["decision"])
	})
	t.Run("Audit admits silently and logs", func(t *testing.T) {
		f := newFixture(t, "config-audit.yaml", "seldon.yaml", "seldon-seed-policies.yaml")
		resp := f.validator.Handle(context.Background(), request(t, admissionv1.Create, "seldon-uncovered-vs.yaml"))
		assert.True(t, resp.Allowed)
		assert.Empty(t, resp.Warnings)
		assert.Equal(t, "audited", f.auditLines(t)[0]["decision"])
		assert.Equal(t, "Audit", f.auditLines(t)[0]["mode"])
	})
}

func TestValidatorUpdates(t *testing.T) {
	f := newFixture(t, "", "kserve.yaml")
	private := request(t, admissionv1.Create, "isvc-private.yaml")
	public := request(t, admissionv1.Create, "isvc-public.yaml")

	// Dropping the cluster-local label exposes the model: judged, denied.
	upd := public
	upd.Operation, upd.OldObject = admissionv1.Update, private.Object
	assert.False(t, f.validator.Handle(context.Background(), upd).Allowed)

	// A metadata-only update of an uncovered model (a controller adding a finalizer) passes,
	// with a warning: a controller must always be able to finish its work.
	fin := request(t, admissionv1.Update, "isvc-public.yaml", func(o map[string]any) {
		o["metadata"].(map[string]any)["finalizers"] = []any{"serving.kserve.io/finalizer"}
	})
	fin.OldObject = public.Object
	resp := f.validator.Handle(context.Background(), fin)
	assert.True(t, resp.Allowed)
	require.NotEmpty(t, resp.Warnings)
	assert.Contains(t, resp.Warnings[0], "changes nothing modelguard judges")

	// An object being deleted passes too.
	del := request(t, admissionv1.Update, "isvc-public.yaml", func(o map[string]any) {
		o["metadata"].(map[string]any)["deletionTimestamp"] = "2026-11-25T08:00:00Z"
		o["spec"].(map[string]any)["predictor"] = map[string]any{"minReplicas": 0}
	})
	del.OldObject = public.Object
	assert.True(t, f.validator.Handle(context.Background(), del).Allowed)
}

func TestValidatorBadInput(t *testing.T) {
	f := newFixture(t, "", "kserve.yaml")
	vs := request(t, admissionv1.Create, "seldon-internal-vs.yaml")
	huge := vs
	huge.Object.Raw = append([]byte(`{"pad":"`), append(bytes.Repeat([]byte("x"), MaxObjectBytes), []byte(`"}`)...)...)
	pod := vs
	pod.Kind = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	empty := vs
	empty.Object.Raw = nil
	truncated := vs
	truncated.Object.Raw = vs.Object.Raw[:len(vs.Object.Raw)/2]
	wrongKind := vs
	wrongKind.Object.Raw = request(t, admissionv1.Create, "isvc-private.yaml").Object.Raw

	for name, tc := range map[string]struct {
		req  admission.Request
		code int32
		want string
	}{
		"over 3 MiB":             {huge, http.StatusRequestEntityTooLarge, "more than modelguard reads"},
		"kind not owned":         {pod, http.StatusBadRequest, "does not handle Pod"},
		"no object":              {empty, http.StatusBadRequest, "carries no object"},
		"truncated JSON":         {truncated, http.StatusBadRequest, "VirtualService seldon-mesh/internal"},
		"object of another kind": {wrongKind, http.StatusBadRequest, "but it carries a InferenceService.serving.kserve.io"},
		"unknown field (typo)":   {request(t, admissionv1.Create, "vs-typo.yaml"), http.StatusBadRequest, `unknown field "gatways"`},
	} {
		t.Run(name, func(t *testing.T) {
			resp := f.validator.Handle(context.Background(), tc.req)
			assert.False(t, resp.Allowed, "bad input is never admitted")
			assert.Equal(t, tc.code, resp.Result.Code)
			assert.Contains(t, resp.Result.Message, tc.want)
		})
	}
	assert.Equal(t, 6.0, testutil.ToFloat64(f.metrics.Decisions.WithLabelValues("VirtualService", "CREATE", "errored"))+
		testutil.ToFloat64(f.metrics.Decisions.WithLabelValues("other", "CREATE", "errored")), "a kind no handler owns is counted as other")
}

func TestValidatorFailsClosedWithoutMeshState(t *testing.T) {
	f := newFixture(t, "", "kserve.yaml")
	f.mesh.err = ErrNotReady
	resp := f.validator.Handle(context.Background(), request(t, admissionv1.Create, "isvc-private.yaml"))
	assert.False(t, resp.Allowed, "never an allow without the mesh state, even for a private model")
	assert.EqualValues(t, http.StatusServiceUnavailable, resp.Result.Code)
	assert.Contains(t, resp.Result.Message, "MESH_STATE_UNAVAILABLE")
}

func TestMutatorPlansAnnotations(t *testing.T) {
	f := newFixture(t, "config-inject.yaml", "kserve.yaml")
	req := request(t, admissionv1.Create, "isvc-private.yaml")
	resp := f.mutator.Handle(context.Background(), req)
	require.True(t, resp.Allowed)
	patched := applyPatch(t, req.Object.Raw, resp)
	ann := annotationsOf(t, patched)
	assert.Equal(t, "true", ann[policy.AnnotationInject])
	assert.Equal(t, "https://issuer.example.com", ann[policy.AnnotationIssuer])
	assert.Equal(t, "models", ann[policy.AnnotationAudiences])
	assert.Equal(t, "inject", ann[policy.AnnotationRule])

	// A second pass changes nothing (reinvocationPolicy IfNeeded relies on it).
	again := req
	again.Object.Raw = patched
	resp = f.mutator.Handle(context.Background(), again)
	assert.True(t, resp.Allowed)
	assert.Empty(t, resp.Patches)

	// The validator counts the planned policies once the annotations equal the plan.
	v := f.validator.Handle(context.Background(), again)
	assert.NotContains(t, v.AuditAnnotations[AuditCodes], "ANNOTATIONS_DIFFER_FROM_PLAN")
	assert.NotContains(t, v.AuditAnnotations[AuditCodes], "JWT_ROUTE_UNCOVERED", "the planned policies cover the route")
}

// kubectl create with generateName: mutating admission runs before the API server picks the
// name, so the mutator plans the annotations (which do not depend on the name); validating
// admission, which always sees a name, refuses an object without one.
func TestGenerateName(t *testing.T) {
	f := newFixture(t, "config-inject.yaml", "kserve.yaml")
	req := request(t, admissionv1.Create, "isvc-private.yaml", func(o map[string]any) {
		md := o["metadata"].(map[string]any)
		delete(md, "name")
		md["generateName"] = "sklearn-"
	})
	resp := f.mutator.Handle(context.Background(), req)
	require.True(t, resp.Allowed, "%v", resp.Result)
	assert.Equal(t, "true", annotationsOf(t, applyPatch(t, req.Object.Raw, resp))[policy.AnnotationInject])

	v := f.validator.Handle(context.Background(), req)
	assert.False(t, v.Allowed)
	assert.Contains(t, v.Result.Message, "has no name")
}

func TestMutatorOverwritesContradictions(t *testing.T) {
	f := newFixture(t, "config-inject.yaml", "kserve.yaml")
	req := request(t, admissionv1.Create, "isvc-private.yaml", func(o map[string]any) {
		o["metadata"].(map[string]any)["annotations"] = map[string]any{policy.AnnotationIssuer: "https://evil.example.org", "team": "ml"}
	})
	resp := f.mutator.Handle(context.Background(), req)
	require.True(t, resp.Allowed)
	ann := annotationsOf(t, applyPatch(t, req.Object.Raw, resp))
	assert.Equal(t, "https://issuer.example.com", ann[policy.AnnotationIssuer])
	assert.Equal(t, "ml", ann["team"], "other annotations are kept")
	require.NotEmpty(t, resp.Warnings)
	assert.Contains(t, resp.Warnings[0], "evil.example.org")
	assert.Equal(t, "warned", f.auditLines(t)[0]["decision"])

	// Without an inject rule, hand-set modelguard annotations are removed.
	plain := newFixture(t, "", "kserve.yaml")
	resp = plain.mutator.Handle(context.Background(), req)
	ann = annotationsOf(t, applyPatch(t, req.Object.Raw, resp))
	assert.NotContains(t, ann, policy.AnnotationIssuer)
	assert.Equal(t, "ml", ann["team"])
}

func TestMutatorLeavesObjectsAloneWhenNotReady(t *testing.T) {
	f := newFixture(t, "config-inject.yaml", "kserve.yaml")
	f.mesh.err = ErrNotReady
	resp := f.mutator.Handle(context.Background(), request(t, admissionv1.Create, "isvc-private.yaml"))
	assert.False(t, resp.Allowed, "an error response; with failurePolicy Ignore the validator decides")
	assert.True(t, errors.Is(f.mesh.err, ErrNotReady))
}

func applyPatch(t *testing.T, raw []byte, resp admission.Response) []byte {
	t.Helper()
	if len(resp.Patches) == 0 {
		return raw
	}
	ops, err := json.Marshal(resp.Patches)
	require.NoError(t, err)
	p, err := jsonpatch.DecodePatch(ops)
	require.NoError(t, err)
	out, err := p.Apply(raw)
	require.NoError(t, err)
	return out
}

func annotationsOf(t *testing.T, raw []byte) map[string]string {
	t.Helper()
	var o struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	require.NoError(t, json.Unmarshal(raw, &o))
	return o.Metadata.Annotations
}
