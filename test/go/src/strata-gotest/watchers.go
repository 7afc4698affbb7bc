package main

// The cost of many watchers to the server (issue 25): opens them over a number of streams
// and connections, then writes, and reads the server's CPU time (user+system from
// /proc/PID/stat) around each phase, so the figure is the server's, whatever the client
// costs. Distinct: each watcher watches its own prefix and each write concerns one of
// them (the hub's index is what keeps that cheap); shared: every watcher watches one
// prefix and one write reaches them all (one encoding of the event for all of them);
// with rounds > 1, that many such writes one after another, each once the last reached all.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
	"google.golang.org/grpc/metadata"
)

type watchersSpec struct {
	Pid      int  `json:"pid"`
	Watchers int  `json:"watchers"`
	Streams  int  `json:"streams"`
	Clients  int  `json:"clients"`
	Writes   int  `json:"writes"`
	Shared   bool `json:"shared"`
	Rounds   int  `json:"rounds"`
}

type watchersResult struct {
	RSSBeforeMiB float64  `json:"rssBeforeMiB"`
	RSSOpenMiB   float64  `json:"rssOpenMiB"`
	OpenCPUMs    float64  `json:"openCpuMs"`
	OpenSeconds  float64  `json:"openSeconds"`
	WriteCPUMs   float64  `json:"writeCpuMs"`
	WriteSeconds float64  `json:"writeSeconds"`
	Expected     int64    `json:"expected"`
	Delivered    int64    `json:"delivered"`
	Errors       []string `json:"errors"`
}

// cpuMs is the process's user+system time so far, in milliseconds.
func cpuMs(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// fields after the command name, which is in parentheses and may hold spaces
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	// USER_HZ is 100 on Linux
	return (utime + stime) * 10
}

// rssMiB is the process's resident memory now.
func rssMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kib, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kib / 1024
		}
	}
	return -1
}

func watchers(endpoint, specJSON string) *watchersResult {
	var spec watchersSpec
	res := &watchersResult{Errors: []string{}}
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil || spec.Watchers <= 0 || spec.Streams <= 0 || spec.Clients <= 0 {
		res.Errors = append(res.Errors, fmt.Sprintf("bad spec %q", specJSON))
		return res
	}
	var errs errorList
	clients := make([]*clientv3.Client, spec.Clients)
	for i := range clients {
		c, err := newClient(endpoint)
		if err != nil {
			res.Errors = append(res.Errors, err.Error())
			return res
		}
		defer c.Close()
		clients[i] = c
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prefix := func(i int) string {
		if spec.Shared {
			return "/bench/shared/"
		}
		return fmt.Sprintf("/bench/w%06d/", i)
	}
	var delivered int64
	chans := make([]clientv3.WatchChan, spec.Watchers)
	res.RSSBeforeMiB = rssMiB(spec.Pid)
	cpu0, t0 := cpuMs(spec.Pid), time.Now()
	// each stream opens its watchers in turn (clientv3 does so anyway), the streams at once
	parallel(spec.Streams, func(s int) {
		// clientv3 puts watchers whose contexts carry equal metadata on one stream
		sctx := metadata.AppendToOutgoingContext(ctx, "bench-stream", strconv.Itoa(s))
		c := clients[s%spec.Clients]
		for i := s; i < spec.Watchers; i += spec.Streams {
			chans[i] = c.Watch(sctx, prefix(i), clientv3.WithPrefix())
		}
	})
	res.OpenCPUMs, res.OpenSeconds = cpuMs(spec.Pid)-cpu0, time.Since(t0).Seconds()
	res.RSSOpenMiB = rssMiB(spec.Pid)
	var wg sync.WaitGroup
	for _, ch := range chans {
		wg.Add(1)
		go func(ch clientv3.WatchChan) {
			defer wg.Done()
			for r := range ch {
				if err := r.Err(); err != nil {
					errs.add("watch: %v", err)
					return
				}
				atomic.AddInt64(&delivered, int64(len(r.Events)))
			}
		}(ch)
	}
	rounds := 1
	if spec.Shared && spec.Rounds > 1 {
		rounds = spec.Rounds
	}
	cpu1, t1 := cpuMs(spec.Pid), time.Now()
	deadline := time.Now().Add(60 * time.Second)
	if spec.Shared {
		// each write reaches every watcher; the next waits until it has
		for r := 1; r <= rounds; r++ {
			res.Expected = int64(r * spec.Watchers)
			wctx, done := context.WithTimeout(ctx, 20*time.Second)
			if _, err := clients[0].Put(wctx, prefix(0)+"k", strconv.Itoa(r)); err != nil {
				errs.add("put: %v", err)
			}
			done()
			for atomic.LoadInt64(&delivered) < res.Expected && time.Now().Before(deadline) {
				time.Sleep(2 * time.Millisecond)
			}
		}
	} else {
		res.Expected = int64(spec.Writes)
		parallel(spec.Writes, func(i int) {
			wctx, done := context.WithTimeout(ctx, 20*time.Second)
			defer done()
			if _, err := clients[i%spec.Clients].Put(wctx, prefix(i*7919%spec.Watchers)+"k", "v"); err != nil {
				errs.add("put: %v", err)
			}
		})
		for atomic.LoadInt64(&delivered) < res.Expected && time.Now().Before(deadline) {
			time.Sleep(2 * time.Millisecond)
		}
	}
	res.WriteCPUMs, res.WriteSeconds = cpuMs(spec.Pid)-cpu1, time.Since(t1).Seconds()
	res.Delivered = atomic.LoadInt64(&delivered)
	cancel()
	res.Errors = append(res.Errors, errs.snapshot()...)
	return res
}
