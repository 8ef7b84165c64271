package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// cpuTimes is the machine's CPU time so far from /proc/stat, in clock ticks: busy (user, nice,
// system, irq, softirq, steal) and total.
type cpuTimes struct{ busy, total int64 }

func machineCPU() (cpuTimes, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var t cpuTimes
	for i, s := range f[1:9] { // user nice system idle iowait irq softirq steal
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("/proc/stat: field %d: %w", i+1, err)
		}
		t.total += v
		if i != 3 && i != 4 { // idle and iowait are not work
			t.busy += v
		}
	}
	return t, nil
}

// busyCores is how many cores were busy on average between two readings.
func busyCores(before, after cpuTimes, cores int) float64 {
	if after.total <= before.total {
		return 0
	}
	return float64(after.busy-before.busy) / float64(after.total-before.total) * float64(cores)
}

// settle waits until the machine has been quiet (under maxBusy cores busy) for one whole
// second, or until limit. After a bulk load the test API server and etcd keep working for a
// while (compaction, garbage collection of a multi-GiB heap); a latency measured then would
// be theirs, not the webhook's. It returns how long it waited.
func settle(ctx context.Context, cores int, maxBusy float64, limit time.Duration) (time.Duration, error) {
	began := time.Now()
	prev, err := machineCPU()
	if err != nil {
		return 0, err
	}
	for {
		select {
		case <-ctx.Done():
			return time.Since(began), ctx.Err()
		case <-time.After(time.Second):
		}
		now, err := machineCPU()
		if err != nil {
			return 0, err
		}
		if busyCores(prev, now, cores) < maxBusy || time.Since(began) >= limit {
			return time.Since(began), nil
		}
		prev = now
	}
}
