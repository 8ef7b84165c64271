package main

import (
	"encoding/json"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
)

// The load mix is 70% admitted, 30% denied, and every request is a well-formed CREATE
// review whose expectation the engine confirmed.
func TestCorpusMix(t *testing.T) {
	reqs, err := corpus(20, 200)
	require.NoError(t, err)
	require.Len(t, reqs, 200)
	allowed := 0
	for _, r := range reqs {
		var review admissionv1.AdmissionReview
		require.NoError(t, json.Unmarshal(r.body, &review))
		require.Equal(t, r.uid, review.Request.UID)
		require.Equal(t, admissionv1.Create, review.Request.Operation)
		if r.allowed {
			allowed++
		}
	}
	assert.Equal(t, 140, allowed)
}

func TestQuantilesAndMedians(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	l := summarise(d)
	assert.Equal(t, 50*time.Millisecond, l.P50)
	assert.Equal(t, 90*time.Millisecond, l.P90)
	assert.Equal(t, 99*time.Millisecond, l.P99)
	assert.Equal(t, 100*time.Millisecond, l.Max)
	assert.Equal(t, 2.0, median([]float64{3, 1, 2}))
	assert.Equal(t, 2.5, median([]float64{4, 1, 2, 3}))
}

func TestHistogramQuantileSince(t *testing.T) {
	bounds := []float64{0.001, 0.0025, 0.005, math.Inf(1)}
	before := histogram{bounds: bounds, counts: []float64{10, 10, 10, 10}, count: 10, sum: 0.01}
	after := histogram{bounds: bounds, counts: []float64{10 + 90, 10 + 98, 10 + 100, 10 + 100}, count: 110, sum: 0.11}
	assert.Equal(t, 0.001, after.quantileSince(before, 0.5))
	assert.Equal(t, 0.005, after.quantileSince(before, 0.99))
	assert.True(t, math.IsNaN(after.quantileSince(histogram{}, 0.5)))
	assert.InDelta(t, 0.001, after.meanSince(before), 1e-12)
	assert.True(t, math.IsNaN(before.meanSince(before)))
}

// The server's histogram has one series per webhook and verdict; the bench sums them.
func TestHistogramOfSumsSeries(t *testing.T) {
	text := `# TYPE modelguard_admission_duration_seconds histogram
modelguard_admission_duration_seconds_bucket{webhook="validate",le="0.001"} 3
modelguard_admission_duration_seconds_bucket{webhook="validate",le="0.005"} 4
modelguard_admission_duration_seconds_bucket{webhook="validate",le="+Inf"} 5
modelguard_admission_duration_seconds_sum{webhook="validate"} 0.5
modelguard_admission_duration_seconds_count{webhook="validate"} 5
modelguard_admission_duration_seconds_bucket{webhook="mutate",le="0.001"} 1
modelguard_admission_duration_seconds_bucket{webhook="mutate",le="0.005"} 1
modelguard_admission_duration_seconds_bucket{webhook="mutate",le="+Inf"} 1
modelguard_admission_duration_seconds_sum{webhook="mutate"} 0.0005
modelguard_admission_duration_seconds_count{webhook="mutate"} 1
`
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	require.NoError(t, err)
	h := histogramOf(families["modelguard_admission_duration_seconds"])
	assert.Equal(t, []float64{0.001, 0.005, math.Inf(1)}, h.bounds)
	assert.Equal(t, []float64{4, 5, 6}, h.counts)
	assert.Equal(t, 6.0, h.count)
	assert.InDelta(t, 0.5005, h.sum, 1e-12)
	assert.Equal(t, 0.001, h.quantileSince(histogram{bounds: h.bounds, counts: make([]float64, 3)}, 0.5))
}

// Busy cores over an interval: the share of non-idle ticks times the cores.
func TestBusyCores(t *testing.T) {
	before := cpuTimes{busy: 100, total: 1000}
	assert.InDelta(t, 0.5, busyCores(before, cpuTimes{busy: 150, total: 1200}, 2), 1e-12)
	assert.Equal(t, 0.0, busyCores(before, before, 2))
}

// TestMedianUse: each component is the median of its own values, not of whole readings.
func TestMedianUse(t *testing.T) {
	got := medianUse([]coreUse{
		{Server: 1.0, Client: 0.2, Other: 0.9, Steal: 0},
		{Server: 0.8, Client: 0.6, Other: 0.1, Steal: 0.3},
		{Server: 0.9, Client: 0.4, Other: 0.0, Steal: 0.1},
	})
	assert.Equal(t, coreUse{Server: 0.9, Client: 0.4, Other: 0.1, Steal: 0.1}, got)
	assert.Equal(t, coreUse{}, medianUse(nil))
}

// TestCoreMeterSelf: a meter whose "server" is this process sees it as busy as the client.
func TestCoreMeterSelf(t *testing.T) {
	m := startCoreMeter(func() (time.Duration, error) { return processCPU("self") }, runtime.NumCPU())
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
	}
	u, server, err := m.stop()
	require.NoError(t, err)
	assert.InDelta(t, u.Server, u.Client, 0.1) // read one after the other, in 10 ms ticks
	assert.Positive(t, u.Client)
	assert.Positive(t, server)
}

// A floor's row counts the errors of its fixed-rate runs with those at concurrency 32, and
// shows its fixed-rate latency only when it was measured.
func TestAppendFloorRow(t *testing.T) {
	fixed := &fixedReport{Rate: 2500, P50ms: 0.4, P99ms: 2.7, MaxMs: 8.2, Errors: 1}
	rows := appendFloorRow(nil, "no-op", "HTTP/1.1", nil)
	assert.Empty(t, rows, "no floor, no row")

	rows = appendFloorRow(rows, "no-op", "HTTP/1.1", &floorReport{C32PerS: 9939, C32Share: 0.54, C32CPUPer1000: 0.13})
	rows = appendFloorRow(rows, "no-op", "HTTP/1.1", &floorReport{C32PerS: 9939, C32Share: 0.54, C32CPUPer1000: 0.13, Fixed: fixed})
	require.Len(t, rows, 2)
	assert.NotContains(t, rows[0].Measure, "fixed")
	assert.Equal(t, "yes", rows[0].Met)
	assert.Contains(t, rows[0].Value, "9939/s (54%), 0.13 s")
	assert.Contains(t, rows[1].Measure, "fixed 2500/s p50/p99/max")
	assert.Contains(t, rows[1].Value, "0.40/2.70/8.2 ms")
	assert.Equal(t, "NO", rows[1].Met, "an error at the fixed rate fails the floor's row")
}
