package main

import (
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/mvcc/mvccpb"
)

// expectation is what the writers know about the event a write must produce.
type expectation struct {
	put  bool
	key  string
	prev int64 // mod revision of the version replaced or deleted; 0 for a create
}

// watchLog records what one watch delivered. In these scenarios every write is a
// transaction of one operation, so each revision carries exactly one event.
type watchLog struct {
	mu          sync.Mutex
	events      map[int64]*clientv3.Event
	lastRev     int64 // highest event revision delivered so far
	vouched     int64 // highest revision a progress response has vouched for
	lastEventAt time.Time
	done        chan struct{}

	Duplicates int `json:"duplicates"`
	OutOfOrder int `json:"outOfOrder"`
	Progress   int `json:"progressResponses"`
	// a progress response below an event already delivered, or an event at or below a
	// revision a progress response already vouched for: kube-apiserver's watch cache
	// takes a progress revision as "everything up to here arrived"
	ProgressBelowEvent int    `json:"progressBelowEvent"`
	EventBelowProgress int    `json:"eventBelowProgress"`
	Ended              string `json:"watchEnded,omitempty"` // why the watch channel ended early
}

func newWatchLog() *watchLog {
	return &watchLog{events: map[int64]*clientv3.Event{}, done: make(chan struct{})}
}

// consume reads the watch channel until it closes.
func (w *watchLog) consume(wch clientv3.WatchChan) {
	defer close(w.done)
	for resp := range wch {
		w.mu.Lock()
		if err := resp.Err(); err != nil {
			w.Ended = err.Error()
			w.mu.Unlock()
			continue // clientv3 closes the channel after a terminal error
		}
		if resp.IsProgressNotify() {
			w.Progress++
			rev := resp.Header.Revision
			if rev < w.lastRev {
				w.ProgressBelowEvent++
			}
			if rev > w.vouched {
				w.vouched = rev
			}
		}
		for _, ev := range resp.Events {
			rev := ev.Kv.ModRevision
			if _, dup := w.events[rev]; dup {
				w.Duplicates++
				continue
			}
			if rev <= w.lastRev {
				w.OutOfOrder++
			}
			if rev <= w.vouched {
				w.EventBelowProgress++
			}
			if rev > w.lastRev {
				w.lastRev = rev
			}
			w.events[rev] = ev
			w.lastEventAt = time.Now()
		}
		w.mu.Unlock()
	}
	w.mu.Lock()
	if w.Ended == "" {
		w.Ended = "watch channel closed"
	}
	w.mu.Unlock()
}

// stop cancels the watch and waits for consume to end; an end it causes is not reported.
func (w *watchLog) stop(cancel func()) {
	w.mu.Lock()
	ended := w.Ended
	w.mu.Unlock()
	cancel()
	select {
	case <-w.done:
	case <-time.After(5 * time.Second):
	}
	w.mu.Lock()
	w.Ended = ended
	w.mu.Unlock()
}

// count is how many distinct events arrived.
func (w *watchLog) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.events)
}

// waitFor waits until n distinct events arrived or the deadline passed.
func (w *watchLog) waitFor(n int, deadline time.Time) {
	for w.count() < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}

// eventCheck compares what arrived with what the writers expect.
type eventCheck struct {
	Expected      int   `json:"expectedEvents"`
	Received      int   `json:"receivedEvents"`
	Missing       int   `json:"missingEvents"`
	FirstMissing  int64 `json:"firstMissingRevision,omitempty"` // relative to the watch's start revision
	Unexpected    int   `json:"unexpectedEvents"`
	WrongEvent    int   `json:"wrongEvents"` // wrong type or key for the revision
	MissingPrevKV int   `json:"missingPrevKv"`
	WrongPrevKV   int   `json:"wrongPrevKv"`
}

// check compares; withPrevKV says whether the watch asked for prev_kv.
func (w *watchLog) check(expected map[int64]expectation, startRev int64, withPrevKV bool) eventCheck {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := eventCheck{Expected: len(expected), Received: len(w.events)}
	for rev, want := range expected {
		ev, ok := w.events[rev]
		if !ok {
			c.Missing++
			if c.FirstMissing == 0 || rev-startRev < c.FirstMissing {
				c.FirstMissing = rev - startRev
			}
			continue
		}
		if (ev.Type == mvccpb.PUT) != want.put || string(ev.Kv.Key) != want.key {
			c.WrongEvent++
		}
		if !withPrevKV {
			continue
		}
		switch {
		case want.prev == 0 && ev.PrevKv != nil:
			c.WrongPrevKV++ // a create has nothing before it
		case want.prev != 0 && ev.PrevKv == nil:
			c.MissingPrevKV++
		case want.prev != 0 && ev.PrevKv.ModRevision != want.prev:
			c.WrongPrevKV++
		}
	}
	for rev := range w.events {
		if _, ok := expected[rev]; !ok {
			c.Unexpected++
		}
	}
	return c
}
