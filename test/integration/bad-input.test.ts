// Bad input against a real etcd and strata side by side: each request gets etcd's gRPC
// code and message, and the server keeps serving afterwards.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { fromBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { RangeResponseSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { type EtcdProcess, startEtcd } from "../support/etcd.ts";
import { BACKEND, startStrata, type StrataProcess } from "../support/strata.ts";

let etcd: EtcdProcess;
let strata: StrataProcess;
beforeAll(async () => {
  [etcd, strata] = await Promise.all([startEtcd(), startStrata()]);
}, 30_000);
afterAll(async () => {
  await Promise.all([etcd?.stop(), strata?.stop()]);
});

/** a raw unary call: bytes in, "code message" or the response bytes out */
function call(endpoint: string, path: string, body: Uint8Array): Promise<string | Buffer> {
  const c = new grpc.Client(endpoint, grpc.credentials.createInsecure(), { "grpc.max_receive_message_length": -1 });
  return new Promise((resolve) => {
    c.makeUnaryRequest(path, (x: Buffer) => x, (x: Buffer) => x, Buffer.from(body), (err, out) => {
      c.close();
      resolve(err ? `${err.code} ${err.details}` : out!);
    });
  });
}
/** "code message", or "ok" for any response (its bytes differ by the header's ids) */
const raw = async (endpoint: string, path: string, body: Uint8Array) => {
  const r = await call(endpoint, path, body);
  return typeof r === "string" ? r : "ok";
};

const varint = (n: number) => {
  const out: number[] = [];
  while (n > 127) {
    out.push((n & 127) | 128);
    n >>>= 7;
  }
  out.push(n);
  return out;
};
/** PutRequest{key, value} encoded by hand, so sizes and bytes are exactly what we say */
const putBytes = (key: number[], value: Uint8Array) =>
  new Uint8Array([0x0a, key.length, ...key, 0x12, ...varint(value.length), ...value]);

const cases: Array<[string, string, Uint8Array]> = [
  ["malformed protobuf", "/etcdserverpb.KV/Range", new Uint8Array([0xff, 0xff, 0xff, 0x0f, 0x01])],
  ["unknown method", "/etcdserverpb.KV/Nope", new Uint8Array(0)],
  ["unknown service", "/etcdserverpb.Nope/Range", new Uint8Array(0)],
  ["2.5 MiB put (over the gRPC limit)", "/etcdserverpb.KV/Put", putBytes([0x6b], new Uint8Array(2.5 * 1024 * 1024).fill(1))],
  ["1.7 MiB put (over max-request-bytes)", "/etcdserverpb.KV/Put", putBytes([0x6b], new Uint8Array(1.7 * 1024 * 1024).fill(1))],
  ["range with an empty key", "/etcdserverpb.KV/Range", new Uint8Array(0)],
  ["put with an empty key", "/etcdserverpb.KV/Put", new Uint8Array([0x12, 1, 0x41])],
  ["delete with an empty key", "/etcdserverpb.KV/DeleteRange", new Uint8Array(0)],
  // limit = -1 as a 10-byte varint: etcd treats a negative limit as no limit
  ["negative limit", "/etcdserverpb.KV/Range", new Uint8Array([0x0a, 1, 0x6b, 0x12, 1, 0, 0x18, ...Array(9).fill(0xff), 0x01])],
  ["non-UTF-8 key put", "/etcdserverpb.KV/Put", putBytes([0xff, 0xfe], new Uint8Array([0x41]))],
  ["non-UTF-8 key get", "/etcdserverpb.KV/Range", new Uint8Array([0x0a, 2, 0xff, 0xfe])],
  ["invalid sort order", "/etcdserverpb.KV/Range", new Uint8Array([0x0a, 1, 0x6b, 0x28, 7])],
  // limit = MaxInt64, what clients send for "no limit"; range_end "\0" reads every key
  ["limit MaxInt64", "/etcdserverpb.KV/Range", new Uint8Array([0x0a, 1, 0x00, 0x12, 1, 0x00, 0x18, ...Array(8).fill(0xff), 0x7f])],
  ["lease keepalive-less revoke of a missing lease", "/etcdserverpb.Lease/LeaseRevoke", new Uint8Array([0x08, 42])],
];

/**
 * Where strata's answer cannot be etcd 3.4's, and why. Given etcd's answer, the answer
 * strata must give instead.
 */
const expectedDifference: Record<string, (etcd: string) => string> = {
  // Go's protobuf decoder words its parse errors differently from protobuf-es; the gRPC
  // code and grpc-go's prefix are the same, the parser's own detail cannot be.
  "malformed protobuf": (etcd) => {
    expect(etcd).toStartWith("13 grpc: error unmarshalling request: ");
    return "13 grpc: error unmarshalling request: illegal tag: field no 4194303 wire type 7";
  },
  // etcd 3.5 refuses sort values outside the enum; 3.4 (the Debian oracle) ignores them
  // and returns the keys unsorted. strata follows 3.5: a clear error beats a silent no-op.
  "invalid sort order": (etcd) => {
    expect(etcd).toBe("ok");
    return "3 etcdserver: invalid sort option";
  },
};

describe("bad input gets etcd's answer and changes nothing", () => {
  for (const [name, path, body] of cases) {
    test(name, async () => {
      const [want, got] = await Promise.all([raw(etcd.endpoint, path, body), raw(strata.endpoint, path, body)]);
      expect(got).toBe(expectedDifference[name]?.(want) ?? want);
    });
  }

  test("a Watch stream whose first message is not protobuf ends with etcd's error", async () => {
    const status = async (endpoint: string) => {
      const c = new grpc.Client(endpoint, grpc.credentials.createInsecure());
      const answer = await new Promise<string>((resolve) => {
        const stream = c.makeBidiStreamRequest("/etcdserverpb.Watch/Watch", (x: Buffer) => x, (x: Buffer) => x);
        stream.on("data", () => {});
        stream.on("error", (err: grpc.ServiceError) => resolve(`${err.code} ${err.details}`));
        stream.on("end", () => resolve("ended without an error"));
        stream.write(Buffer.from([0xff, 0xff, 0xff, 0x0f, 0x01]));
        setTimeout(() => resolve("still open after 3 s"), 3000);
      });
      c.close();
      return answer;
    };
    const [want, got] = await Promise.all([status(etcd.endpoint), status(strata.endpoint)]);
    // the parser's own detail differs (Go's decoder against protobuf-es), as for unary calls
    expect(want).toStartWith("13 grpc: failed to unmarshal the received message");
    expect(got).toStartWith("13 grpc: failed to unmarshal the received message");
  });

  test("Snapshot streams the database and its hash (an upstream etcd's keys: refused, naming it) and the server lives", async () => {
    const c = new grpc.Client(strata.endpoint, grpc.credentials.createInsecure());
    let messages = 0;
    const status = await new Promise<string>((resolve) => {
      const stream = c.makeServerStreamRequest("/etcdserverpb.Maintenance/Snapshot", (x: Buffer) => x, (x: Buffer) => x, Buffer.alloc(0));
      stream.on("data", () => messages++);
      stream.on("error", (err: grpc.ServiceError) => resolve(`${err.code} ${err.details}`));
      stream.on("end", () => resolve("ended without an error"));
    });
    c.close();
    if (BACKEND === "etcd") expect(status).toStartWith("9 strata: backend default is an upstream etcd, whose keys strata does not hold");
    else {
      expect(status).toBe("ended without an error");
      // the database's chunks, then its sha256
      expect(messages).toBeGreaterThanOrEqual(2);
    }
    expect(await raw(strata.endpoint, "/etcdserverpb.KV/Range", new Uint8Array([0x0a, 1, 0x6b]))).toBe("ok");
  });

  test("a key longer than the database's key column holds is refused as bad input, not as an outage", async () => {
    // 3,000 pseudo-random bytes: no compression brings it under PostgreSQL's index entry
    // limit (a repetitive key compresses, and PostgreSQL stores it)
    let x = 1;
    const key = Array.from({ length: 3000 }, () => 0x20 + ((x = (x * 1103515245 + 12345) % 2 ** 31) >> 16) % 95);
    const body = new Uint8Array([0x0a, ...[0xb8, 0x17], ...key, 0x12, 1, 0x41]);
    const [want, got] = await Promise.all([raw(etcd.endpoint, "/etcdserverpb.KV/Put", body), raw(strata.endpoint, "/etcdserverpb.KV/Put", body)]);
    expect(want).toBe("ok");
    // PostgreSQL and MySQL keep keys of at most 2,048 bytes (B-tree entry limits); etcd,
    // SQLite and NATS take any key a request can carry (before: Unavailable, the driver's words)
    if (BACKEND === "postgres" || BACKEND === "mariadb") expect(got).toMatch(/^3 strata: key too long for backend \S+: 3000 bytes, at most 2048$/);
    else expect(got).toBe("ok");
    // taken back where it was written, so both hold the same keys for the check below
    const del = new Uint8Array([0x0a, ...[0xb8, 0x17], ...key]);
    await Promise.all([raw(etcd.endpoint, "/etcdserverpb.KV/DeleteRange", del), raw(strata.endpoint, "/etcdserverpb.KV/DeleteRange", del)]);
  });

  test("Alarm requests that make etcd exit are answered without reaching an upstream etcd", async () => {
    // an unknown action, and (etcd 3.4) activating "no alarm" for member 0: etcd panics on
    // both (not sent to the oracle here)
    for (const body of [[0x08, 0x03], [0x08, 0x01]]) {
      expect(await raw(strata.endpoint, "/etcdserverpb.Maintenance/Alarm", new Uint8Array(body))).toBe("ok");
    }
    // an upstream etcd behind strata still answers
    expect(await raw(strata.endpoint, "/etcdserverpb.Maintenance/Status", new Uint8Array(0))).toBe("ok");
    expect(await raw(strata.endpoint, "/etcdserverpb.KV/Range", new Uint8Array([0x0a, 1, 0x6b]))).toBe("ok");
    // and the alarm "no alarm" raised here is taken back, so nothing else sees it
    expect(await raw(strata.endpoint, "/etcdserverpb.Maintenance/Alarm", new Uint8Array([0x08, 0x02]))).toBe("ok");
  });

  test("the server still serves and nothing was written by the refused requests", async () => {
    // a Range over every key, keys only
    const everything = new Uint8Array([0x0a, 1, 0x00, 0x12, 1, 0x00, 0x40, 1]);
    const keys = async (ep: string) => {
      const r = await call(ep, "/etcdserverpb.KV/Range", everything);
      if (typeof r === "string") throw new Error(r);
      return fromBinary(RangeResponseSchema, r).kvs.map((kv) => [...kv.key]);
    };
    // both hold exactly the one non-UTF-8 key that was accepted
    expect(await keys(strata.endpoint)).toEqual([[0xff, 0xfe]]);
    expect(await keys(etcd.endpoint)).toEqual([[0xff, 0xfe]]);
  });
});
