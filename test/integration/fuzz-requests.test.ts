// Every unary method of every etcd service with requests of random content (every field
// of the request type filled with random, extreme or empty values, and raw random bytes):
// each is answered — with a result or a clean gRPC error, never a JavaScript exception's
// words — and the server keeps serving. The seed is printed; STRATA_FUZZ_SEED repeats a run.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { create, type DescField, type DescMessage, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { Etcd3 } from "etcd3";
import {
  Auth,
  Cluster,
  KV,
  Lease,
  LeaseKeepAliveRequestSchema,
  Maintenance,
  WatchRequestSchema,
} from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { startStrata, type StrataProcess } from "../support/strata.ts";

const SEED = Number(process.env.STRATA_FUZZ_SEED ?? Date.now() % 1_000_000);
const PER_METHOD = 40;
/** methods that would stop the test's own access to the server, or the server itself */
const SKIPPED = new Set(["AuthEnable", "Snapshot", "MoveLeader", "Downgrade"]);
/** words that only a JavaScript exception or a database's raw error would put in an answer */
const LEAKED = /TypeError|RangeError|ReferenceError|SyntaxError|undefined|null is not|Cannot read|is not a function|SQLITE_|syntax error|out of range for type/i;

let strata: StrataProcess;
beforeAll(async () => {
  strata = await startStrata();
});
afterAll(async () => {
  await strata?.stop();
});

/** mulberry32: small, seeded, good enough to pick test values */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const random = prng(SEED);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
const INTS = [0n, 1n, -1n, 2n, 7n, 100n, 2n ** 31n - 1n, 2n ** 31n, 2n ** 53n + 1n, 2n ** 63n - 1n, -(2n ** 63n)];
const KEYS = ["", "\0", "a", "fuzz/k", "fuzz/", "fuzz0", "/registry/pods/default/p", "\xff\xff"];

function bytes(): Uint8Array {
  const r = random();
  if (r < 0.6) return new TextEncoder().encode(pick(KEYS));
  if (r < 0.9) return Uint8Array.from({ length: Math.floor(random() * 40) }, () => Math.floor(random() * 256));
  return new Uint8Array(Math.floor(random() * 200_000)).fill(0x61);
}

function scalar(f: DescField & { fieldKind: "scalar" | "list" }): unknown {
  const t = f.scalar;
  // ScalarType: 1 double 2 float 3 int64 4 uint64 5 int32 ... 8 bool 9 string 12 bytes 13 uint32
  if (t === 8) return random() < 0.5;
  if (t === 9) return pick(["", "root", "fuzz", "x".repeat(300), "\u00e9\u0000"]);
  if (t === 12) return bytes();
  if (t === 1 || t === 2) return pick([0, 1.5, -1, 1e300]);
  const v = pick(INTS);
  if (t === 4 || t === 6) return BigInt.asUintN(64, v);
  if (t === 3 || t === 16 || t === 18) return BigInt.asIntN(64, v);
  if (t === 13 || t === 7) return Number(BigInt.asUintN(32, v));
  return Number(BigInt.asIntN(32, v));
}

function message(desc: DescMessage, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of desc.fields) {
    if (random() < 0.35) continue;
    if (f.fieldKind === "scalar") out[f.localName] = scalar(f);
    else if (f.fieldKind === "enum") out[f.localName] = pick([0, 1, 2, 3, 99, -1]);
    else if (f.fieldKind === "message" && depth < 3) out[f.localName] = message(f.message, depth + 1);
    else if (f.fieldKind === "list") {
      const n = Math.floor(random() * 4);
      if (f.listKind === "scalar") out[f.localName] = Array.from({ length: n }, () => scalar(f as never));
      else if (f.listKind === "enum") out[f.localName] = Array.from({ length: n }, () => pick([0, 1, 2, 99]));
      else if (depth < 3) out[f.localName] = Array.from({ length: n }, () => message(f.message, depth + 1));
    }
  }
  // oneofs: at most one member set (create() takes the shape { case, value })
  for (const o of desc.oneofs) {
    for (const f of o.fields) delete out[f.localName];
    if (random() < 0.7) {
      const f = pick(o.fields);
      const value = f.fieldKind === "message" ? (depth < 3 ? message(f.message, depth + 1) : {}) : f.fieldKind === "enum" ? 1 : scalar(f as never);
      out[o.localName] = { case: f.localName, value };
    }
  }
  return out;
}

function unary(c: grpc.Client, path: string, body: Uint8Array): Promise<string> {
  return new Promise((resolve) =>
    c.makeUnaryRequest(path, (x: Buffer) => x, (x: Buffer) => x, Buffer.from(body), { deadline: Date.now() + 20_000 }, (err) =>
      resolve(err ? `${err.code} ${err.details}` : "ok")
    )
  );
}

test(`random requests to every unary method get clean answers (seed ${SEED})`, async () => {
  const c = new grpc.Client(strata.endpoint, grpc.credentials.createInsecure(), { "grpc.max_receive_message_length": -1 });
  const leaked: string[] = [];
  const codes = new Map<string, number>();
  for (const service of [KV, Lease, Cluster, Maintenance, Auth]) {
    for (const method of service.methods) {
      if (method.methodKind !== "unary" || SKIPPED.has(method.name)) continue;
      const path = `/${service.typeName}/${method.name}`;
      for (let i = 0; i < PER_METHOD; i++) {
        const body = random() < 0.85
          ? toBinary(method.input, create(method.input, message(method.input) as never))
          : Uint8Array.from({ length: Math.floor(random() * 64) }, () => Math.floor(random() * 256));
        const answer = await unary(c, path, body);
        const code = answer.split(" ")[0]!;
        codes.set(code, (codes.get(code) ?? 0) + 1);
        // Unknown (2) is what a handler's stray exception becomes
        if (code === "2" || LEAKED.test(answer)) leaked.push(`${method.name}: ${answer.slice(0, 200)}`);
      }
    }
  }
  c.close();
  console.log(`fuzz seed ${SEED}: answers by code ${JSON.stringify(Object.fromEntries(codes))}`);
  expect(leaked).toEqual([]);
  // it still serves (once any alarm the requests raised — a client may, as in etcd — is disarmed)
  const client = new Etcd3({ hosts: strata.endpoint });
  const { alarms } = await client.maintenance.alarm({ action: "Get", memberID: "0", alarm: "None" });
  for (const a of alarms) await client.maintenance.alarm({ action: "Deactivate", memberID: a.memberID, alarm: a.alarm });
  await client.put("fuzz-after").value("v").exec();
  expect(await client.get("fuzz-after").string()).toBe("v");
  client.close();
  expect(strata.stderr()).not.toMatch(/uncaught|unhandled/i);
}, 120_000);

/** Sends messages on one bidirectional stream; resolves to its ending status, or "open" if it stayed open. */
function bidi(c: grpc.Client, path: string, messages: Uint8Array[]): Promise<string> {
  return new Promise((resolve) => {
    const stream = c.makeBidiStreamRequest(path, (x: Buffer) => x, (x: Buffer) => x);
    stream.on("data", () => {});
    stream.on("error", (err: grpc.ServiceError) => resolve(`${err.code} ${err.details}`));
    stream.on("end", () => resolve("0 ended"));
    for (const m of messages) stream.write(Buffer.from(m));
    setTimeout(() => {
      stream.cancel();
      resolve("open");
    }, 400);
  });
}

test(`random messages on Watch and LeaseKeepAlive streams end them cleanly or not at all (seed ${SEED})`, async () => {
  const c = new grpc.Client(strata.endpoint, grpc.credentials.createInsecure(), { "grpc.max_receive_message_length": -1 });
  const leaked: string[] = [];
  for (const [path, schema] of [["/etcdserverpb.Watch/Watch", WatchRequestSchema], ["/etcdserverpb.Lease/LeaseKeepAlive", LeaseKeepAliveRequestSchema]] as const) {
    for (let i = 0; i < 12; i++) {
      const messages = Array.from({ length: 1 + Math.floor(random() * 5) }, () => toBinary(schema, create(schema, message(schema) as never)));
      const status = await bidi(c, path, messages);
      const code = status.split(" ")[0]!;
      if (code === "2" || code === "14" || LEAKED.test(status)) leaked.push(`${path}: ${status.slice(0, 200)}`);
    }
  }
  c.close();
  expect(leaked).toEqual([]);
  const client = new Etcd3({ hosts: strata.endpoint });
  await client.put("fuzz-after-streams").value("v").exec();
  client.close();
  expect(strata.stderr()).not.toMatch(/uncaught|unhandled/i);
}, 120_000);
