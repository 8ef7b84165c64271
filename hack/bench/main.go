// Command bench measures modelguard the way an operator would (issue 6) and prints one table:
//
//   - load: a load generator sending real AdmissionReviews over TLS with keep-alive to a
//     running `modelguard serve` (the built binary) at concurrency 1, 8, 32 and 128, a 70/30
//     admitted/denied mix of Models, InferenceServices and VirtualServices, against a test
//     API server holding 10,000 AuthorizationPolicies, 10,000 RequestAuthentications, 1,000
//     PeerAuthentications and 2,000 VirtualServices in 1,000 namespaces; then a fixed-rate
//     run (latency at half the throughput) and a soak run (RSS over time);
//   - overhead: kube-apiserver create latency of the same 2,000 InferenceServices with the
//     webhooks registered and without, interleaved in batches;
//   - scale: RSS after sync and admission latency at 1k, 10k and 100k policies, and the
//     informer memory of each watched kind;
//   - cli: `modelguard check` on 1,000, 10,000 and 100,000 objects, wall time and peak RSS.
//
// Every figure is the median of -runs runs. Usage (what `make bench` runs):
//
//	go run ./hack/bench [-only load,overhead,scale,cli] [-runs 5] [-duration 5s] [-soak 5m] [-json bench.json]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	testenv "github.com/modelguard/modelguard/test/envtest"
)

type options struct {
	root, bin, dir, profileDir string
	only                       []string
	runs                       int
	duration, soak             time.Duration
	scaleNamespaces            []int
	cliNamespaces              []int
	jsonPath                   string
	keep, http2, etcdFsync     bool
	client                     string  // load client: clientConn or clientNetHTTP
	serverEnv                  envFlag // extra environment of modelguard serve (load section)
}

// envFlag collects KEY=VALUE pairs.
type envFlag []string

func (e *envFlag) String() string { return strings.Join(*e, " ") }
func (e *envFlag) Set(v string) error {
	if !strings.Contains(v, "=") {
		return fmt.Errorf("%q is not KEY=VALUE", v)
	}
	*e = append(*e, v)
	return nil
}

// report is everything measured; the JSON output.
type report struct {
	Machine machine `json:"machine"`
	// EtcdFsync: the test etcd flushed every commit to disk (-etcd-fsync).
	EtcdFsync bool            `json:"etcd_fsync"`
	Runs      int             `json:"runs"`
	Load      *loadReport     `json:"load,omitempty"`
	Overhead  *overheadReport `json:"overhead,omitempty"`
	Scale     *scaleReport    `json:"scale,omitempty"`
	CLI       []cliRow        `json:"cli,omitempty"`
	Started   time.Time       `json:"started"`
	Took      string          `json:"took"`
	Targets   []summaryRow    `json:"summary"`
}

func main() {
	if certs := os.Getenv(noopProcessEnv); certs != "" {
		if err := serveNoopProcess(certs); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(1)
		}
	}
	ctrllog.SetLogger(logr.Discard()) // the in-process informers of the scale section
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(2)
	}
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func parseFlags() (options, error) {
	var o options
	var only, scale, cli string
	flag.StringVar(&only, "only", "load,overhead,scale,cli", "comma-separated `SECTIONS` to run")
	flag.IntVar(&o.runs, "runs", 5, "repetitions of every measurement; the report gives medians")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "length of each load run")
	flag.DurationVar(&o.soak, "soak", 5*time.Minute, "length of the soak run (0 skips it)")
	flag.StringVar(&scale, "scale", "100,1000,10000", "namespaces of the scale points (10 AuthorizationPolicies each)")
	flag.StringVar(&cli, "cli", "100,1000,10000", "namespaces of the CLI inputs (10 objects each)")
	flag.StringVar(&o.jsonPath, "json", "bench.json", "write the full report as JSON to `FILE`")
	flag.StringVar(&o.profileDir, "profile", "", "write CPU and allocation profiles of the server under load to `DIR`")
	flag.BoolVar(&o.http2, "http2", false, "run modelguard serve with --enable-http2 and load it over HTTP/2 (one multiplexed connection) as well as HTTP/1.1 (default: HTTP/1.1 alone, a keep-alive connection per client, as modelguard serves by default)")
	flag.StringVar(&o.client, "client", clientConn, "load `CLIENT` over HTTP/1.1: "+clientConn+" (each worker drives its connection itself; the least CPU taken from the server) or "+clientNetHTTP+" (net/http's Transport, as kube-apiserver's webhook client)")
	flag.Var(&o.serverEnv, "server-env", "`KEY=VALUE` added to modelguard serve's environment in the load section (e.g. GOGC=200, GODEBUG=gctrace=1: its stderr log is kept with -keep); repeatable")
	flag.BoolVar(&o.etcdFsync, "etcd-fsync", false, "run the test etcd with fsync on every commit, as a production etcd runs (default: envtest's --unsafe-no-fsync)")
	flag.BoolVar(&o.keep, "keep", false, "keep the working directory (server logs, kubeconfigs) and print its path")
	flag.StringVar(&o.bin, "bin", "", "modelguard binary (default: bin/modelguard; run `make build`)")
	flag.Parse()
	o.only = strings.Split(only, ",")
	var err error
	if o.scaleNamespaces, err = ints(scale); err != nil {
		return o, fmt.Errorf("-scale: %w", err)
	}
	if o.cliNamespaces, err = ints(cli); err != nil {
		return o, fmt.Errorf("-cli: %w", err)
	}
	if o.runs < 1 {
		return o, fmt.Errorf("-runs must be at least 1")
	}
	if o.root, err = testenv.RepoRoot(); err != nil {
		return o, err
	}
	if o.bin == "" {
		o.bin = filepath.Join(o.root, "bin", "modelguard")
	}
	if _, err := os.Stat(o.bin); err != nil {
		return o, fmt.Errorf("%s: %w (run `make build`)", o.bin, err)
	}
	return o, nil
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(f), &n); err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(ctx context.Context, o options) error {
	dir, err := os.MkdirTemp("", "modelguard-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		progress("working directory: %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	o.dir = dir
	rep := &report{Machine: describeMachine(), Runs: o.runs, Started: time.Now(), EtcdFsync: o.etcdFsync}
	progress("machine: %s", rep.Machine)
	sections := []struct {
		name string
		run  func() error
	}{
		{"load", func() (err error) { rep.Load, err = runLoad(ctx, o); return }},
		{"overhead", func() (err error) { rep.Overhead, err = runOverhead(ctx, o); return }},
		{"scale", func() (err error) { rep.Scale, err = runScale(ctx, o); return }},
		{"cli", func() (err error) { rep.CLI, err = runCLI(ctx, o); return }},
	}
	var failed []string
	for _, s := range sections {
		if !slices.Contains(o.only, s.name) {
			continue
		}
		began := time.Now()
		if err := s.run(); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", s.name, err))
			progress("%s failed: %v", s.name, err)
		} else {
			progress("%s done in %s", s.name, time.Since(began).Round(time.Second))
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	rep.Took = time.Since(rep.Started).Round(time.Second).String()
	rep.Targets = summary(rep)
	printTable(os.Stdout, rep)
	if o.jsonPath != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.jsonPath, data, 0o644); err != nil {
			return err
		}
		fmt.Printf("\nfull report: %s\n", o.jsonPath)
	}
	if len(failed) > 0 {
		return fmt.Errorf("sections failed:\n  %s", strings.Join(failed, "\n  "))
	}
	return nil
}

type machine struct {
	CPU    string `json:"cpu"`
	Cores  int    `json:"cores"`
	MemGiB int    `json:"mem_gib"`
	Go     string `json:"go"`
	OS     string `json:"os"`
}

func (m machine) String() string {
	return fmt.Sprintf("%s, %d cores, %d GiB, %s %s", m.CPU, m.Cores, m.MemGiB, m.OS, m.Go)
}

func describeMachine() machine {
	m := machine{Cores: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH, CPU: "unknown CPU"}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := procStatusKBFile("/proc/meminfo", "MemTotal:"); err == nil {
		m.MemGiB = int((b + 1<<29) >> 30)
	}
	return m
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
