package policy_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/modelguard/modelguard/policy"
	"github.com/modelguard/modelguard/policy/decode"
)

// FuzzEvaluate feeds arbitrary manifests through the decoder, the snapshot and the engine:
// nothing may panic, every code is in the catalogue, and a denial always carries an error.
func FuzzEvaluate(f *testing.F) {
	for _, glob := range []string{"testdata/cases/*.yaml", "testdata/mesh/*.yaml"} {
		files, _ := filepath.Glob(glob)
		for _, file := range files {
			if data, err := os.ReadFile(file); err == nil {
				f.Add(data)
			}
		}
	}
	known := map[policy.Code]bool{}
	for _, e := range policy.Catalogue {
		known[e.Code] = true
	}
	cfg := policy.DefaultConfig()
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, _, err := decode.Decode("fuzz.yaml", data)
		if err != nil {
			return
		}
		snap := policy.NewSnapshot(cfg)
		for _, o := range objs {
			_ = snap.Upsert(o.Obj) // malformed models are refused here and judged below
		}
		for _, o := range objs {
			if !policy.Judgeable(o.Obj) {
				continue
			}
			v := policy.Evaluate(cfg, snap, o.Obj, policy.Options{SimulateMutation: true})
			hasError := false
			for _, fd := range v.Findings {
				if !known[fd.Code] {
					t.Fatalf("code %q is not in the catalogue", fd.Code)
				}
				hasError = hasError || fd.Severity == policy.SeverityError
			}
			if !v.Allowed && !hasError {
				t.Fatalf("denied without an error finding: %+v", v)
			}
		}
	})
}
