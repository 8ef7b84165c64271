package decode

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// replacements are values of every YAML shape, substituted for each scalar
// of the valid fixtures in turn.
var replacements = []string{
	"~", "true", "0", "-1", "4294967296", "99999999999999999999", "1.5", "1e400", ".inf", ".nan",
	"0x1F", "0o17", "0777", "\"\"", "\"8080\"", "2025-01-01", "[]", "[a, 1]", "{}", "{a: b}",
	"DENY", "5s", "-1s", "100m", "\"Infinity\"", "\"1e2\"",
}

// TestMutatedFixtures decodes each valid fixture with one value replaced at
// a time. Every outcome must be a clean success or an *Error found by the
// walkers (not by the final decoders, whose errors are less precise), and
// nothing may panic.
func TestMutatedFixtures(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "valid", "*.yaml"))
	before := backstopHits.Load()
	n := 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		lines := bytes.SplitAfter(data, []byte("\n"))
		for i, line := range lines {
			colon := bytes.Index(line, []byte(": "))
			if colon < 0 || bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
				continue
			}
			for _, r := range replacements {
				mutated := bytes.Join([][]byte{
					bytes.Join(lines[:i], nil),
					line[:colon+2], []byte(r), []byte("\n"),
					bytes.Join(lines[i+1:], nil),
				}, nil)
				objs, _, err := Decode(file, mutated)
				n++
				if err != nil {
					var de *Error
					if !errors.As(err, &de) || objs != nil || strings.Contains(de.Msg, "internal decoder error") {
						t.Fatalf("%s line %d = %s: bad outcome %v", file, i+1, r, err)
					}
					continue
				}
				checkOutcome(t, objs, nil)
			}
		}
	}
	if hits := backstopHits.Load() - before; hits != 0 {
		t.Errorf("%d of %d mutations were only caught by the final decoders", hits, n)
	}
}
