package main

// The cost per operation of kube-apiserver's requests to the server (issue 25): creates
// through the create txn, guarded updates (compare the mod_revision last seen; on a
// conflict take the object from the failure branch and try again), point gets, full
// lists and counts, each phase timed by the client and costed by the server's CPU time
// (user+system of the whole process, every thread, from /proc/PID/stat) over the phase,
// so a slow client does not distort the server's figure.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
)

type kvBenchSpec struct {
	Pid        int `json:"pid"`
	Clients    int `json:"clients"`
	Conns      int `json:"conns"`
	Keys       int `json:"keys"`
	ValueBytes int `json:"valueBytes"`
	Updates    int `json:"updates"`
	Gets       int `json:"gets"`
	Lists      int `json:"lists"`
	Counts     int `json:"counts"`
	// operations of each kind made first on keys of their own and not measured, so the
	// figures are the server's steady state, not its warm-up (Bun compiles hot code as it runs)
	Warmup int `json:"warmup"`
}

type kvPhase struct {
	Name      string  `json:"name"`
	Ops       int     `json:"ops"`
	Seconds   float64 `json:"seconds"`
	OpsPerSec float64 `json:"opsPerSec"`
	P50Ms     float64 `json:"p50Ms"`
	P99Ms     float64 `json:"p99Ms"`
	CPUMs     float64 `json:"cpuMs"`
	RSSMiB    float64 `json:"rssMiB"`
	Retries   int64   `json:"retries"`
}

type kvBenchResult struct {
	Phases  []kvPhase `json:"phases"`
	PeakMiB float64   `json:"peakMiB"`
	Errors  []string  `json:"errors"`
}

const kvBenchPrefix = "/registry/pods/bench/"

// kvBenchValue is a value of n bytes that differs per key and per write.
func kvBenchValue(i, n int) string {
	b := make([]byte, n)
	for j := range b {
		b[j] = byte('a' + (i+j)%26)
	}
	return string(b)
}

// peakMiB is the most the process has been resident (VmHWM).
func peakMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			var kib float64
			fmt.Sscan(strings.Fields(line)[1], &kib)
			return kib / 1024
		}
	}
	return -1
}

func kvBench(endpoint, specJSON string) *kvBenchResult {
	var spec kvBenchSpec
	res := &kvBenchResult{Phases: []kvPhase{}, Errors: []string{}}
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil || spec.Clients <= 0 || spec.Keys <= 0 || spec.Conns <= 0 {
		res.Errors = append(res.Errors, fmt.Sprintf("bad spec %q", specJSON))
		return res
	}
	var errs errorList
	conns := make([]*clientv3.Client, spec.Conns)
	for i := range conns {
		c, err := newClient(endpoint)
		if err != nil {
			res.Errors = append(res.Errors, err.Error())
			return res
		}
		defer c.Close()
		conns[i] = c
	}
	// run n operations over spec.Clients loops, each on its connection in turn
	phase := func(name string, n, loops int, op func(c *clientv3.Client, ctx context.Context, i int) error) {
		var next int64 = -1
		lat := make([][]float64, loops)
		cpu0, t0 := cpuMs(spec.Pid), time.Now()
		var wg sync.WaitGroup
		for l := 0; l < loops; l++ {
			wg.Add(1)
			go func(l int) {
				defer wg.Done()
				c := conns[l%len(conns)]
				for {
					i := int(atomic.AddInt64(&next, 1))
					if i >= n {
						return
					}
					ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
					s := time.Now()
					err := op(c, ctx, i)
					lat[l] = append(lat[l], ms(time.Since(s)))
					cancel()
					if err != nil {
						errs.add("%s %d: %v", name, i, err)
					}
				}
			}(l)
		}
		wg.Wait()
		p := kvPhase{Name: name, Ops: n, Seconds: time.Since(t0).Seconds(), CPUMs: cpuMs(spec.Pid) - cpu0, RSSMiB: rssMiB(spec.Pid)}
		var all []float64
		for _, l := range lat {
			all = append(all, l...)
		}
		sort.Float64s(all)
		if len(all) > 0 {
			p.P50Ms = all[len(all)/2]
			p.P99Ms = all[len(all)*99/100]
		}
		p.OpsPerSec = float64(n) / p.Seconds
		res.Phases = append(res.Phases, p)
	}

	// creates, guarded updates and point gets of keys under prefix
	writesAndGets := func(prefix string, keys, updates, gets int) {
		key := func(i int) string { return fmt.Sprintf("%spod-%07d", prefix, i) }
		mods := make([]int64, keys)
		phase("create", keys, spec.Clients, func(c *clientv3.Client, ctx context.Context, i int) error {
			key := key(i)
			r, err := c.Txn(ctx).
				If(clientv3.Compare(clientv3.ModRevision(key), "=", 0)).
				Then(clientv3.OpPut(key, kvBenchValue(i, spec.ValueBytes))).
				Else(clientv3.OpGet(key)).Commit()
			if err != nil {
				return err
			}
			if !r.Succeeded {
				return fmt.Errorf("create of %s found the key there", key)
			}
			atomic.StoreInt64(&mods[i], r.Header.Revision)
			return nil
		})

		var retries int64
		phase("guarded update", updates, spec.Clients, func(c *clientv3.Client, ctx context.Context, i int) error {
			k := i % keys
			key := key(k)
			for attempt := 0; attempt < 100; attempt++ {
				r, err := c.Txn(ctx).
					If(clientv3.Compare(clientv3.ModRevision(key), "=", atomic.LoadInt64(&mods[k]))).
					Then(clientv3.OpPut(key, kvBenchValue(i+1, spec.ValueBytes))).
					Else(clientv3.OpGet(key)).Commit()
				if err != nil {
					return err
				}
				if r.Succeeded {
					atomic.StoreInt64(&mods[k], r.Header.Revision)
					return nil
				}
				atomic.AddInt64(&retries, 1)
				kvs := r.Responses[0].GetResponseRange().Kvs
				if len(kvs) == 0 {
					return fmt.Errorf("update of %s: the key is gone", key)
				}
				atomic.StoreInt64(&mods[k], kvs[0].ModRevision)
			}
			return fmt.Errorf("update of %s conflicted 100 times", key)
		})
		res.Phases[len(res.Phases)-1].Retries = retries

		phase("point get", gets, spec.Clients, func(c *clientv3.Client, ctx context.Context, i int) error {
			key := key(i * 7919 % keys)
			r, err := c.Get(ctx, key)
			if err == nil && len(r.Kvs) != 1 {
				err = fmt.Errorf("get of %s found %d keys", key, len(r.Kvs))
			}
			return err
		})
	}
	if spec.Warmup > 0 {
		writesAndGets("/registry/pods/warmup/", spec.Warmup, spec.Warmup, spec.Warmup)
		res.Phases = res.Phases[:0]
	}
	writesAndGets(kvBenchPrefix, spec.Keys, spec.Updates, spec.Gets)

	// lists and counts one at a time, as one apiserver's cacher and object-count metric ask
	phase("full list", spec.Lists, 1, func(c *clientv3.Client, ctx context.Context, i int) error {
		r, err := c.Get(ctx, kvBenchPrefix, clientv3.WithPrefix())
		if err == nil && len(r.Kvs) != spec.Keys {
			err = fmt.Errorf("list found %d keys, expected %d", len(r.Kvs), spec.Keys)
		}
		return err
	})
	phase("count", spec.Counts, 1, func(c *clientv3.Client, ctx context.Context, i int) error {
		r, err := c.Get(ctx, kvBenchPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err == nil && r.Count != int64(spec.Keys) {
			err = fmt.Errorf("count said %d, expected %d", r.Count, spec.Keys)
		}
		return err
	})
	res.PeakMiB = peakMiB(spec.Pid)
	res.Errors = append(res.Errors, errs.snapshot()...)
	return res
}
