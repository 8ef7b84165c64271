package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The runtime's gctrace lines are placed on the wall clock from the process start; the
// server's JSON log lines between them are skipped.
func TestParseGCTrace(t *testing.T) {
	start := time.Date(2026, 12, 3, 17, 0, 0, 0, time.UTC)
	log := strings.Join([]string{
		`{"level":"info","msg":"mesh state synced","kinds":12}`,
		`gc 1 @0.012s 3%: 0.020+1.5+0.030 ms clock, 0.040+0.10/1.2/0+0.060 ms cpu, 4->4->1 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P`,
		`gc 41 @12.500s 4%: 0.015+100+0.485 ms clock, 0.030+20/30/25+0.97 ms cpu, 140->145->72 MB, 145 MB goal, 0 MB stacks, 0 MB globals, 2 P`,
		`gc 42 @13.000s 4%: 0.5+80+0.5 ms clock, 1+2/3/4+1 ms cpu, 140->146->73 MB, 145 MB goal, 0 MB stacks, 0 MB globals, 2 P (forced)`,
		`scvg: 0 MB released`,
	}, "\n")
	cycles, err := parseGCTrace(strings.NewReader(log), start)
	require.NoError(t, err)
	require.Len(t, cycles, 3)
	near := func(want, got time.Time) { assert.WithinDuration(t, want, got, time.Microsecond) }
	near(start.Add(12*time.Millisecond), cycles[0].start)
	near(start.Add(13550*time.Microsecond), cycles[0].end) // 0.020+1.5+0.030 ms
	near(start.Add(12500*time.Millisecond), cycles[1].start)
	near(start.Add(12600500*time.Microsecond), cycles[1].end) // 0.015+100+0.485 ms
	near(start.Add(13081*time.Millisecond), cycles[2].end)
}

func TestGCShares(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 17, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	cycles := []gcCycle{
		{at(-50), at(50)},   // begins before the run: only its part inside counts
		{at(400), at(480)},  // with the drain 400–500
		{at(490), at(520)},  // overlaps the previous one's drain: merged, 400–540
		{at(950), at(1100)}, // ends after the run
	}
	tests := []struct {
		name            string
		slow            []time.Time
		wantTime, wantS float64
	}{
		{"slow requests in collections", []time.Time{at(10), at(450), at(539), at(990)}, 0.26, 1},
		{"slow requests elsewhere", []time.Time{at(200), at(540), at(700), at(900)}, 0.26, 0},
		{"half and half", []time.Time{at(60), at(70), at(300), at(960)}, 0.26, 0.5},
		{"no slow requests", nil, 0.26, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// In the run 0–1000 ms: 0–70 (the first cycle and its drain), 400–540 and 950–1000.
			timeShare, slowShare := gcShares(cycles, tc.slow, at(0), at(1000), 20*time.Millisecond)
			assert.InDelta(t, tc.wantTime, timeShare, 1e-9)
			assert.InDelta(t, tc.wantS, slowShare, 1e-9)
		})
	}
	ts, ss := gcShares(cycles, []time.Time{at(10)}, at(10), at(10), time.Millisecond)
	assert.Zero(t, ts, "an empty run has no share")
	assert.Zero(t, ss)
}

func TestTracesGC(t *testing.T) {
	assert.True(t, tracesGC([]string{"GOGC=200", "GODEBUG=madvdontneed=1,gctrace=1"}))
	assert.False(t, tracesGC([]string{"GODEBUG=gctrace=0"}))
	assert.False(t, tracesGC(nil))
}
