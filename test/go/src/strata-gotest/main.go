// strata-gotest drives a strata (or an etcd) with etcd's own Go client, the client
// kube-apiserver uses, and prints one JSON object with what it observed; the TypeScript
// test asserts on it. The program reports, it does not judge: a broken server shows as
// figures, not as a crash.
//
//	strata-gotest apiserver ENDPOINT
//	strata-gotest stalled ENDPOINT VALUE_BYTES PUTS
//	strata-gotest rangestream ENDPOINT SPEC_JSON
//	strata-gotest watchers ENDPOINT SPEC_JSON
//	strata-gotest kvbench ENDPOINT SPEC_JSON
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
	"google.golang.org/grpc"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: strata-gotest apiserver ENDPOINT | stalled ENDPOINT VALUE_BYTES PUTS | rangestream ENDPOINT SPEC_JSON | watchers ENDPOINT SPEC_JSON | kvbench ENDPOINT SPEC_JSON")
		os.Exit(2)
	}
	var out interface{}
	switch os.Args[1] {
	case "apiserver":
		out = apiserver(os.Args[2])
	case "stalled":
		size, err1 := strconv.Atoi(os.Args[3])
		puts, err2 := strconv.Atoi(os.Args[4])
		if err1 != nil || err2 != nil {
			fmt.Fprintln(os.Stderr, "stalled: VALUE_BYTES and PUTS must be numbers")
			os.Exit(2)
		}
		out = stalled(os.Args[2], size, puts)
	case "rangestream":
		if len(os.Args) < 4 {
			fmt.Fprintln(os.Stderr, "rangestream: SPEC_JSON is missing")
			os.Exit(2)
		}
		out = rangeStream(os.Args[2], os.Args[3])
	case "watchers":
		if len(os.Args) < 4 {
			fmt.Fprintln(os.Stderr, "watchers: SPEC_JSON is missing")
			os.Exit(2)
		}
		out = watchers(os.Args[2], os.Args[3])
	case "kvbench":
		if len(os.Args) < 4 {
			fmt.Fprintln(os.Stderr, "kvbench: SPEC_JSON is missing")
			os.Exit(2)
		}
		out = kvBench(os.Args[2], os.Args[3])
	default:
		fmt.Fprintln(os.Stderr, "unknown scenario", os.Args[1])
		os.Exit(2)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		panic(err)
	}
}

// newClient configures clientv3 as kube-apiserver does (storagebackend/factory/etcd3.go):
// keepalive 30 s / 10 s, a blocking dial, grpc-go's default windows with BDP estimation
// on — which is what raises SETTINGS_INITIAL_WINDOW_SIZE mid-connection (issue 12).
func newClient(endpoint string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:            []string{endpoint},
		DialTimeout:          20 * time.Second,
		DialKeepAliveTime:    30 * time.Second,
		DialKeepAliveTimeout: 10 * time.Second,
		MaxCallRecvMsgSize:   math.MaxInt32,
		DialOptions:          []grpc.DialOption{grpc.WithBlock()},
	})
}

// latencies keeps the slowest single request and what it was.
type latencies struct {
	mu    sync.Mutex
	maxMs float64
	maxOp string
}

// time runs one request under a deadline (so a stuck server ends the run instead of
// hanging it) and records how long it took.
func (l *latencies) time(op string, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	err := f(ctx)
	ms := float64(time.Since(start).Microseconds()) / 1000
	l.mu.Lock()
	if ms > l.maxMs {
		l.maxMs, l.maxOp = ms, op
	}
	l.mu.Unlock()
	return err
}

// errorList collects the first few distinct failures for the report.
type errorList struct {
	mu    sync.Mutex
	list  []string
	count int
}

func (e *errorList) add(format string, args ...interface{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.count++
	if len(e.list) < 20 {
		e.list = append(e.list, fmt.Sprintf(format, args...))
	}
}

func (e *errorList) snapshot() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string{}, e.list...)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
