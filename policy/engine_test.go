package policy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/modelguard/modelguard/policy"
	"github.com/modelguard/modelguard/policy/decode"
)

// caseHeader is the first document of a file in testdata/cases: what to load and what the
// engine must answer. The other documents are objects that add to, or replace, the included
// mesh state.
type caseHeader struct {
	APIVersion  string       `json:"apiVersion"`
	Kind        string       `json:"kind"`
	Description string       `json:"description"`
	Include     []string     `json:"include"`
	Exclude     []string     `json:"exclude"` // "Kind ns/name" of included objects to drop
	Config      string       `json:"config"`
	Simulate    bool         `json:"simulateMutation"`
	Expect      []caseExpect `json:"expect"`
}

type caseExpect struct {
	Subject  string   `json:"subject"`  // "Kind ns/name"
	Decision string   `json:"decision"` // allowed, denied, warned, audited
	Exposed  *bool    `json:"exposed"`
	Codes    []string `json:"codes"` // the exact set of error and warning codes
	Info     []string `json:"info"`  // info codes that must be present
	Mention  []string `json:"mention"`
	Absent   []string `json:"absent"` // text that must appear in no finding
}

func TestCases(t *testing.T) {
	files, err := filepath.Glob("testdata/cases/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) { runCase(t, f) })
	}
}

func runCase(t *testing.T, file string) {
	hdr, objs := loadCase(t, file)
	cfg := policy.DefaultConfig()
	if hdr.Config != "" {
		var err error
		cfg, err = policy.ParseConfig(file+"#config", []byte(hdr.Config))
		require.NoError(t, err)
	}
	snap := policy.NewSnapshot(cfg)
	for _, o := range objs {
		require.NoError(t, snap.Upsert(o))
	}
	require.NotEmpty(t, hdr.Expect, "a case must expect something")
	for _, exp := range hdr.Expect {
		subj := findObject(objs, exp.Subject)
		require.NotNil(t, subj, "subject %q not among the case's objects", exp.Subject)
		v := policy.Evaluate(cfg, snap, subj, policy.Options{SimulateMutation: hdr.Simulate})
		checkVerdict(t, exp, v)
	}
}

func checkVerdict(t *testing.T, exp caseExpect, v policy.Verdict) {
	t.Helper()
	dump := renderFindings(v)
	assert.Equal(t, exp.Decision, v.Decision(), "%s: decision\n%s", exp.Subject, dump)
	if exp.Exposed != nil {
		assert.Equal(t, *exp.Exposed, v.Exposed, "%s: exposed", exp.Subject)
	}
	var codes, info []string
	for _, f := range v.Findings {
		if f.Severity == policy.SeverityInfo {
			info = append(info, string(f.Code))
		} else if !slices.Contains(codes, string(f.Code)) {
			codes = append(codes, string(f.Code))
		}
	}
	sort.Strings(codes)
	want := append([]string{}, exp.Codes...)
	sort.Strings(want)
	assert.Equal(t, want, codesOrEmpty(codes), "%s: error and warning codes\n%s", exp.Subject, dump)
	for _, c := range exp.Info {
		assert.Contains(t, info, c, "%s: info code\n%s", exp.Subject, dump)
	}
	for _, m := range exp.Mention {
		assert.Contains(t, dump, m, "%s: findings should mention it", exp.Subject)
	}
	for _, m := range exp.Absent {
		assert.NotContains(t, dump, m, "%s: findings should not mention it", exp.Subject)
	}
}

func codesOrEmpty(c []string) []string {
	if c == nil {
		return []string{}
	}
	return c
}

func renderFindings(v policy.Verdict) string {
	var b strings.Builder
	for _, f := range v.Findings {
		fmt.Fprintf(&b, "  %s %s: %s\n    route: %s\n", f.Severity, f.Code, f.Message, f.Route)
	}
	return b.String()
}

// loadCase reads a case file and its includes; objects of the case replace included ones.
func loadCase(t *testing.T, file string) (caseHeader, []client.Object) {
	t.Helper()
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	first, _, _ := strings.Cut(string(data), "\n---")
	var hdr caseHeader
	require.NoError(t, yaml.UnmarshalStrict([]byte(first), &hdr), "case header")
	require.Equal(t, "Case", hdr.Kind)
	var objs []client.Object
	for _, inc := range hdr.Include {
		objs = append(objs, decodeFile(t, filepath.Join("testdata", inc))...)
	}
	for _, o := range decodeFile(t, file) {
		objs = slices.DeleteFunc(objs, func(x client.Object) bool { return objectKey(x) == objectKey(o) })
		objs = append(objs, o)
	}
	for _, ex := range hdr.Exclude {
		n := len(objs)
		objs = slices.DeleteFunc(objs, func(x client.Object) bool { return objectKey(x) == ex })
		require.Less(t, len(objs), n, "exclude %q matched nothing", ex)
	}
	return hdr, objs
}

func decodeFile(t *testing.T, path string) []client.Object {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	docs, _, err := decode.Decode(path, data)
	require.NoError(t, err)
	out := make([]client.Object, 0, len(docs))
	for _, d := range docs {
		if d.Obj.GetNamespace() == "" && d.Kind != "Namespace" {
			d.Obj.SetNamespace("default")
		}
		out = append(out, d.Obj)
	}
	return out
}

func objectKey(o client.Object) string {
	return o.GetObjectKind().GroupVersionKind().Kind + " " + o.GetNamespace() + "/" + o.GetName()
}

func findObject(objs []client.Object, key string) client.Object {
	for _, o := range objs {
		if objectKey(o) == key {
			return o
		}
	}
	return nil
}
