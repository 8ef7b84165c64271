package main

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"time"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/modelguard/modelguard/policy"
	"github.com/modelguard/modelguard/test/fleet"
	"github.com/modelguard/modelguard/webhook"
)

type scaleReport struct {
	Points []scalePoint `json:"points"`
	// LatencyRatio is the median admission latency at the largest point over the smallest.
	LatencyRatio float64 `json:"p50_ratio_largest_to_smallest"`
	// ServerRatio is the same for the handler's own mean time.
	ServerRatio float64 `json:"server_mean_ratio_largest_to_smallest"`
}

type scalePoint struct {
	Policies int     `json:"authorization_policies"`
	Objects  string  `json:"objects"`
	SyncS    float64 `json:"sync_s"`
	RSSMiB   float64 `json:"rss_after_sync_mib"` // median over the runs
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	// ServerMeanMs is the handler's own mean time per admission (its duration histogram), and
	// ServerCPUms the server process's CPU per admission: what modelguard itself spends.
	ServerMeanMs float64 `json:"server_mean_ms"`
	ServerCPUms  float64 `json:"server_cpu_ms_per_admission"`
	// SettleS is how long the run waited for the machine to go quiet after the server synced
	// (median), BackgroundCores the cores busy during the run with neither the server nor the
	// load generator (the test API server and etcd, mostly).
	SettleS         float64       `json:"settle_s"`
	BackgroundCores float64       `json:"background_cores"`
	Errors          int           `json:"errors"`
	Informers       []informerRow `json:"informer_memory"`
	SnapshotMB      float64       `json:"policy_snapshot_mib"`
}

type informerRow struct {
	Kind    string  `json:"kind"`
	Objects int     `json:"objects"`
	MiB     float64 `json:"mib"`
	Bytes   int64   `json:"bytes_per_object"`
}

// runScale grows one API server through the scale points (fleet.Mesh of n namespaces: 10n
// AuthorizationPolicies and as many RequestAuthentications), and at each starts modelguard
// serve afresh: time to sync, RSS after sync, admission latency at concurrency 1, and the
// memory each informer and the policy snapshot hold.
func runScale(ctx context.Context, o options) (*scaleReport, error) {
	c, err := startCluster(o.root, filepath.Join(o.dir, "scale"), o.etcdFsync)
	if err != nil {
		return nil, err
	}
	defer c.stop()
	rep := &scaleReport{}
	have := 0
	for _, n := range o.scaleNamespaces {
		if n > have {
			began := time.Now()
			// In pieces: the bench's own heap stays small, so its garbage collector does not
			// compete with the server it measures.
			for from := have; from < n; from += 500 {
				if err := c.create(ctx, fleet.MeshRange(from, min(from+500, n)), 16); err != nil {
					return nil, err
				}
			}
			progress("scale: %d namespaces created in %s", n, time.Since(began).Round(time.Second))
			have = n
		}
		p, err := scalePointAt(ctx, c, o, n)
		if err != nil {
			return nil, err
		}
		p.Objects = fmt.Sprintf("%d namespaces of fleet.Mesh: %d AuthorizationPolicies and RequestAuthentications, %d PeerAuthentications, %d VirtualServices, %d InferenceServices, %d Models",
			n, n*fleet.PoliciesPerNamespace, n, 2*n, n, n)
		rep.Points = append(rep.Points, p)
	}
	if first, last := rep.Points[0], rep.Points[len(rep.Points)-1]; first.P50ms > 0 {
		rep.LatencyRatio = last.P50ms / first.P50ms
	}
	if first, last := rep.Points[0], rep.Points[len(rep.Points)-1]; first.ServerMeanMs > 0 {
		rep.ServerRatio = last.ServerMeanMs / first.ServerMeanMs
	}
	return rep, nil
}

func scalePointAt(ctx context.Context, c *cluster, o options, n int) (scalePoint, error) {
	p := scalePoint{Policies: n * fleet.PoliciesPerNamespace}
	reqs, err := corpus(n, 1000)
	if err != nil {
		return p, err
	}
	debug.FreeOSMemory() // the corpus's snapshot of the whole mesh is garbage now
	hc, err := newLoader(o.client, c.caData(), 1, o.http2)
	if err != nil {
		return p, err
	}
	var rss, mean, cpu, settled, background []float64
	var p50, p99 []time.Duration
	for run := range o.runs {
		s, err := startServer(ctx, c.serverOptions(o.bin, fmt.Sprintf("scale-%d-%d", n, run)))
		if err != nil {
			return p, err
		}
		p.SyncS = s.synced.Seconds()
		m, err := scaleRun(ctx, s, hc, c.webhookURL(webhook.PathValidate), reqs, o.duration)
		s.stop()
		hc.closeIdle()
		if err != nil {
			return p, err
		}
		rss, mean, cpu = append(rss, mib(m.rss)), append(mean, m.serverMean), append(cpu, m.serverCPU)
		settled, background = append(settled, m.settle.Seconds()), append(background, m.background)
		lat := summarise(m.out.Lat)
		p50, p99 = append(p50, lat.P50), append(p99, lat.P99)
		p.Errors += m.out.Errors
		progress("scale: %d policies, run %d: synced in %.1fs, settled in %.0fs, RSS %.0f MiB, p50 %.3f ms p99 %.3f ms, server mean %.3f ms, server CPU %.3f ms/admission, background %.2f cores, errors %d",
			p.Policies, run+1, p.SyncS, m.settle.Seconds(), mib(m.rss), ms(lat.P50), ms(lat.P99), m.serverMean, m.serverCPU, m.background, m.out.Errors)
		if m.out.Errors > 0 {
			progress("scale: first error: %s", m.out.FirstErr)
		}
	}
	p.ServerMeanMs, p.ServerCPUms = median(mean), median(cpu)
	p.SettleS, p.BackgroundCores = median(settled), median(background)
	p.RSSMiB, p.P50ms, p.P99ms = median(rss), ms(median(p50)), ms(median(p99))
	if p.Informers, err = informerMemory(ctx, c.cfg); err != nil {
		return p, err
	}
	p.SnapshotMB = snapshotMemory(n)
	return p, nil
}

// scaleMeasure is one scale run's measurements.
type scaleMeasure struct {
	rss        int64
	settle     time.Duration
	out        outcome
	serverMean float64 // ms
	serverCPU  float64 // ms per admission
	background float64 // cores
}

// scaleRun waits for the machine to settle after the server's sync, then measures admissions
// at concurrency 1, with the server's own account and the CPU used beside the two processes.
func scaleRun(ctx context.Context, s *server, hc loader, url string, reqs []request, d time.Duration) (scaleMeasure, error) {
	var m scaleMeasure
	var err error
	if m.settle, err = settle(ctx, runtime.NumCPU(), settledCores, settleLimit); err != nil {
		return m, err
	}
	if m.rss, err = s.rss(); err != nil {
		return m, err
	}
	closedLoop(ctx, hc, url, reqs, 1, time.Second) // warm-up
	before, err := s.durations(ctx)
	if err != nil {
		return m, err
	}
	meter := startCoreMeter(s.cpu, runtime.NumCPU())
	m.out = closedLoop(ctx, hc, url, reqs, 1, d)
	use, server, err := meter.stop()
	if err != nil {
		return m, err
	}
	after, err := s.durations(ctx)
	if err != nil {
		return m, err
	}
	m.serverMean = after.meanSince(before) * 1000
	if m.out.Requests > 0 {
		m.serverCPU = ms(server) / float64(m.out.Requests)
	}
	m.background = use.Other + use.Steal // busy with neither the server nor this process
	return m, nil
}

// The machine counts as settled under 0.15 busy cores; a scale run waits at most 2 minutes.
const (
	settledCores = 0.15
	settleLimit  = 2 * time.Minute
)

// informerMemory starts one informer at a time, with modelguard's cache options (managed
// fields stripped, Pods slimmed), and measures the live heap it holds once synced.
func informerMemory(ctx context.Context, cfg *rest.Config) ([]informerRow, error) {
	scheme, err := webhook.NewScheme()
	if err != nil {
		return nil, err
	}
	var rows []informerRow
	for _, obj := range webhook.WatchedKinds() {
		row, err := oneInformer(ctx, cfg, scheme, obj)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func oneInformer(ctx context.Context, cfg *rest.Config, scheme *k8sruntime.Scheme, obj client.Object) (informerRow, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	opts := webhook.CacheOptions(nil)
	opts.Scheme = scheme
	before := liveHeap()
	ch, err := cache.New(cfg, opts)
	if err != nil {
		return informerRow{}, err
	}
	go func() { _ = ch.Start(ctx) }()
	inf, err := ch.GetInformer(ctx, obj)
	if err != nil {
		return informerRow{}, fmt.Errorf("informer for %T: %w", obj, err)
	}
	count := 0
	reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{AddFunc: func(any) { count++ }})
	if err != nil {
		return informerRow{}, err
	}
	if !ch.WaitForCacheSync(ctx) || !toolscache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		return informerRow{}, fmt.Errorf("informer for %T did not sync", obj)
	}
	held := liveHeap() - before
	runtime.KeepAlive(ch)
	kind, _, _ := scheme.ObjectKinds(obj)
	name := fmt.Sprintf("%T", obj)
	if len(kind) > 0 {
		name = kind[0].Kind
	} else if u, ok := obj.(interface{ GetKind() string }); ok {
		name = u.GetKind()
	}
	row := informerRow{Kind: name, Objects: count, MiB: mib(held)}
	if count > 0 {
		row.Bytes = held / int64(count)
	}
	return row, nil
}

// snapshotMemory is the live heap of a policy.Snapshot holding fleet.Mesh(n), objects
// included (in modelguard serve the snapshot shares them with the informers' stores).
func snapshotMemory(n int) float64 {
	before := liveHeap()
	snap := policy.NewSnapshot(policy.DefaultConfig())
	for _, o := range fleet.Mesh(n) {
		_ = snap.Upsert(o)
	}
	held := liveHeap() - before
	runtime.KeepAlive(snap)
	return mib(held)
}

func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
