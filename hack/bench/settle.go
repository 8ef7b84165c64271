package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// cpuTimes is the machine's CPU time so far from /proc/stat, in clock ticks: busy (user, nice,
// system, irq, softirq, steal), steal (the hypervisor ran something else) and total.
type cpuTimes struct{ busy, steal, total int64 }

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
		if i == 7 {
			t.steal = v
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

// coreUse is where the machine's cores went during a run, in cores (1 = one core busy
// throughout): the server under test, the load generator (this process), everything else
// (the test API server and etcd, mostly) and steal. On a machine the client shares with the
// server, a latency tail the server's own histogram does not show is found here.
type coreUse struct {
	Server float64 `json:"server"`
	Client float64 `json:"client"`
	Other  float64 `json:"other"`
	Steal  float64 `json:"steal"`
}

// coreMeter measures a coreUse from its start to its stop.
type coreMeter struct {
	serverCPU      func() (time.Duration, error)
	cores          int
	began          time.Time
	machine        cpuTimes
	server, client time.Duration
	err            error
}

func startCoreMeter(serverCPU func() (time.Duration, error), cores int) *coreMeter {
	m := &coreMeter{serverCPU: serverCPU, cores: cores, began: time.Now()}
	var errs [3]error
	m.machine, errs[0] = machineCPU()
	m.server, errs[1] = serverCPU()
	m.client, errs[2] = processCPU("self")
	m.err = errors.Join(errs[:]...)
	return m
}

// stop ends the measurement: where the cores went, and the server's CPU time in all.
func (m *coreMeter) stop() (coreUse, time.Duration, error) {
	wall := time.Since(m.began).Seconds()
	machine, err1 := machineCPU()
	server, err2 := m.serverCPU()
	client, err3 := processCPU("self")
	if err := errors.Join(m.err, err1, err2, err3); err != nil {
		return coreUse{}, 0, fmt.Errorf("cpu accounting: %w", err)
	}
	if wall <= 0 || machine.total <= m.machine.total {
		return coreUse{}, server - m.server, nil
	}
	perTick := float64(m.cores) / float64(machine.total-m.machine.total)
	u := coreUse{
		Server: (server - m.server).Seconds() / wall,
		Client: (client - m.client).Seconds() / wall,
		Steal:  float64(machine.steal-m.machine.steal) * perTick,
	}
	u.Other = max(0, float64(machine.busy-m.machine.busy)*perTick-u.Steal-u.Server-u.Client)
	return u, server - m.server, nil
}

// medianUse is the component-wise median of some coreUses.
func medianUse(us []coreUse) coreUse {
	pick := func(f func(coreUse) float64) float64 {
		xs := make([]float64, len(us))
		for i, u := range us {
			xs[i] = f(u)
		}
		return median(xs)
	}
	return coreUse{
		Server: pick(func(u coreUse) float64 { return u.Server }),
		Client: pick(func(u coreUse) float64 { return u.Client }),
		Other:  pick(func(u coreUse) float64 { return u.Other }),
		Steal:  pick(func(u coreUse) float64 { return u.Steal }),
	}
}

func (u coreUse) String() string {
	return fmt.Sprintf("cores: server %.2f, client %.2f, other %.2f, steal %.2f", u.Server, u.Client, u.Other, u.Steal)
}
