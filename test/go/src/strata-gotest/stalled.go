package main

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
	"google.golang.org/grpc"
)

type stalledResult struct {
	Scenario   string `json:"scenario"`
	ValueBytes int    `json:"valueBytes"`
	eventCheck
	*watchLog
	// how long after the last put the wait for the healthy watcher's events ended
	WaitMs       float64  `json:"waitAfterWritesMs"`
	WriteSeconds float64  `json:"writeSeconds"`
	MaxRequestMs float64  `json:"maxRequestMs"`
	MaxRequestOp string   `json:"maxRequestOp"`
	Errors       []string `json:"errors"`
	ErrorCount   int      `json:"errorCount"`
}

// stalled is issue 17: a watcher on its own connection that stops reading after its
// watch was created, beside a healthy clientv3 watcher of the same prefix, while large
// values are written. The stalled one may fall behind or be cancelled; the healthy one
// must get every event, in order, exactly once, promptly.
func stalled(endpoint string, size, puts int) *stalledResult {
	res := &stalledResult{Scenario: "stalled", ValueBytes: size, watchLog: newWatchLog(), Errors: []string{}}
	errs := &errorList{}
	lat := &latencies{}
	cli, err := newClient(endpoint)
	if err != nil {
		res.Errors = []string{"connect: " + err.Error()}
		return res
	}
	defer cli.Close()
	prefix := fmt.Sprintf("/registry/gotest-stalled/%d/", time.Now().UnixNano())

	// the neighbour: a raw Watch stream on a gRPC connection of its own
	dialCtx, cancelDial := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancelDial()
	conn, err := grpc.DialContext(dialCtx, endpoint, grpc.WithInsecure(), grpc.WithBlock(),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)))
	if err != nil {
		res.Errors = []string{"dial the stalled watcher: " + err.Error()}
		return res
	}
	defer conn.Close()
	stalledCtx, stopStalled := context.WithCancel(context.Background())
	defer stopStalled()
	stream, err := pb.NewWatchClient(conn).Watch(stalledCtx)
	if err == nil {
		err = stream.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{
			CreateRequest: &pb.WatchCreateRequest{Key: []byte(prefix), RangeEnd: []byte(clientv3.GetPrefixRangeEnd(prefix)), PrevKv: true},
		}})
	}
	if err == nil {
		// read the "created" answer so the watch surely exists, then never read again
		_, err = stream.Recv()
	}
	if err != nil {
		res.Errors = []string{"stalled watcher: " + err.Error()}
		return res
	}

	var startRev int64
	if err := lat.time("initial get", func(ctx context.Context) error {
		r, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err == nil {
			startRev = r.Header.Revision
		}
		return err
	}); err != nil {
		res.Errors = []string{"initial get: " + err.Error()}
		return res
	}
	watchCtx, stopWatch := context.WithCancel(clientv3.WithRequireLeader(context.Background()))
	defer stopWatch()
	go res.watchLog.consume(cli.Watch(watchCtx, prefix, clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithRev(startRev+1)))

	var mu sync.Mutex
	expected := map[int64]expectation{}
	body := strings.Repeat("v", size)
	written := time.Now()
	// 4 writers over 10 keys, so most puts replace a version (prev_kv doubles the bytes)
	var wg sync.WaitGroup
	next := make(chan int, puts)
	for i := 0; i < puts; i++ {
		next <- i
	}
	close(next)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				k := fmt.Sprintf("%sobj-%02d", prefix, i%10)
				var resp *clientv3.PutResponse
				err := lat.time("put", func(ctx context.Context) (err error) {
					resp, err = cli.Put(ctx, k, body)
					return err
				})
				if err != nil {
					errs.add("put %s: %v", k, err)
					continue
				}
				mu.Lock()
				expected[resp.Header.Revision] = expectation{put: true, key: k}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	writesEnded := time.Now()
	res.WriteSeconds = writesEnded.Sub(written).Seconds()

	res.watchLog.waitFor(len(expected), writesEnded.Add(10*time.Second))
	res.WaitMs = ms(time.Since(writesEnded))
	res.watchLog.stop(stopWatch)
	mu.Lock()
	// the version a put replaced is its key's put with the next lower revision
	revs := make([]int64, 0, len(expected))
	for rev := range expected {
		revs = append(revs, rev)
	}
	sort.Slice(revs, func(i, j int) bool { return revs[i] < revs[j] })
	last := map[string]int64{}
	for _, rev := range revs {
		e := expected[rev]
		e.prev = last[e.key]
		expected[rev] = e
		last[e.key] = rev
	}
	res.eventCheck = res.watchLog.check(expected, startRev, true)
	mu.Unlock()
	res.MaxRequestMs, res.MaxRequestOp = lat.maxMs, lat.maxOp
	res.Errors, res.ErrorCount = errs.snapshot(), errs.count
	return res
}
