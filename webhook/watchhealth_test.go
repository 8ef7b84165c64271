package webhook

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/modelguard/modelguard/policy"
)

// fakeLW hands out the watches and errors a test queues.
type fakeLW struct {
	watchErr error
	listErr  error
	watches  []*watch.RaceFreeFakeWatcher
}

func (f *fakeLW) List(metav1.ListOptions) (runtime.Object, error) {
	return &securityv1.AuthorizationPolicyList{}, f.listErr
}

func (f *fakeLW) Watch(metav1.ListOptions) (watch.Interface, error) {
	if f.watchErr != nil {
		return nil, f.watchErr
	}
	w := watch.NewRaceFreeFake()
	f.watches = append(f.watches, w)
	return w, nil
}

func TestWatchHealth(t *testing.T) {
	h := NewWatchHealth()
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h.now = func() time.Time { return clock }
	lw := &fakeLW{}
	tracked := &trackedListWatch{inner: toolscache.ToListerWatcherWithContext(lw), kind: "AuthorizationPolicy", health: h}
	ctx := context.Background()
	require.NoError(t, h.Check(), "nothing watched yet")

	_, err := tracked.ListWithContext(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	w, err := tracked.WatchWithContext(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.NoError(t, h.Check(), "the watch is open")

	// Events pass through unchanged.
	lw.watches[0].Add(&securityv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: "a"}})
	ev := <-w.ResultChan()
	assert.Equal(t, watch.Added, ev.Type)

	// The API server ends the watch (as it does every few minutes): reopening within the
	// grace period is not an outage; staying closed is.
	lw.watches[0].Stop()
	_, open := <-w.ResultChan()
	require.False(t, open, "the tracked watch ends with the real one")
	require.Eventually(t, func() bool { h.mu.Lock(); defer h.mu.Unlock(); return h.kinds["AuthorizationPolicy"].open == 0 }, time.Second, time.Millisecond)
	require.NoError(t, h.Check())
	clock = clock.Add(watchGrace)
	assert.ErrorContains(t, h.Check(), "AuthorizationPolicy (closed 2s ago)")

	// The API server is gone: the next watch fails, and the state is stale at once.
	lw.watchErr = errors.New("connection refused")
	_, err = tracked.WatchWithContext(ctx, metav1.ListOptions{})
	require.Error(t, err)
	assert.ErrorContains(t, h.Check(), "connection refused")

	// It is back: a watch opens and the state is current again.
	lw.watchErr = nil
	w2, err := tracked.WatchWithContext(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.NoError(t, h.Check())

	// A failed relist is an outage too, until a list or watch succeeds.
	w2.Stop()
	lw.listErr = errors.New("etcd unavailable")
	_, err = tracked.ListWithContext(ctx, metav1.ListOptions{})
	require.Error(t, err)
	assert.ErrorContains(t, h.Check(), "etcd unavailable")
	lw.listErr = nil
	_, err = tracked.ListWithContext(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	_, err = tracked.WatchWithContext(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.NoError(t, h.Check())
}

// A Stop by the consumer (the reflector giving up on a watch) ends the forwarding without
// waiting for an event nobody will read.
func TestTrackedWatchStop(t *testing.T) {
	h := NewWatchHealth()
	lw := &fakeLW{}
	tracked := &trackedListWatch{inner: toolscache.ToListerWatcherWithContext(lw), kind: "PeerAuthentication", health: h}
	w, err := tracked.WatchWithContext(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	lw.watches[0].Add(&securityv1.PeerAuthentication{})
	time.Sleep(10 * time.Millisecond) // the event is now pending in the forwarder
	w.Stop()
	for range w.ResultChan() {
	}
	require.Eventually(t, func() bool { h.mu.Lock(); defer h.mu.Unlock(); return h.kinds["PeerAuthentication"].open == 0 }, time.Second, time.Millisecond)
}

func TestKindName(t *testing.T) {
	assert.Equal(t, "AuthorizationPolicy", kindName(&securityv1.AuthorizationPolicy{}))
	u := modelObject(policy.GVKInferenceService)
	assert.Equal(t, "InferenceService", kindName(u))
}
