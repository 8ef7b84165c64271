package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/modelguard/modelguard/test/fleet"
)

func TestGenerateFleet(t *testing.T) {
	dir := t.TempDir()
	n, err := fleet.Generate(dir, 10)
	if err != nil {
		t.Fatal(err)
	}
	if want := 3 + 10*10; n != want {
		t.Errorf("generated %d objects, want %d", n, want)
	}
	r := check(t, "", "-f", dir, "-o", "json")
	if r.code != exitDenied {
		t.Fatalf("exit %d, want 1 (team-0006 and team-0009 are open); stderr:\n%s", r.code, r.stderr)
	}
	// Per namespace 4 judged objects; team-0006: embedder and its VirtualService (gRPC route
	// open); team-0009: ranker, embedder and the VirtualService (PERMISSIVE).
	if !strings.Contains(r.stdout, `"checked": 40`) || !strings.Contains(r.stdout, `"denied": 5`) {
		t.Errorf("unexpected summary:\n%s", r.stdout[strings.LastIndex(r.stdout, `"summary"`):])
	}
}

func BenchmarkCheck10k(b *testing.B) {
	dir := b.TempDir()
	n, err := fleet.Generate(dir, 1000)
	if err != nil {
		b.Fatal(err)
	}
	args := []string{"-f", dir, "-o", "json"}
	runs := 0
	start := time.Now()
	for b.Loop() {
		if code := runCheck(args, nil, io.Discard, io.Discard); code == exitUsage {
			b.Fatalf("exit %d", code)
		}
		runs++
	}
	elapsed := time.Since(start)
	b.ReportMetric(elapsed.Seconds()/float64(runs), "s/run")
	b.ReportMetric(float64(n)*float64(runs)/elapsed.Seconds(), "objects/s")
}
