package main

// rangestream: etcd 3.7's KV.RangeStream as grpc-go calls it — kube-apiserver 1.37 lists
// with it. etcd 3.4's clientv3 (Debian's) predates the RPC, so the call is a raw
// server-streaming gRPC stream on clientv3's own connection: the request is gogo's
// RangeRequest (HariKube's selectors, fields 14 and 15, appended by hand), and each
// RangeStreamResponse is unwrapped by hand (field 1 holds a RangeResponse) and decoded
// as etcd's RangeResponse. The chunks are merged as etcd's client merges them
// (proto.Merge), then a plain Range at the stream's revision is read for comparison.
//
//	strata-gotest rangestream ENDPOINT SPEC_JSON

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"time"

	"go.etcd.io/etcd/clientv3"
	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
	"go.etcd.io/etcd/mvcc/mvccpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

type streamSpec struct {
	Key           string `json:"key"`
	RangeEnd      string `json:"rangeEnd"`
	Limit         int64  `json:"limit"`
	Revision      int64  `json:"revision"`
	KeysOnly      bool   `json:"keysOnly"`
	CountOnly     bool   `json:"countOnly"`
	SortOrder     int32  `json:"sortOrder"`
	SortTarget    int32  `json:"sortTarget"`
	MinModRev     int64  `json:"minModRevision"`
	LabelSelector string `json:"labelSelector"`
	FieldSelector string `json:"fieldSelector"`
	// a slow reader: the pause after each chunk
	DelayMs int `json:"delayMs"`
	// a reader that stops: the pause after the first chunk, before it reads on
	StallMs int `json:"stallMs"`
	// once the first chunk arrived: these keys are put (value "written-during-stream") or deleted
	PutDuring    []string `json:"putDuring"`
	DeleteDuring []string `json:"deleteDuring"`
	// once the first chunk arrived: a put, then a compaction at its revision
	CompactDuring bool `json:"compactDuring"`
	// also a plain Range at the stream's revision
	Compare bool `json:"compare"`
}

// what a merged answer holds: its figures, and a digest of every key-value in order
type rangeDigest struct {
	Kvs      int      `json:"kvs"`
	Count    int64    `json:"count"`
	More     bool     `json:"more"`
	Revision int64    `json:"revision"`
	Digest   string   `json:"digest"`
	Keys     []string `json:"keys,omitempty"`
	LastKey  string   `json:"lastKey"`
	// values of the keys the spec wrote or deleted during the stream, as answered ("" when absent)
	Watched map[string]string `json:"watched,omitempty"`
	// the revisions are those of one snapshot: none above the header's
	MaxModRevision int64 `json:"maxModRevision"`
}

type streamResult struct {
	Scenario string `json:"scenario"`
	Chunks   int    `json:"chunks"`
	// key-values per chunk, and each chunk's message size
	ChunkKvs      []int `json:"chunkKvs"`
	MaxChunkBytes int   `json:"maxChunkBytes"`
	// chunks before the last that carried a header, more or count (etcd sends none)
	EarlyEnds int `json:"earlyEnds"`
	// the last chunk's header as sent
	ClusterID uint64       `json:"clusterId"`
	MemberID  uint64       `json:"memberId"`
	RaftTerm  uint64       `json:"raftTerm"`
	Stream    *rangeDigest `json:"stream,omitempty"`
	Range     *rangeDigest `json:"range,omitempty"`
	// the stream's error, as grpc-go reports it
	Code           string   `json:"code"`
	Message        string   `json:"message"`
	KvsBeforeError int      `json:"kvsBeforeError"`
	FirstChunkMs   float64  `json:"firstChunkMs"`
	StreamMs       float64  `json:"streamMs"`
	RangeMs        float64  `json:"rangeMs"`
	Errors         []string `json:"errors"`
}

// rawCodec hands grpc-go bytes as they are: the messages are marshalled here
type rawCodec struct{}

type rawMsg struct{ b []byte }

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return v.(*rawMsg).b, nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	v.(*rawMsg).b = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

func rangeStream(endpoint, specJSON string) *streamResult {
	res := &streamResult{Scenario: "rangestream", ChunkKvs: []int{}, Errors: []string{}}
	var spec streamSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		res.Errors = append(res.Errors, "spec: "+err.Error())
		return res
	}
	cli, err := newClient(endpoint)
	if err != nil {
		res.Errors = append(res.Errors, "connect: "+err.Error())
		return res
	}
	defer cli.Close()
	watched := append(append([]string{}, spec.PutDuring...), spec.DeleteDuring...)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Second)
	defer cancel()
	start := time.Now()
	stream, err := cli.ActiveConnection().NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/etcdserverpb.KV/RangeStream", grpc.ForceCodec(rawCodec{}), grpc.MaxCallRecvMsgSize(math.MaxInt32))
	if err == nil {
		err = stream.SendMsg(&rawMsg{request(spec, spec.Revision)})
	}
	if err == nil {
		err = stream.CloseSend()
	}
	merged := &pb.RangeResponse{}
	var last *pb.RangeResponse
	for err == nil {
		m := &rawMsg{}
		if err = stream.RecvMsg(m); err != nil {
			break
		}
		chunk, derr := unwrapChunk(m.b)
		if derr != nil {
			res.Errors = append(res.Errors, derr.Error())
			break
		}
		if res.Chunks == 0 {
			res.FirstChunkMs = ms(time.Since(start))
		}
		if last != nil && (last.Header != nil || last.More || last.Count != 0) {
			res.EarlyEnds++
		}
		last = chunk
		res.Chunks++
		res.ChunkKvs = append(res.ChunkKvs, len(chunk.Kvs))
		if len(m.b) > res.MaxChunkBytes {
			res.MaxChunkBytes = len(m.b)
		}
		mergeChunk(merged, chunk)
		if res.Chunks == 1 {
			duringStream(cli, spec, res)
			time.Sleep(time.Duration(spec.StallMs) * time.Millisecond)
		}
		if spec.DelayMs > 0 {
			time.Sleep(time.Duration(spec.DelayMs) * time.Millisecond)
		}
	}
	res.StreamMs = ms(time.Since(start))
	if err != io.EOF {
		s, _ := status.FromError(err)
		res.Code, res.Message = s.Code().String(), s.Message()
		res.KvsBeforeError = len(merged.Kvs)
		return res
	}
	if last != nil && last.Header != nil {
		res.ClusterID, res.MemberID, res.RaftTerm = last.Header.ClusterId, last.Header.MemberId, last.Header.RaftTerm
	}
	res.Stream = digest(merged, watched)
	if spec.Compare && res.Stream != nil {
		at := spec.Revision
		if at == 0 {
			at = res.Stream.Revision
		}
		rangeStart := time.Now()
		out := &rawMsg{}
		if err := cli.ActiveConnection().Invoke(ctx, "/etcdserverpb.KV/Range", &rawMsg{request(spec, at)}, out, grpc.ForceCodec(rawCodec{}), grpc.MaxCallRecvMsgSize(math.MaxInt32)); err != nil {
			res.Errors = append(res.Errors, "range: "+err.Error())
			return res
		}
		res.RangeMs = ms(time.Since(rangeStart))
		plain := &pb.RangeResponse{}
		if err := plain.Unmarshal(out.b); err != nil {
			res.Errors = append(res.Errors, "range: "+err.Error())
			return res
		}
		res.Range = digest(plain, watched)
	}
	return res
}

// request is the spec's RangeRequest at a revision, with HariKube's selectors appended
func request(spec streamSpec, revision int64) []byte {
	r := &pb.RangeRequest{
		Key: []byte(spec.Key), RangeEnd: []byte(spec.RangeEnd), Limit: spec.Limit, Revision: revision,
		KeysOnly: spec.KeysOnly, CountOnly: spec.CountOnly, MinModRevision: spec.MinModRev,
		SortOrder: pb.RangeRequest_SortOrder(spec.SortOrder), SortTarget: pb.RangeRequest_SortTarget(spec.SortTarget),
	}
	b, err := r.Marshal()
	if err != nil {
		panic(err)
	}
	b = appendString(b, 14, spec.LabelSelector)
	return appendString(b, 15, spec.FieldSelector)
}

func appendString(b []byte, field uint64, s string) []byte {
	if s == "" {
		return b
	}
	b = binary.AppendUvarint(b, field<<3|2)
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// unwrapChunk reads a RangeStreamResponse: field 1, a RangeResponse, and nothing else
func unwrapChunk(b []byte) (*pb.RangeResponse, error) {
	if len(b) == 0 || b[0] != 0x0a {
		return nil, fmt.Errorf("chunk: does not start with field 1 (%d bytes)", len(b))
	}
	size, n := binary.Uvarint(b[1:])
	if n <= 0 || uint64(len(b)-1-n) != size {
		return nil, fmt.Errorf("chunk: field 1 is %d bytes in a message of %d", size, len(b))
	}
	r := &pb.RangeResponse{}
	if err := r.Unmarshal(b[1+n:]); err != nil {
		return nil, fmt.Errorf("chunk: %v", err)
	}
	return r, nil
}

// mergeChunk does what proto.Merge does with RangeResponses, as etcd's client merges chunks
func mergeChunk(into, c *pb.RangeResponse) {
	if c.Header != nil {
		into.Header = c.Header
	}
	into.Kvs = append(into.Kvs, c.Kvs...)
	if c.More {
		into.More = true
	}
	if c.Count != 0 {
		into.Count = c.Count
	}
}

// duringStream makes the spec's writes once the first chunk arrived
func duringStream(cli *clientv3.Client, spec streamSpec, res *streamResult) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, k := range spec.PutDuring {
		if _, err := cli.Put(ctx, k, "written-during-stream"); err != nil {
			res.Errors = append(res.Errors, "put during stream: "+err.Error())
		}
	}
	for _, k := range spec.DeleteDuring {
		if _, err := cli.Delete(ctx, k); err != nil {
			res.Errors = append(res.Errors, "delete during stream: "+err.Error())
		}
	}
	if spec.CompactDuring {
		p, err := cli.Put(ctx, "/gotest-compact-advance", "x")
		if err == nil {
			_, err = cli.Compact(ctx, p.Header.Revision, clientv3.WithCompactPhysical())
		}
		if err != nil {
			res.Errors = append(res.Errors, "compact during stream: "+err.Error())
		}
	}
}

func digest(r *pb.RangeResponse, watched []string) *rangeDigest {
	d := &rangeDigest{Kvs: len(r.Kvs), Count: r.Count, More: r.More}
	if r.Header != nil {
		d.Revision = r.Header.Revision
	}
	h := sha256.New()
	inWatch := map[string]bool{}
	for _, k := range watched {
		inWatch[k] = true
	}
	if len(watched) > 0 {
		d.Watched = map[string]string{}
		for _, k := range watched {
			d.Watched[k] = ""
		}
	}
	for _, kv := range r.Kvs {
		writeKv(h, kv)
		if kv.ModRevision > d.MaxModRevision {
			d.MaxModRevision = kv.ModRevision
		}
		if inWatch[string(kv.Key)] {
			d.Watched[string(kv.Key)] = string(kv.Value)
		}
	}
	d.Digest = hex.EncodeToString(h.Sum(nil))
	if len(r.Kvs) <= 50 {
		d.Keys = []string{}
		for _, kv := range r.Kvs {
			d.Keys = append(d.Keys, string(kv.Key))
		}
	}
	if len(r.Kvs) > 0 {
		d.LastKey = string(r.Kvs[len(r.Kvs)-1].Key)
	}
	return d
}

func writeKv(h io.Writer, kv *mvccpb.KeyValue) {
	var n [8]byte
	for _, v := range []int64{int64(len(kv.Key)), int64(len(kv.Value)), kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease} {
		binary.BigEndian.PutUint64(n[:], uint64(v))
		h.Write(n[:])
	}
	h.Write(kv.Key)
	h.Write(kv.Value)
}
