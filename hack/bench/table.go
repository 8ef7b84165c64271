package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// summaryRow is one line of the table: a figure, the target for it, and the verdict.
type summaryRow struct {
	Section string `json:"section"`
	Measure string `json:"measure"`
	Value   string `json:"value"`
	Target  string `json:"target,omitempty"`
	Met     string `json:"met,omitempty"` // "yes", "NO", or "" without a target
}

func row(section, measure, value string) summaryRow {
	return summaryRow{Section: section, Measure: measure, Value: value}
}

func target(r summaryRow, t string, ok bool) summaryRow {
	r.Target, r.Met = t, map[bool]string{true: "yes", false: "NO"}[ok]
	return r
}

func summary(r *report) []summaryRow {
	var out []summaryRow
	if l := r.Load; l != nil {
		out = append(out, loadRows(l)...)
	}
	if ov := r.Overhead; ov != nil {
		m := ov.Median
		out = append(out,
			target(row("overhead", "create latency p50 with/without webhooks", fmt.Sprintf("×%.3f (%.2f / %.2f ms)", m.RatioP50, m.WithP50ms, m.NoneP50ms)), "< ×1.15", m.RatioP50 < 1.15),
			row("overhead", "create latency p50 with the validating webhooks alone / without", fmt.Sprintf("×%.3f", m.RatioValidatingP50)),
			row("overhead", "create latency p50 with the mutating webhook called too (inject rule) / without", fmt.Sprintf("×%.3f", m.RatioMutatedP50)),
			row("overhead", "create latency p50 with a no-op webhook alone / without (the floor)", fmt.Sprintf("×%.3f", m.RatioNoopP50)),
			row("overhead", "create latency p50 with webhooks / with a no-op webhook (what modelguard adds to the floor)", fmt.Sprintf("×%.3f", m.RatioOverNoopP50)),
			row("overhead", "create latency p99 with/without webhooks", fmt.Sprintf("×%.3f (%.2f / %.2f ms)", m.RatioP99, m.WithP99ms, m.NoneP99ms)),
			row("overhead", "modelguard's own time per webhook call, p50", fmt.Sprintf("≤ %.2g ms (histogram bucket)", m.ServerP50ms)))
	}
	if s := r.Scale; s != nil {
		for _, p := range s.Points {
			out = append(out, row("scale", fmt.Sprintf("%d policies: RSS after sync, admission p50/p99", p.Policies),
				fmt.Sprintf("%.0f MiB, %.3f / %.3f ms (sync %.1fs)", p.RSSMiB, p.P50ms, p.P99ms, p.SyncS)),
				row("scale", fmt.Sprintf("%d policies: server mean, CPU per admission; machine", p.Policies),
					fmt.Sprintf("%.3f ms, %.3f ms; settled in %.0fs, %.2f cores busy beside bench and server", p.ServerMeanMs, p.ServerCPUms, p.SettleS, p.BackgroundCores)))
		}
		if len(s.Points) > 1 {
			first, last := s.Points[0], s.Points[len(s.Points)-1]
			out = append(out, target(row("scale", fmt.Sprintf("admission p50 at %d / at %d policies", last.Policies, first.Policies),
				fmt.Sprintf("×%.2f (the handler's own mean: ×%.2f)", s.LatencyRatio, s.ServerRatio)), "≤ ×1.5", s.LatencyRatio <= 1.5))
		}
		if len(s.Points) > 0 {
			p := s.Points[len(s.Points)-1]
			var parts []string
			for _, i := range p.Informers {
				if i.Objects > 0 {
					parts = append(parts, fmt.Sprintf("%s %.1f", i.Kind, i.MiB))
				}
			}
			out = append(out, row("scale", fmt.Sprintf("informer MiB at %d policies", p.Policies), strings.Join(parts, ", ")),
				row("scale", fmt.Sprintf("policy snapshot at %d policies", p.Policies), fmt.Sprintf("%.0f MiB", p.SnapshotMB)))
		}
	}
	for _, c := range r.CLI {
		rw := row("cli", fmt.Sprintf("check %d objects: wall, peak RSS", c.Objects), fmt.Sprintf("%.2f s, %.0f MiB", c.WallS, c.PeakMiB))
		if c.Objects >= 100_000 {
			rw = target(rw, "< 10 s, < 1024 MiB", c.WallS < 10 && c.PeakMiB < 1024)
		}
		out = append(out, rw)
	}
	return out
}

func loadRows(l *loadReport) []summaryRow {
	var out []summaryRow
	out = append(out, target(row("load", "RSS with the 10k-policy snapshot synced", fmt.Sprintf("%.0f MiB (sync %.1fs)", l.RSSSynced, l.SyncS)), "< 150 MiB", l.RSSSynced < 150))
	for _, v := range l.Levels {
		rw := row("load", fmt.Sprintf("%s c=%d: req/s, p50/p90/p99/max, errors, CPU/1000, RSS", v.Protocol, v.Concurrency),
			fmt.Sprintf("%.0f/s, %.2f/%.2f/%.2f/%.1f ms, %d/%d, %.2f s, %.0f MiB", v.RequestsPerS, v.P50ms, v.P90ms, v.P99ms, v.MaxMs, v.Errors, v.Requests, v.CPUsPer1000, v.RSSMiB))
		if v.Concurrency == 32 && v.Protocol == l.Protocol {
			rw = target(rw, "≥ 5000/s, 0 errors", v.RequestsPerS >= 5000 && v.Errors == 0)
		} else {
			rw = target(rw, "0 errors", v.Errors == 0)
		}
		out = append(out, rw)
	}
	f := l.FixedRate
	gc := ""
	if f.GCTimeShare != nil && f.GCSlowShare != nil {
		gc = fmt.Sprintf("; collections and %s after: %.0f%% of the time, %.0f%% of the requests over %s", gcDrain, 100**f.GCTimeShare, 100**f.GCSlowShare, slowAfter)
	}
	out = append(out, target(row("load", fmt.Sprintf("%s fixed %.0f/s (half of 5,000/s): p50/p99/max", l.Protocol, f.Rate),
		fmt.Sprintf("%.2f/%.2f/%.1f ms (server p99 ≤ %.2g ms; sender lag p99 %.2f ms; %s%s), errors %d/%d", f.P50ms, f.P99ms, f.MaxMs, f.ServerP99ms, f.SenderLagP99ms, f.Cores, gc, f.Errors, f.Requests)), "p99 < 2 ms", f.P99ms < 2 && f.Errors == 0))
	out = appendFloorRow(out, "no-op webhook", l.Protocol, l.NoopFloor)
	out = appendFloorRow(out, "no-op on controller-runtime's admission plumbing", l.Protocol, l.PlumbingFloor)
	if s := l.Soak; s.Requests > 0 {
		growth := s.EndMiB - s.StartMiB
		out = append(out, target(row("load", fmt.Sprintf("soak %s at %.0f/s: RSS start/end/max", s.Duration, s.Rate),
			fmt.Sprintf("%.0f/%.0f/%.0f MiB, p99 %.2f ms, errors %d/%d", s.StartMiB, s.EndMiB, s.MaxMiB, s.P99ms, s.Errors, s.Requests)),
			"no growth (< 5%)", growth < 0.05*s.StartMiB && s.Errors == 0))
	}
	return out
}

// appendFloorRow adds a floor's row: its rate at concurrency 32 beside modelguard's, and its
// fixed-rate latency when it was measured.
func appendFloorRow(out []summaryRow, name, protocol string, n *floorReport) []summaryRow {
	if n == nil {
		return out
	}
	measure := fmt.Sprintf("floor: %s, %s c=32 req/s (modelguard's share), CPU/1000", name, protocol)
	value := fmt.Sprintf("%.0f/s (%.0f%%), %.2f s", n.C32PerS, 100*n.C32Share, n.C32CPUPer1000)
	errs := n.C32Errors
	if f := n.Fixed; f != nil {
		measure += fmt.Sprintf("; fixed %.0f/s p50/p99/max", f.Rate)
		value += fmt.Sprintf("; %.2f/%.2f/%.1f ms (%s)", f.P50ms, f.P99ms, f.MaxMs, f.Cores)
		errs += f.Errors
	}
	return append(out, target(row("load", measure, fmt.Sprintf("%s, errors %d", value, errs)), "0 errors", errs == 0))
}

func printTable(w io.Writer, r *report) {
	etcd := "etcd --unsafe-no-fsync (envtest)"
	if r.EtcdFsync {
		etcd = "etcd with fsync"
	}
	fmt.Fprintf(w, "\nmodelguard bench — %s — %s — medians of %d runs — took %s\n\n", r.Machine, etcd, r.Runs, r.Took)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SECTION\tMEASURE\tVALUE\tTARGET\tMET")
	for _, s := range r.Targets {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Section, s.Measure, s.Value, s.Target, s.Met)
	}
	_ = tw.Flush()
}
