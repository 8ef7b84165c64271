package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	testenv "github.com/modelguard/modelguard/test/envtest"
)

// server is a running `modelguard serve` child process.
type server struct {
	cmd     *exec.Cmd
	probe   int
	pprof   int
	metrics int
	logPath string
	started time.Time
	synced  time.Duration // from start to /readyz
}

// serverOptions say how to start modelguard serve.
type serverOptions struct {
	bin, kubeconfig, certDir, config, logPath string
	port                                      int
	noReconciler                              bool
	http2                                     bool     // --enable-http2
	env                                       []string // added to the environment
}

func startServer(ctx context.Context, o serverOptions) (*server, error) {
	probe, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	pprof, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	metrics, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	args := []string{"serve", "--cert-dir", o.certDir, "--webhook-port", strconv.Itoa(o.port),
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", metrics), "--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", probe),
		"--pprof-bind-address", fmt.Sprintf("127.0.0.1:%d", pprof)}
	if o.config != "" {
		args = append(args, "--config", o.config)
	}
	if o.noReconciler {
		args = append(args, "--no-reconciler")
	}
	if o.http2 {
		args = append(args, "--enable-http2")
	}
	cmd := exec.Command(o.bin, args...)
	cmd.Env = append(append(os.Environ(), "KUBECONFIG="+o.kubeconfig), o.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	logFile, err := os.Create(o.logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logFile
	// Audit lines (one per denial) are drained as the kube-apiserver's log collector would.
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, probe: probe, pprof: pprof, metrics: metrics, logPath: o.logPath, started: time.Now()}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s (run `make build`): %w", o.bin, err)
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	exited := func() error {
		if s.cmd.ProcessState != nil {
			return fmt.Errorf("modelguard serve exited: %v", s.cmd.ProcessState)
		}
		return nil
	}
	if err := testenv.WaitReady(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", probe), 10*time.Minute, exited); err != nil {
		s.stop()
		return nil, fmt.Errorf("%w (log: %s)", err, o.logPath)
	}
	s.synced = time.Since(s.started)
	return s, nil
}

func (s *server) stop() {
	if s.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// rss is the process's resident set size now.
func (s *server) rss() (int64, error) {
	return procStatusKBFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid), "VmRSS:")
}

// cpu is the CPU time (user + system) the process has used so far.
func (s *server) cpu() (time.Duration, error) { return processCPU(strconv.Itoa(s.cmd.Process.Pid)) }

// processCPU is the CPU time (user + system) process pid ("self" for this one) has used so far.
func processCPU(pid string) (time.Duration, error) {
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces) start at state (field 3).
	rest := string(data[strings.LastIndexByte(string(data), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%s/stat: short", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%s/stat: utime/stime: %v %v", pid, err1, err2)
	}
	const clockTicks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// procStatusKBFile reads a "Key:  N kB" line of a /proc file, in bytes.
func procStatusKBFile(path, key string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("%s has no %s", path, key)
}

// histogram is the server's own modelguard_admission_duration_seconds, summed over webhooks
// and verdicts: cumulative counts by upper bound (seconds), and the count and sum of all.
type histogram struct {
	bounds []float64
	counts []float64
	count  float64
	sum    float64
}

// durations scrapes the server's admission duration histogram: the time the handler took,
// without the client's share of the machine and the network stack.
func (s *server) durations(ctx context.Context) (histogram, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/metrics", s.metrics), nil)
	if err != nil {
		return histogram{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return histogram{}, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return histogram{}, fmt.Errorf("modelguard /metrics: %w", err)
	}
	return histogramOf(families["modelguard_admission_duration_seconds"]), nil
}

// histogramOf sums the series of a histogram family (they share their bucket bounds).
func histogramOf(f *dto.MetricFamily) histogram {
	var h histogram
	for _, m := range f.GetMetric() {
		mh := m.GetHistogram()
		h.count += float64(mh.GetSampleCount())
		h.sum += mh.GetSampleSum()
		for i, b := range mh.GetBucket() {
			if i == len(h.bounds) {
				h.bounds, h.counts = append(h.bounds, b.GetUpperBound()), append(h.counts, 0)
			}
			h.counts[i] += float64(b.GetCumulativeCount())
		}
	}
	if n := len(h.bounds); n > 0 && !math.IsInf(h.bounds[n-1], 1) { // +Inf may be implicit
		h.bounds, h.counts = append(h.bounds, math.Inf(1)), append(h.counts, h.count)
	}
	return h
}

// meanSince is the mean handler time of the admissions between earlier and h, in seconds.
func (h histogram) meanSince(earlier histogram) float64 {
	if h.count <= earlier.count {
		return math.NaN()
	}
	return (h.sum - earlier.sum) / (h.count - earlier.count)
}

// quantileSince is the bucket bound under which fraction q of the admissions between
// earlier and h finished (a bucket bound, so an upper estimate).
func (h histogram) quantileSince(earlier histogram, q float64) float64 {
	if len(h.counts) == 0 || len(earlier.counts) != len(h.counts) {
		return math.NaN()
	}
	total := h.counts[len(h.counts)-1] - earlier.counts[len(h.counts)-1]
	for i := range h.counts {
		if h.counts[i]-earlier.counts[i] >= q*total {
			return h.bounds[i]
		}
	}
	return math.Inf(1)
}
