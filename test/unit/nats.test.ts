// The NATS backend's pure parts: its URL, and splitting batches into chunks and
// reassembling them the same way in every process.
import { describe, expect, test } from "bun:test";
import { Assembler, BATCH_HEADER, CHUNK_HEADER, type Chunk, split } from "../../src/backends/nats/chunks.ts";
import { parseNatsUrl } from "../../src/backends/nats/url.ts";

describe("nats:// URL", () => {
  test("servers, credentials and bucket", () => {
    expect(parseNatsUrl("nats://127.0.0.1:4222", "n")).toEqual({ servers: ["127.0.0.1:4222"], bucket: "strata", replicas: 1, snapshotCount: 10000 });
    expect(parseNatsUrl("nats://u:p%40ss@a:4222,b:4223/?bucket=k8s-main&replicas=3&snapshot-count=500", "n")).toEqual({
      servers: ["a:4222", "b:4223"], user: "u", pass: "p@ss", bucket: "k8s-main", replicas: 3, snapshotCount: 500,
    });
    expect(parseNatsUrl("nats://s3cret@nats.example", "n")).toEqual({ servers: ["nats.example"], token: "s3cret", bucket: "strata", replicas: 1, snapshotCount: 10000 });
  });

  test("TLS: asked for, or implied by a CA or client certificate", () => {
    const file = import.meta.path;
    expect(parseNatsUrl("nats://h:4222?tls=true", "n").tls).toEqual({});
    expect(parseNatsUrl(`nats://h:4222?ca=${file}&cert=${file}&key=${file}`, "n").tls).toEqual({ caFile: file, certFile: file, keyFile: file });
    expect(parseNatsUrl("nats://h:4222", "n").tls).toBeUndefined();
    expect(() => parseNatsUrl("nats://h:4222?ca=/no/such/ca.crt", "N")).toThrow("backend N: ca file /no/such/ca.crt does not exist");
    expect(() => parseNatsUrl(`nats://h:4222?cert=${file}`, "N")).toThrow("backend N: cert and key go together");
    expect(() => parseNatsUrl("nats://h:4222?tls=yes", "N")).toThrow('backend N: tls "yes" must be true (or leave it out)');
  });

  test("bad URLs are refused naming the backend and what is wrong", () => {
    expect(() => parseNatsUrl("nats://h:4222?bucket=a.b", "nats://h:4222")).toThrow('backend nats://h:4222: bucket "a.b" must be 1 to 64 letters, digits, - or _');
    expect(() => parseNatsUrl("nats://h:4222?stream=x", "N")).toThrow('backend N: unknown parameter "stream"; known: bucket, replicas, snapshot-count, tls, ca, cert, key');
    expect(() => parseNatsUrl("nats://h:4222?replicas=7", "N")).toThrow('backend N: replicas "7" must be a whole number from 1 to 5');
    expect(() => parseNatsUrl("nats://h:4222?snapshot-count=0", "N")).toThrow('backend N: snapshot-count "0" must be a positive whole number');
    expect(() => parseNatsUrl("nats://h:port", "N")).toThrow('backend N: server "h:port" is not HOST or HOST:PORT');
    expect(() => parseNatsUrl("nats://", "N")).toThrow("backend N: expected nats://HOST:PORT?bucket=NAME");
  });
});

const bytes = (n: number, fill: number) => new Uint8Array(n).fill(fill);
function feed(a: Assembler, chunks: Chunk[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const c of chunks) {
    const done = a.add(c.data, (k) => c.headers?.[k]);
    if (done) out.push(done);
  }
  return out;
}

describe("chunks", () => {
  test("a batch that fits is one plain message; a larger one is split and reassembled", () => {
    expect(split(bytes(10, 1), 10, "t")).toEqual([{ data: bytes(10, 1) }]);
    const big = Uint8Array.from({ length: 25 }, (_, i) => i);
    const chunks = split(big, 10, "t");
    expect(chunks.map((c) => [c.data.length, c.headers?.[CHUNK_HEADER], c.headers?.[BATCH_HEADER]])).toEqual([
      [10, "1/3", "t"], [10, "2/3", "t"], [5, "3/3", "t"],
    ]);
    const a = new Assembler();
    expect(feed(a, chunks)).toEqual([big]);
    expect(a.pendingSince).toBeUndefined();
  });

  test("a run cut off by another batch is dropped, and so is the rest of it", () => {
    const first = split(bytes(25, 7), 10, "first");
    const other = { data: bytes(3, 9) };
    const a = new Assembler();
    // first's writer lost the race after one chunk; another batch came next; then its late chunks
    expect(feed(a, [first[0]!])).toEqual([]);
    expect(a.pendingSince).toBeDefined();
    expect(feed(a, [other, first[1]!, first[2]!])).toEqual([bytes(3, 9)]);
    expect(a.pendingSince).toBeUndefined();
    // a run that starts again from its first chunk counts
    expect(feed(a, split(bytes(25, 7), 10, "again"))).toEqual([bytes(25, 7)]);
  });
});
