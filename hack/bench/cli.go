package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/modelguard/modelguard/test/fleet"
)

// cliRow is `modelguard check` on one input size.
type cliRow struct {
	Objects int     `json:"objects"`
	WallS   float64 `json:"wall_s"`       // median
	PeakMiB float64 `json:"peak_rss_mib"` // median of the runs' maximum RSS
	Denied  bool    `json:"exit_1"`
}

// runCLI times the CLI on the fleet of hack/genfleet (10 objects per namespace, a tenth of
// them uncovered), as CI would run it: the binary, a directory of YAML files, JSON output.
func runCLI(ctx context.Context, o options) ([]cliRow, error) {
	var rows []cliRow
	for _, n := range o.cliNamespaces {
		dir := filepath.Join(o.dir, fmt.Sprintf("fleet-%d", n))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		objects, err := fleet.Generate(dir, n)
		if err != nil {
			return nil, err
		}
		row := cliRow{Objects: objects}
		var walls, peaks []float64
		for range o.runs {
			wall, peak, code, err := timeCheck(ctx, o.bin, dir)
			if err != nil {
				return nil, err
			}
			walls, peaks = append(walls, wall.Seconds()), append(peaks, mib(peak))
			row.Denied = code == 1
		}
		row.WallS, row.PeakMiB = median(walls), median(peaks)
		progress("cli: %d objects: %.2f s, peak RSS %.0f MiB", objects, row.WallS, row.PeakMiB)
		rows = append(rows, row)
	}
	return rows, nil
}

// timeCheck runs `modelguard check -f dir -o json` and returns its wall time and peak RSS.
// Exit 1 (something denied) is the expected answer on the fleet; 2 is an error. The peak is
// the process's VmHWM, polled: the rusage of a child would not do, since Linux carries the
// parent's peak across the fork and exec into the child's ru_maxrss.
func timeCheck(ctx context.Context, bin, dir string) (time.Duration, int64, int, error) {
	cmd := exec.CommandContext(ctx, bin, "check", "-f", dir, "-o", "json")
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return 0, 0, 0, err
	}
	defer devnull.Close()
	cmd.Stdout = devnull
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, 0, err
	}
	done := make(chan struct{})
	peak := make(chan int64)
	go func() { peak <- pollPeak(cmd.Process.Pid, done) }()
	err = cmd.Wait()
	wall := time.Since(start)
	close(done)
	hwm := <-peak
	code := cmd.ProcessState.ExitCode()
	if err != nil && code != 1 {
		return 0, 0, code, fmt.Errorf("modelguard check -f %s: %w: %s", dir, err, stderr.String())
	}
	return wall, hwm, code, nil
}

// pollPeak reads the process's VmHWM every 2 ms until done, and returns the largest seen.
func pollPeak(pid int, done <-chan struct{}) int64 {
	var peak int64
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := procStatusKBFile(fmt.Sprintf("/proc/%d/status", pid), "VmHWM:"); err == nil {
			peak = max(peak, b)
		}
		select {
		case <-done:
			return peak
		case <-tick.C:
		}
	}
}

// limitedBuffer keeps the first 4 KiB written to it.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 4096 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }
