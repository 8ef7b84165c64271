package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// gcCycle is one collection as GODEBUG=gctrace=1 reports it: from its start to the end of
// mark termination (the concurrent sweep that follows costs the allocating goroutines, not a
// worker of its own).
type gcCycle struct {
	start, end time.Time
}

// gcTraceLine matches the runtime's line "gc 12 @3.456s 2%: 0.015+45+0.021 ms clock, ...":
// the cycle number, its start since the process started, and the wall-clock phases (sweep
// termination, concurrent mark, mark termination).
var gcTraceLine = regexp.MustCompile(`^gc \d+ @([0-9.]+)s \d+%: ([0-9.]+)\+([0-9.]+)\+([0-9.]+) ms clock`)

// parseGCTrace reads the cycles of a gctrace log (other lines are skipped), placing them on
// the wall clock from processStart, when the process was started (the runtime counts from
// its own start a few milliseconds later, well under a mark phase).
func parseGCTrace(r io.Reader, processStart time.Time) ([]gcCycle, error) {
	var out []gcCycle
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20) // the server's JSON log lines can be long
	for sc.Scan() {
		m := gcTraceLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		at, err := seconds(m[1])
		if err != nil {
			return nil, fmt.Errorf("gctrace start %q: %w", m[1], err)
		}
		var wall time.Duration
		for _, phase := range m[2:5] {
			d, err := millis(phase)
			if err != nil {
				return nil, fmt.Errorf("gctrace phase %q: %w", phase, err)
			}
			wall += d
		}
		start := processStart.Add(at)
		out = append(out, gcCycle{start: start, end: start.Add(wall)})
	}
	return out, sc.Err()
}

func seconds(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(s, 64)
	return time.Duration(f * float64(time.Second)), err
}

func millis(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(s, 64)
	return time.Duration(f * float64(time.Millisecond)), err
}

// gcShares relates slow requests to collections within the run [from, to): the share of the
// run's time that lies in a cycle or within drain after it (the queue a cycle builds takes
// that long to clear), and the share of the slow requests sent in that time. Slow requests
// crowding into that time (a second share well above the first) implicate the collector;
// shares alike acquit it.
func gcShares(cycles []gcCycle, slow []time.Time, from, to time.Time, drain time.Duration) (timeShare, slowShare float64) {
	if !to.After(from) {
		return 0, 0
	}
	ws := windows(cycles, drain)
	var covered time.Duration
	for _, c := range ws {
		s, e := maxTime(c.start, from), minTime(c.end, to)
		if e.After(s) {
			covered += e.Sub(s)
		}
	}
	timeShare = float64(covered) / float64(to.Sub(from))
	if len(slow) == 0 {
		return timeShare, 0
	}
	in := 0
	for _, t := range slow {
		if inWindow(ws, t) {
			in++
		}
	}
	return timeShare, float64(in) / float64(len(slow))
}

// windows extends each cycle by drain and merges those that overlap, so no time counts twice.
func windows(cycles []gcCycle, drain time.Duration) []gcCycle {
	var out []gcCycle
	for _, c := range cycles {
		w := gcCycle{start: c.start, end: c.end.Add(drain)}
		if n := len(out); n > 0 && !w.start.After(out[n-1].end) {
			out[n-1].end = maxTime(out[n-1].end, w.end)
			continue
		}
		out = append(out, w)
	}
	return out
}

func inWindow(ws []gcCycle, t time.Time) bool {
	for _, w := range ws {
		if !t.Before(w.start) && t.Before(w.end) {
			return true
		}
	}
	return false
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// gcTraceOf reads the collections of the server's log (its stderr), when it runs with
// GODEBUG=gctrace=1.
func (s *server) gcTraceOf() ([]gcCycle, error) {
	f, err := os.Open(s.logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseGCTrace(f, s.started)
}

// tracesGC reports whether env turns gctrace on.
func tracesGC(env []string) bool {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			for _, setting := range strings.Split(v, ",") {
				if setting == "gctrace=1" {
					return true
				}
			}
		}
	}
	return false
}
