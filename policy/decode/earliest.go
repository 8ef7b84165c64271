package decode

import (
	"math"
	"sync/atomic"
)

// earliestFailure is the index of the earliest failed item of a concurrent decode: items after
// it cannot change the outcome of a sequential decode, so workers skip them.
type earliestFailure struct{ idx atomic.Int64 }

func newEarliestFailure() *earliestFailure {
	e := &earliestFailure{}
	e.idx.Store(math.MaxInt64)
	return e
}

// record notes that item i failed.
func (e *earliestFailure) record(i int64) {
	for cur := e.idx.Load(); i < cur && !e.idx.CompareAndSwap(cur, i); cur = e.idx.Load() {
	}
}

// after reports whether item i comes after a failure.
func (e *earliestFailure) after(i int64) bool { return i > e.idx.Load() }

// any reports whether some item failed.
func (e *earliestFailure) any() bool { return e.idx.Load() != math.MaxInt64 }
