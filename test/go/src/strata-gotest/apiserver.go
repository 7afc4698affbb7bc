package main

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
)

const (
	objects     = 3000
	updates     = 1000 // two per object on the first 500 objects
	deletes     = 1000 // objects 1000..1999
	concurrency = 16
	pageSize    = 500
	valueBytes  = 1024
)

type apiserverResult struct {
	Scenario string `json:"scenario"`
	eventCheck
	*watchLog
	// how long after the last write the wait for the events ended
	WaitMs           float64  `json:"waitAfterWritesMs"`
	Lists            int      `json:"lists"`
	ListErrors       []string `json:"listErrors"`
	Retries          int64    `json:"updateRetries"`
	ProgressRequests int64    `json:"progressRequests"`
	MaxRequestMs     float64  `json:"maxRequestMs"`
	MaxRequestOp     string   `json:"maxRequestOp"`
	WriteSeconds     float64  `json:"writeSeconds"`
	Errors           []string `json:"errors"`
	ErrorCount       int      `json:"errorCount"`
}

// apiserver is the traffic one kube-apiserver sends: a long-lived prefix watch with
// prev_kv and progress notifications, progress requests on the same watch stream,
// guarded creates, updates and deletes from many goroutines, and paginated, whole and
// count-only lists — all over one client connection, as in issue 12.
func apiserver(endpoint string) *apiserverResult {
	res := &apiserverResult{Scenario: "apiserver", watchLog: newWatchLog(), ListErrors: []string{}, Errors: []string{}}
	errs := &errorList{}
	lat := &latencies{}
	cli, err := newClient(endpoint)
	if err != nil {
		res.Errors = []string{"connect: " + err.Error()}
		return res
	}
	defer cli.Close()
	prefix := fmt.Sprintf("/registry/gotest/%d/", time.Now().UnixNano())
	key := func(i int) string { return fmt.Sprintf("%sobj-%05d", prefix, i) }

	// list, then watch from the list's revision + 1, as the apiserver's reflector does
	var startRev int64
	if err := lat.time("initial list", func(ctx context.Context) error {
		r, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
		if err == nil {
			startRev = r.Header.Revision
		}
		return err
	}); err != nil {
		res.Errors = []string{"initial list: " + err.Error()}
		return res
	}
	// the apiserver's watch and its progress requests share the require-leader context,
	// so clientv3 puts them on the same gRPC stream
	watchCtx, stopWatch := context.WithCancel(clientv3.WithRequireLeader(context.Background()))
	defer stopWatch()
	wch := cli.Watch(watchCtx, prefix, clientv3.WithPrefix(), clientv3.WithPrevKV(),
		clientv3.WithProgressNotify(), clientv3.WithRev(startRev+1))
	go res.watchLog.consume(wch)
	var progressRequests int64
	go func() {
		for watchCtx.Err() == nil {
			ctx, cancel := context.WithTimeout(watchCtx, 5*time.Second)
			if err := cli.RequestProgress(ctx); err == nil {
				atomic.AddInt64(&progressRequests, 1)
			} else if watchCtx.Err() == nil {
				errs.add("progress request: %v", err)
			}
			cancel()
			time.Sleep(100 * time.Millisecond)
		}
	}()

	var mu sync.Mutex
	expected := map[int64]expectation{}
	modRev := map[string]int64{} // latest mod revision the writers know per key
	record := func(rev int64, e expectation) {
		mu.Lock()
		expected[rev] = e
		if e.put {
			modRev[e.key] = rev
		}
		mu.Unlock()
	}
	known := func(k string) int64 {
		mu.Lock()
		defer mu.Unlock()
		return modRev[k]
	}
	lists := &lister{cli: cli, prefix: prefix, lat: lat}

	written := time.Now()
	parallel(objects, func(i int) {
		k := key(i)
		var resp *clientv3.TxnResponse
		err := lat.time("create txn", func(ctx context.Context) (err error) {
			resp, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", 0)).
				Then(clientv3.OpPut(k, value(i, 0))).Else(clientv3.OpGet(k)).Commit()
			return err
		})
		switch {
		case err != nil:
			errs.add("create %s: %v", k, err)
		case !resp.Succeeded:
			errs.add("create %s: key already exists", k)
		default:
			record(resp.Header.Revision, expectation{put: true, key: k})
		}
	})
	// big lists with nothing else going on, as reflectors relist when an apiserver
	// starts: clean bandwidth samples are what let grpc-go's BDP estimator grow the
	// window to MiBs mid-connection (lists overlapping the creates hide issue 12)
	lists.expect(objects, 3)

	// updates, two per object, so concurrent updaters of one object conflict and retry
	// with the object the failed txn returned, as GuaranteedUpdate does; a lister reads
	// the changing prefix alongside
	stopLister := lists.background()
	parallel(updates, func(i int) {
		k := key(i / 2)
		rev := known(k)
		for attempt := 0; attempt < 50; attempt++ {
			var resp *clientv3.TxnResponse
			err := lat.time("update txn", func(ctx context.Context) (err error) {
				resp, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
					Then(clientv3.OpPut(k, value(i, attempt+1))).Else(clientv3.OpGet(k)).Commit()
				return err
			})
			if err != nil {
				errs.add("update %s: %v", k, err)
				return
			}
			if resp.Succeeded {
				record(resp.Header.Revision, expectation{put: true, key: k, prev: rev})
				return
			}
			atomic.AddInt64(&res.Retries, 1)
			kvs := resp.Responses[0].GetResponseRange().Kvs
			if len(kvs) != 1 {
				errs.add("update %s: failed compare returned %d objects", k, len(kvs))
				return
			}
			rev = kvs[0].ModRevision
		}
		errs.add("update %s: still conflicting after 50 attempts", k)
	})
	stopLister()
	lists.expect(objects, 1)

	stopLister = lists.background()
	parallel(deletes, func(i int) {
		k := key(1000 + i)
		rev := known(k)
		var resp *clientv3.TxnResponse
		err := lat.time("delete txn", func(ctx context.Context) (err error) {
			resp, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
				Then(clientv3.OpDelete(k)).Else(clientv3.OpGet(k)).Commit()
			return err
		})
		switch {
		case err != nil:
			errs.add("delete %s: %v", k, err)
		case !resp.Succeeded:
			errs.add("delete %s: compare failed though nothing else writes it", k)
		default:
			record(resp.Header.Revision, expectation{key: k, prev: rev})
		}
	})
	stopLister()
	writesEnded := time.Now()
	res.WriteSeconds = writesEnded.Sub(written).Seconds()
	lists.expect(objects-deletes, 1)

	// every event should be on its way already; a stalled stream never catches up
	res.watchLog.waitFor(len(expected), writesEnded.Add(10*time.Second))
	res.WaitMs = ms(time.Since(writesEnded))
	res.watchLog.stop(stopWatch)
	mu.Lock()
	res.eventCheck = res.watchLog.check(expected, startRev, true)
	mu.Unlock()
	res.ProgressRequests = atomic.LoadInt64(&progressRequests)
	res.Lists = lists.count()
	res.ListErrors = lists.errs.snapshot()
	res.MaxRequestMs, res.MaxRequestOp = lat.maxMs, lat.maxOp
	res.Errors, res.ErrorCount = errs.snapshot(), errs.count
	return res
}

// parallel runs f(0..n-1) on `concurrency` goroutines.
func parallel(n int, f func(i int)) {
	var next int64 = -1
	var wg sync.WaitGroup
	for g := 0; g < concurrency; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(atomic.AddInt64(&next, 1)); i < n; i = int(atomic.AddInt64(&next, 1)) {
				f(i)
			}
		}()
	}
	wg.Wait()
}

// value is a 1 KiB object body, different for each write of an object.
func value(i, generation int) string {
	head := fmt.Sprintf(`{"kind":"ConfigMap","name":"obj-%05d","generation":%d,"data":"`, i, generation)
	return head + string(bytes.Repeat([]byte{'x'}, valueBytes-len(head)-2)) + `"}`
}

// lister reads the prefix the three ways kube-apiserver does: pages of 500 at the first
// page's revision, the whole prefix at once, and count only.
type lister struct {
	cli    *clientv3.Client
	prefix string
	lat    *latencies
	errs   errorList
	n      int64
}

func (l *lister) count() int { return int(atomic.LoadInt64(&l.n)) }

// background lists in a loop until the returned stop is called; while writes go on only
// the answers' own consistency can be checked.
func (l *lister) background() (stop func()) {
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for {
			select {
			case <-done:
				return
			default:
			}
			l.all(-1)
		}
	}()
	return func() { close(done); <-ended }
}

// expect lists `rounds` times each way and checks each finds n objects.
func (l *lister) expect(n int64, rounds int) {
	for r := 0; r < rounds; r++ {
		l.all(n)
	}
}

// all runs one list of each kind; want < 0 checks consistency only.
func (l *lister) all(want int64) {
	end := clientv3.GetPrefixRangeEnd(l.prefix)
	// paginated, as the apiserver pages a LIST with limit=500
	var rev, total, items int64
	from := l.prefix
	var lastKey []byte
	for page := 0; ; page++ {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(pageSize)}
		if page > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		var r *clientv3.GetResponse
		if err := l.lat.time("paginated list page", func(ctx context.Context) (err error) {
			r, err = l.cli.Get(ctx, from, opts...)
			return err
		}); err != nil {
			l.errs.add("paginated list page %d: %v", page, err)
			return
		}
		atomic.AddInt64(&l.n, 1)
		if page == 0 {
			rev, total = r.Header.Revision, r.Count
		}
		for _, kv := range r.Kvs {
			if lastKey != nil && bytes.Compare(kv.Key, lastKey) <= 0 {
				l.errs.add("paginated list at %d: key %q after %q", rev, kv.Key, lastKey)
			}
			lastKey = kv.Key
		}
		items += int64(len(r.Kvs))
		if !r.More || len(r.Kvs) == 0 {
			break
		}
		from = string(lastKey) + "\x00"
	}
	if items != total {
		l.errs.add("paginated list at %d: %d items, first page counted %d", rev, items, total)
	}
	if want >= 0 && items != want {
		l.errs.add("paginated list at %d: %d items, want %d", rev, items, want)
	}
	// the whole prefix in one response (about 3 MiB: what makes grpc-go grow its window)
	var r *clientv3.GetResponse
	if err := l.lat.time("whole list", func(ctx context.Context) (err error) {
		r, err = l.cli.Get(ctx, l.prefix, clientv3.WithPrefix())
		return err
	}); err != nil {
		l.errs.add("whole list: %v", err)
		return
	}
	atomic.AddInt64(&l.n, 1)
	if int64(len(r.Kvs)) != r.Count || (want >= 0 && r.Count != want) {
		l.errs.add("whole list at %d: %d items, count %d, want %d", r.Header.Revision, len(r.Kvs), r.Count, want)
	}
	// count only, as the apiserver's object-count metrics read it
	if err := l.lat.time("count", func(ctx context.Context) (err error) {
		r, err = l.cli.Get(ctx, l.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err
	}); err != nil {
		l.errs.add("count: %v", err)
		return
	}
	atomic.AddInt64(&l.n, 1)
	if len(r.Kvs) != 0 || (want >= 0 && r.Count != want) {
		l.errs.add("count at %d: %d (with %d items), want %d", r.Header.Revision, r.Count, len(r.Kvs), want)
	}
}
