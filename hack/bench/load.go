package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/modelguard/modelguard/policy"
	"github.com/modelguard/modelguard/test/fleet"
)

// request is one prepared AdmissionReview and the answer the engine gives it.
type request struct {
	uid     types.UID
	body    []byte
	allowed bool
}

// corpus builds the request mix of the load runs (fleet.Mix over fleet.Mesh(namespaces)):
// 70% admitted, 30% denied. Every expectation is checked against policy.Evaluate on the same
// objects, so a load run also checks that the server answers as the engine does.
func corpus(namespaces, size int) ([]request, error) {
	if namespaces < fleet.UncoveredSeldonEvery {
		return nil, fmt.Errorf("the mesh needs at least %d namespaces for the denied Seldon cases", fleet.UncoveredSeldonEvery)
	}
	cfg := policy.DefaultConfig()
	snap := policy.NewSnapshot(cfg)
	for _, o := range fleet.Mesh(namespaces) {
		if err := snap.Upsert(o); err != nil {
			return nil, err
		}
	}
	out := make([]request, 0, size)
	for k := range size {
		obj, admitted := fleet.Mix(k, namespaces)
		want := policy.Evaluate(cfg, snap, obj, policy.Options{}).Allowed
		if want != admitted {
			return nil, fmt.Errorf("corpus: %s %s/%s should be %s by the engine", obj.GetObjectKind().GroupVersionKind().Kind,
				obj.GetNamespace(), obj.GetName(), map[bool]string{true: "admitted", false: "denied"}[admitted])
		}
		body, uid, err := review(obj, k)
		if err != nil {
			return nil, err
		}
		out = append(out, request{uid: uid, body: body, allowed: want})
	}
	return out, nil
}

// review is the AdmissionReview of request k: a CREATE of obj as kube-apiserver sends it.
func review(obj client.Object, k int) ([]byte, types.UID, error) {
	uid := types.UID(fmt.Sprintf("bench-%06d", k))
	body, err := fleet.CreateReview(obj, uid, k)
	return body, uid, err
}

// outcome of one run.
type outcome struct {
	Requests int           `json:"requests"`
	Errors   int           `json:"errors"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	Lat      []time.Duration
	FirstErr string `json:"first_error,omitempty"`
	// SenderLag: how late a fixed-rate sender handed requests to its workers.
	SenderLag latencies
	// Start and End bound a fixed-rate run; Slow are the send times of its requests that
	// took longer than slowAfter (to set against the server's collections, gcShares).
	Start, End time.Time
	Slow       []time.Time
}

// slowAfter is the fixed-rate latency target: a request over it is slow.
const slowAfter = 2 * time.Millisecond

// checkAnswer checks an answer: HTTP 200, the same UID, and the engine's verdict.
func checkAnswer(status int, data []byte, r request) error {
	if status != http.StatusOK {
		return fmt.Errorf("HTTP %d: %.200s", status, data)
	}
	// Only what is checked is decoded, by the faster of the JSON decoders at hand: the load
	// generator shares the machine with the server, and its own CPU adds to every latency it
	// measures.
	var out answer
	if err := jsonv2.Unmarshal(data, &out); err != nil || out.Response == nil {
		return fmt.Errorf("not an AdmissionReview response: %.200s", data)
	}
	if out.Response.UID != r.uid || out.Response.Allowed != r.allowed {
		return fmt.Errorf("request %s: answered uid %s allowed=%v, want allowed=%v (%s)", r.uid, out.Response.UID, out.Response.Allowed, r.allowed, out.Response.Status.Message)
	}
	return nil
}

// answer is the part of an AdmissionReview response the load generator checks.
type answer struct {
	Response *struct {
		UID     types.UID `json:"uid"`
		Allowed bool      `json:"allowed"`
		Status  struct {
			Message string `json:"message"`
		} `json:"status"`
	} `json:"response"`
}

// closedLoop runs `workers` clients back to back for d: the throughput test.
func closedLoop(ctx context.Context, l loader, target string, reqs []request, workers int, d time.Duration) outcome {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	results := make([]outcome, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := &results[w]
			s, err := l.session(target)
			if err != nil {
				res.record(0, err)
				return
			}
			defer s.close()
			for k := w; ctx.Err() == nil; k += workers {
				t0 := time.Now()
				err := s.send(ctx, reqs[k%len(reqs)])
				if ctx.Err() != nil {
					return // cut off by the end of the run, not an error
				}
				res.record(time.Since(t0), err)
			}
		}()
	}
	wg.Wait()
	return merge(results, time.Since(start))
}

// fixedRate sends rate requests per second for d from `workers` clients. Each latency runs
// from the moment the request was handed to the workers: a request that waits for a free
// worker (the server is slow) counts its wait, so a stalled server shows rather than slowing
// the sender down (no coordinated omission). How late the sender itself handed requests over
// (its timer and scheduling, on a machine it shares with the server) is reported apart, as
// SenderLag.
func fixedRate(ctx context.Context, l loader, target string, reqs []request, workers int, rate float64, d time.Duration, every func()) outcome {
	due := make(chan time.Time, workers*16)
	results := make([]outcome, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := &results[w]
			s, err := l.session(target)
			if err != nil {
				res.record(0, err)
				for range due { // keep the sender from blocking
				}
				return
			}
			defer s.close()
			k := w
			for t := range due {
				err := s.send(ctx, reqs[k%len(reqs)])
				lat := time.Since(t)
				res.record(lat, err)
				if lat > slowAfter {
					res.Slow = append(res.Slow, t)
				}
				k += workers
			}
		}()
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lag []time.Duration
	next := start
	for i := 0; next.Sub(start) < d && ctx.Err() == nil; i++ {
		if wait := time.Until(next); wait > 0 {
			time.Sleep(wait)
		}
		select {
		case <-tick.C:
			if every != nil {
				every()
			}
		default:
		}
		now := time.Now()
		lag = append(lag, now.Sub(next))
		due <- now
		next = start.Add(time.Duration(i+1) * interval)
	}
	close(due)
	wg.Wait()
	out := merge(results, time.Since(start))
	out.SenderLag = summarise(lag)
	out.Start, out.End = start, start.Add(out.Elapsed)
	for _, r := range results {
		out.Slow = append(out.Slow, r.Slow...)
	}
	return out
}

func (o *outcome) record(d time.Duration, err error) {
	o.Requests++
	if err != nil {
		o.Errors++
		if o.FirstErr == "" {
			o.FirstErr = err.Error()
		}
		return
	}
	o.Lat = append(o.Lat, d)
}

func merge(rs []outcome, elapsed time.Duration) outcome {
	out := outcome{Elapsed: elapsed}
	for _, r := range rs {
		out.Requests += r.Requests
		out.Errors += r.Errors
		out.Lat = append(out.Lat, r.Lat...)
		if out.FirstErr == "" {
			out.FirstErr = r.FirstErr
		}
	}
	return out
}
