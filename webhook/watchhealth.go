package webhook

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
)

// WatchHealth tracks whether each informer's watch on the API server is open. When a watch
// breaks (the API server restarts, the network between them fails) the cache keeps serving
// what it last saw, and nothing tells the handlers: judging against it could admit what a
// change made meanwhile forbids. So while a watch is down the mesh state is unavailable and
// the webhooks fail closed; readiness drops and returns with the watch.
//
// The API server ends every watch after a few minutes and the reflector opens the next one at
// once: a watch closed for less than watchGrace, with no error since, still counts as open.
type WatchHealth struct {
	mu    sync.Mutex
	kinds map[string]*watchState
	now   func() time.Time
}

type watchState struct {
	open     int       // watches currently open
	closedAt time.Time // when the last one closed
	err      error     // the last List or Watch error, cleared by the next success
	errAt    time.Time
}

// watchGrace is how long a closed watch may take to reopen before the state counts as stale.
const watchGrace = 2 * time.Second

// NewWatchHealth tracks no informer yet; CacheOptions wires it into each one.
func NewWatchHealth() *WatchHealth {
	return &WatchHealth{kinds: map[string]*watchState{}, now: time.Now}
}

// Check returns nil while every tracked watch is open (or reopening within watchGrace), and
// otherwise an error naming the kinds whose watch is down and why.
func (h *WatchHealth) Check() error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	var down []string
	for kind, s := range h.kinds {
		if reason := s.down(now); reason != "" {
			down = append(down, kind+" ("+reason+")")
		}
	}
	if len(down) == 0 {
		return nil
	}
	sort.Strings(down)
	return fmt.Errorf("the watch on the API server is down for %s", strings.Join(down, ", "))
}

func (s *watchState) down(now time.Time) string {
	switch {
	case s.err != nil: // the reflector's latest call failed, whatever it left open before
		return fmt.Sprintf("%s ago: %v", now.Sub(s.errAt).Round(time.Millisecond), s.err)
	case s.open > 0:
		return ""
	case !s.closedAt.IsZero() && now.Sub(s.closedAt) >= watchGrace:
		return fmt.Sprintf("closed %s ago", now.Sub(s.closedAt).Round(time.Millisecond))
	}
	return "" // not watched yet (the initial list is what sync waits for) or reopening
}

func (h *WatchHealth) state(kind string) *watchState {
	s, ok := h.kinds[kind]
	if !ok {
		s = &watchState{}
		h.kinds[kind] = s
	}
	return s
}

func (h *WatchHealth) result(kind string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.state(kind)
	if err != nil {
		s.err, s.errAt = err, h.now()
		return
	}
	s.err = nil
}

func (h *WatchHealth) opened(kind string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.state(kind).open++
}

func (h *WatchHealth) closed(kind string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.state(kind)
	s.open--
	s.closedAt = h.now()
}

// newInformer is the cache's informer constructor with each ListerWatcher tracked.
func (h *WatchHealth) newInformer(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration, idx toolscache.Indexers) toolscache.SharedIndexInformer {
	return toolscache.NewSharedIndexInformer(&trackedListWatch{inner: toolscache.ToListerWatcherWithContext(lw), kind: kindName(obj), health: h}, obj, resync, idx)
}

func kindName(obj runtime.Object) string {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		return u.GetKind()
	}
	t := reflect.TypeOf(obj)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Name()
}

// trackedListWatch reports each List and Watch outcome, and each watch's end, to WatchHealth.
type trackedListWatch struct {
	inner  toolscache.ListerWatcherWithContext
	kind   string
	health *WatchHealth
}

func (t *trackedListWatch) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	obj, err := t.inner.ListWithContext(ctx, opts)
	t.health.result(t.kind, err)
	return obj, err
}

func (t *trackedListWatch) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	w, err := t.inner.WatchWithContext(ctx, opts)
	t.health.result(t.kind, err)
	if err != nil {
		return nil, err
	}
	return newTrackedWatch(w, func() { t.health.closed(t.kind) }, func() { t.health.opened(t.kind) }), nil
}

// List and Watch satisfy the older ListerWatcher interface the informer constructor takes.
func (t *trackedListWatch) List(opts metav1.ListOptions) (runtime.Object, error) {
	return t.ListWithContext(context.Background(), opts)
}

func (t *trackedListWatch) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return t.WatchWithContext(context.Background(), opts)
}

// trackedWatch forwards a watch's events and calls closed once when its stream ends.
type trackedWatch struct {
	inner watch.Interface
	out   chan watch.Event
	stop  chan struct{}
	once  sync.Once
}

func newTrackedWatch(inner watch.Interface, closed, opened func()) *trackedWatch {
	w := &trackedWatch{inner: inner, out: make(chan watch.Event), stop: make(chan struct{})}
	opened()
	go func() {
		defer close(w.out)
		defer closed()
		for ev := range inner.ResultChan() {
			select {
			case w.out <- ev:
			case <-w.stop:
				return
			}
		}
	}()
	return w
}

func (w *trackedWatch) ResultChan() <-chan watch.Event { return w.out }

func (w *trackedWatch) Stop() {
	w.once.Do(func() { close(w.stop) })
	w.inner.Stop()
}
