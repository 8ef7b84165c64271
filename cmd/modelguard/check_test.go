package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/modelguard/modelguard/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// inputDir is the golden scenario: a Seldon model published on an external gateway whose
// JWT policy covers the REST route but not the gRPC one, and a cluster-local KServe model.
const inputDir = "testdata/input"

// checkRun is the outcome of one in-process run of `modelguard check`.
type checkRun struct {
	code           int
	stdout, stderr string
}

func check(t testing.TB, stdin string, args ...string) checkRun {
	t.Helper()
	var out, errOut bytes.Buffer
	code := runCheck(args, strings.NewReader(stdin), &out, &errOut)
	return checkRun{code: code, stdout: out.String(), stderr: errOut.String()}
}

func TestGolden(t *testing.T) {
	defer func(v string) { version = v }(version)
	version = "dev" // the SARIF driver names the version
	for _, format := range []string{"text", "json", "sarif"} {
		t.Run(format, func(t *testing.T) {
			r := check(t, "", "-f", inputDir, "-o", format)
			if r.code != exitDenied {
				t.Fatalf("exit code %d, want %d (the gRPC route is uncovered); stderr:\n%s", r.code, exitDenied, r.stderr)
			}
			if r.stderr != "" {
				t.Errorf("unexpected stderr:\n%s", r.stderr)
			}
			ext := map[string]string{"text": "txt", "json": "json", "sarif": "sarif"}[format]
			compareGolden(t, filepath.Join("testdata", "check."+ext), r.stdout)
		})
	}
}

func compareGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run `go test ./cmd/modelguard -update` to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run `go test ./cmd/modelguard -update` to accept it):\n%s", path, lineDiff(string(want), got))
	}
}

// lineDiff shows the first differing line with a little context.
func lineDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return "line " + strconv.Itoa(i+1) + ":\n  want: " + w + "\n  got:  " + g
		}
	}
	return "(no line differs)"
}

func TestJSONShape(t *testing.T) {
	r := check(t, "", "-f", inputDir, "-o", "json")
	var rep struct {
		Results []map[string]json.RawMessage `json:"results"`
		Summary map[string]int               `json:"summary"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, r.stdout)
	}
	wantKeys := []string{"kind", "apiVersion", "namespace", "name", "source", "allowed", "mode", "findings"}
	var kinds []string
	for i, res := range rep.Results {
		for _, k := range wantKeys {
			if _, ok := res[k]; !ok {
				t.Errorf("results[%d] has no %q", i, k)
			}
		}
		if len(res) != len(wantKeys) {
			t.Errorf("results[%d] has %d keys, want %d", i, len(res), len(wantKeys))
		}
		if string(res["findings"]) == "null" {
			t.Errorf("results[%d].findings is null, want an array", i)
		}
		var fs []map[string]any
		if err := json.Unmarshal(res["findings"], &fs); err != nil {
			t.Fatal(err)
		}
		for j, f := range fs {
			for _, k := range []string{"code", "severity", "message", "route", "fix"} {
				if _, ok := f[k]; !ok {
					t.Errorf("results[%d].findings[%d] has no %q", i, j, k)
				}
			}
		}
		var kind string
		json.Unmarshal(res["kind"], &kind)
		kinds = append(kinds, kind)
	}
	// Input order: ml.yaml, then seldon-mesh.yaml (Model before VirtualService).
	if got, want := strings.Join(kinds, ","), "InferenceService,Model,VirtualService"; got != want {
		t.Errorf("results in order %s, want %s", got, want)
	}
	if rep.Summary["checked"] != 3 || rep.Summary["denied"] != 2 || rep.Summary["warned"] != 0 {
		t.Errorf("summary %v, want checked 3, denied 2, warned 0", rep.Summary)
	}
}

func TestSARIFShape(t *testing.T) {
	r := check(t, "", "-f", inputDir, "-o", "sarif")
	var log struct {
		Version string `json:"version"`
		Schema  string `json:"$schema"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Name           string `json:"name"`
					InformationURI string `json:"informationUri"`
					Rules          []struct {
						ID               string `json:"id"`
						ShortDescription struct {
							Text string `json:"text"`
						} `json:"shortDescription"`
						FullDescription struct {
							Text string `json:"text"`
						} `json:"fullDescription"`
						DefaultConfiguration struct {
							Level string `json:"level"`
						} `json:"defaultConfiguration"`
					} `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID    string `json:"ruleId"`
				RuleIndex *int   `json:"ruleIndex"`
				Level     string `json:"level"`
				Message   struct {
					Text string `json:"text"`
				} `json:"message"`
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct {
							URI string `json:"uri"`
						} `json:"artifactLocation"`
						Region struct {
							StartLine int `json:"startLine"`
						} `json:"region"`
					} `json:"physicalLocation"`
				} `json:"locations"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &log); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, r.stdout)
	}
	if log.Version != "2.1.0" {
		t.Errorf("version %q, want 2.1.0", log.Version)
	}
	if !strings.Contains(log.Schema, "sarif-schema-2.1.0") {
		t.Errorf("$schema %q does not name the SARIF 2.1.0 schema", log.Schema)
	}
	if len(log.Runs) != 1 {
		t.Fatalf("%d runs, want 1", len(log.Runs))
	}
	run := log.Runs[0]
	d := run.Tool.Driver
	if d.Name != "modelguard" || d.InformationURI != "https://github.com/modelguard/modelguard" {
		t.Errorf("driver %q %q", d.Name, d.InformationURI)
	}
	if len(d.Rules) != len(policy.Catalogue) {
		t.Fatalf("%d rules, want one per catalogue entry (%d)", len(d.Rules), len(policy.Catalogue))
	}
	levels := map[policy.Severity]string{policy.SeverityError: "error", policy.SeverityWarning: "warning", policy.SeverityInfo: "note"}
	for i, e := range policy.Catalogue {
		rule := d.Rules[i]
		if rule.ID != string(e.Code) || rule.ShortDescription.Text != e.Title || rule.FullDescription.Text != e.Meaning || rule.DefaultConfiguration.Level != levels[e.Severity] {
			t.Errorf("rules[%d] = %+v, does not match catalogue entry %s", i, rule, e.Code)
		}
	}
	if len(run.Results) == 0 {
		t.Fatal("no results; the scenario has an uncovered gRPC route")
	}
	for i, res := range run.Results {
		if res.RuleIndex == nil || *res.RuleIndex < 0 || *res.RuleIndex >= len(d.Rules) || d.Rules[*res.RuleIndex].ID != res.RuleID {
			t.Errorf("results[%d]: ruleIndex does not point at rule %s", i, res.RuleID)
		}
		if res.Level != "error" && res.Level != "warning" {
			t.Errorf("results[%d]: level %q, want error or warning", i, res.Level)
		}
		if res.Message.Text == "" {
			t.Errorf("results[%d]: empty message", i)
		}
		if len(res.Locations) != 1 {
			t.Fatalf("results[%d]: %d locations, want 1", i, len(res.Locations))
		}
		pl := res.Locations[0].PhysicalLocation
		if !strings.HasPrefix(pl.ArtifactLocation.URI, "testdata/input/") || pl.Region.StartLine < 1 {
			t.Errorf("results[%d]: location %+v, want a relative testdata/input/ path and a line", i, pl)
		}
	}
}

func TestExitCodeClean(t *testing.T) {
	r := check(t, "", "-f", filepath.Join(inputDir, "ml.yaml"))
	if r.code != exitOK {
		t.Fatalf("exit code %d, want 0; stdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	want := "InferenceService ml/sklearn-iris (testdata/input/ml.yaml:2): ALLOWED [Enforce, default]\n\nchecked 1, denied 0, warned 0\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
}

func TestExitCodeDeniedWithSeveralPaths(t *testing.T) {
	r := check(t, "", "-f", filepath.Join(inputDir, "istio-system.yaml"), "-f", filepath.Join(inputDir, "seldon-mesh.yaml"), "-o", "json")
	if r.code != exitDenied {
		t.Fatalf("exit code %d, want 1; stderr:\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, `"denied": 2`) {
		t.Errorf("want 2 denied:\n%s", r.stdout)
	}
}

// writeFile writes a file into a fresh temporary directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const goodService = `apiVersion: v1
kind: Service
metadata:
  name: a
  namespace: ml
spec:
  selector:
    app: a
`

func TestInputErrors(t *testing.T) {
	isvc, err := os.ReadFile(filepath.Join(inputDir, "ml.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	malformed := writeFile(t, "malformed.yaml", goodService+"---\napiVersion: v1\nkind: Service\nmetadata:\n  name: b: c\n")
	unknownField := writeFile(t, "unknown.yaml", goodService+"---\n"+`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: vs
  namespace: ml
spec:
  hosts: [a.example.com]
  gatways: [istio-system/public]
`)
	// A malformed document after a judgeable object: no partial report.
	partial := writeFile(t, "partial.yaml", string(isvc)+"---\nkind: [\n")
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	badModel := writeFile(t, "model.yaml", "apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata: {name: iris, namespace: ml}\nspec:\n  storageUri: 5\n")
	badConfig := writeFile(t, "guard.yaml", "apiVersion: modelguard.io/v1alpha1\nkind: GuardConfig\nrules:\n- name: default\n  namespaceSelector: {}\n  mdoe: Enforce\n")

	for _, tc := range []struct {
		name string
		args []string
		want []string // substrings of stderr
	}{
		{"malformed YAML", []string{"-f", malformed}, []string{malformed + ":13"}},
		{"unknown field", []string{"-f", unknownField}, []string{unknownField + ":17", "gatways"}},
		{"malformed after good document", []string{"-f", partial}, []string{partial + ":"}},
		{"missing file", []string{"-f", missing}, []string{missing}},
		{"Model field of the wrong type", []string{"-f", badModel}, []string{badModel + ":1", "spec.storageUri: must be a string, not a number"}},
		{"bad flag", []string{"-f", inputDir, "--frobnicate"}, []string{"frobnicate", "Usage:"}},
		{"bad output format", []string{"-f", inputDir, "-o", "yaml"}, []string{`"yaml"`}},
		{"no -f", nil, []string{"-f PATH"}},
		{"positional argument", []string{inputDir}, []string{inputDir, "-f"}},
		{"bad config", []string{"-f", inputDir, "--config", badConfig}, []string{badConfig + ":6", "mdoe"}},
		{"missing config", []string{"-f", inputDir, "--config", missing}, []string{missing}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := check(t, "", tc.args...)
			if r.code != exitUsage {
				t.Errorf("exit code %d, want 2", r.code)
			}
			if r.stdout != "" {
				t.Errorf("wrote a report on an input error:\n%s", r.stdout)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not contain %q:\n%s", w, r.stderr)
				}
			}
		})
	}
}

func TestStdin(t *testing.T) {
	in, err := os.ReadFile(filepath.Join(inputDir, "seldon-mesh.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := os.ReadFile(filepath.Join(inputDir, "istio-system.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The mesh state from a file, the objects to judge from stdin.
	r := check(t, string(in), "-f", filepath.Join(inputDir, "istio-system.yaml"), "-f", "-", "-o", "json")
	if r.code != exitDenied {
		t.Fatalf("exit code %d, want 1; stderr:\n%s", r.code, r.stderr)
	}
	var rep jsonOut
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 2 || rep.Results[0].Source != "<stdin>:2" || rep.Results[1].Kind != "VirtualService" {
		t.Errorf("results %+v, want the Model at <stdin>:2 then the VirtualService", rep.Results)
	}
	// Everything from stdin gives the same verdicts as from files.
	all := check(t, string(gw)+"---\n"+string(in), "-f", "-", "-o", "json")
	if all.code != exitDenied || strings.Count(all.stdout, `"allowed": false`) != 2 {
		t.Errorf("all on stdin: exit %d\n%s%s", all.code, all.stdout, all.stderr)
	}
}

type jsonOut struct {
	Results []struct {
		Kind   string `json:"kind"`
		Source string `json:"source"`
	} `json:"results"`
}

// openRoute is an InferenceService and a VirtualService without namespaces; the route has
// no URI match and its gateway is not in the input, so it is judged with info findings.
const openRoute = `apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: m
  labels:
    networking.kserve.io/visibility: cluster-local
spec:
  predictor:
    model:
      modelFormat: {name: sklearn}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: vs
spec:
  hosts: [m.example.com]
  gateways: [istio-system/public]
  http:
  - route:
    - destination:
        host: m-predictor
`

func TestDefaultNamespace(t *testing.T) {
	// Objects without a namespace live in "default", and routes resolve short hosts there.
	r := check(t, openRoute, "-f", "-")
	if !strings.Contains(r.stdout, "InferenceService default/m (<stdin>:1)") || !strings.Contains(r.stdout, "VirtualService default/vs (<stdin>:12)") {
		t.Errorf("objects not defaulted to namespace default:\n%s%s", r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "m-predictor.default.svc.cluster.local") {
		t.Errorf("the route's destination was not resolved in namespace default:\n%s", r.stdout)
	}
}

func TestVerbose(t *testing.T) {
	in := `apiVersion: v1
kind: ConfigMap
metadata:
  name: c
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: d
`
	cms := writeFile(t, "configmaps.yaml", in)
	quiet := check(t, openRoute, "-f", cms, "-f", "-")
	loud := check(t, openRoute, "-f", cms, "-f", "-", "-v")
	if strings.Contains(quiet.stderr, "ConfigMap") {
		t.Errorf("ignored kinds reported without -v:\n%s", quiet.stderr)
	}
	if !strings.Contains(loud.stderr, "ignored 2 objects of kind v1/ConfigMap") {
		t.Errorf("-v does not count the ignored kinds:\n%s", loud.stderr)
	}
	if strings.Contains(quiet.stdout, "  info ") {
		t.Errorf("info findings shown without -v:\n%s", quiet.stdout)
	}
	if !strings.Contains(loud.stdout, "  info ") {
		t.Errorf("no info finding shown with -v:\n%s", loud.stdout)
	}
}

func TestHelp(t *testing.T) {
	r := check(t, "", "-h")
	if r.code != exitOK || !strings.Contains(r.stderr, "Usage: modelguard check") {
		t.Errorf("check -h: exit %d\n%s", r.code, r.stderr)
	}
}

func TestNothingToJudge(t *testing.T) {
	r := check(t, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n", "-f", "-")
	if r.code != exitOK || r.stdout != "checked 0, denied 0, warned 0\n" || !strings.Contains(r.stderr, "nothing to judge") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	r = check(t, "", "-f", "-", "-o", "json")
	if !strings.Contains(r.stdout, `"results": []`) {
		t.Errorf("empty results are not an empty array:\n%s", r.stdout)
	}
}

// TestReadmeSeedExample runs the command the README shows for the seed setup.
func TestReadmeSeedExample(t *testing.T) {
	r := check(t, "", "-f", "../../policy/testdata/mesh/seldon.yaml", "-f", "../../policy/testdata/mesh/seldon-seed-policies.yaml")
	if r.code != exitDenied || !strings.Contains(r.stdout, "POST /inference.GRPCInferenceService/ModelInfer") {
		t.Fatalf("exit %d, want 1 with the gRPC gap named:\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestReadmeCommands runs every `bin/modelguard check` command of the README's sh blocks: each
// must parse and judge (exit 0 or 1), never fail as a usage or input error.
func TestReadmeCommands(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	inSh, ran := false, 0
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "```sh"):
			inSh = true
			continue
		case strings.HasPrefix(line, "```"):
			inSh = false
			continue
		}
		cmdline := strings.TrimSpace(strings.SplitN(line, "#", 2)[0])
		if !inSh || !strings.HasPrefix(cmdline, "bin/modelguard check ") {
			continue
		}
		args := strings.Fields(strings.TrimPrefix(cmdline, "bin/modelguard check "))
		for i, a := range args {
			if !strings.HasPrefix(a, "-") && i > 0 && args[i-1] == "-f" {
				args[i] = filepath.Join("..", "..", a)
			}
		}
		r := check(t, "", args...)
		if r.code != exitOK && r.code != exitDenied {
			t.Errorf("README command %q: exit %d\n%s", cmdline, r.code, r.stderr)
		}
		ran++
	}
	if ran < 3 {
		t.Fatalf("found %d README commands, want at least 3", ran)
	}
}
