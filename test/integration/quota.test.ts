// etcd's storage quota, differential: a real etcd and strata (on the backend under test),
// each with a small --quota-backend-bytes, are filled until they refuse, and everything an
// operator does next — alarm list, the writes refused and the ones allowed under NOSPACE,
// reads, delete, compact, defrag, disarm, writing again — must answer as etcd does.
// How many puts fit differs (the databases differ in size), so that count is left out.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { create, type DescMessage, fromBinary, type MessageInitShape, type MessageShape, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { spawnSync } from "node:child_process";
import {
  AlarmRequest_AlarmAction,
  AlarmRequestSchema,
  AlarmResponseSchema,
  AlarmType,
  CompactionRequestSchema,
  CompactionResponseSchema,
  DefragmentRequestSchema,
  DefragmentResponseSchema,
  DeleteRangeRequestSchema,
  DeleteRangeResponseSchema,
  LeaseGrantRequestSchema,
  LeaseGrantResponseSchema,
  PutRequestSchema,
  PutResponseSchema,
  RangeRequestSchema,
  RangeResponseSchema,
  StatusRequestSchema,
  StatusResponseSchema,
  TxnRequestSchema,
  TxnResponseSchema,
} from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { type EtcdProcess, startEtcd } from "../support/etcd.ts";
import { BACKEND, startStrata, type StrataProcess } from "../support/strata.ts";

/** room above an empty store's size before the quota: a few dozen 64 KiB puts */
const HEADROOM = 1024 * 1024;
/** no store of either kind holds this many puts within its headroom */
const MAX_PUTS = 400;
const VALUE_BYTES = 64 * 1024;

type Failure = { error: string };

/** one unary call; its answer, or its gRPC status as "code message" */
function rpc<I extends DescMessage, O extends DescMessage>(
  endpoint: string,
  path: string,
  input: I,
  output: O,
  req: MessageInitShape<I>,
): Promise<MessageShape<O> | Failure> {
  const c = new grpc.Client(endpoint, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    c.makeUnaryRequest(path, (x: Buffer) => x, (x: Buffer) => x, Buffer.from(toBinary(input, create(input, req))), (err, out) => {
      c.close();
      resolve(err ? { error: `${grpc.status[err.code]} ${err.details}` } : fromBinary(output, out!));
    });
  });
}

const enc = (s: string) => new TextEncoder().encode(s);
const failed = (x: unknown): x is Failure => typeof x === "object" && x !== null && "error" in x;

/** what a side answers through the whole scenario, with what must differ taken out */
async function scenario(endpoint: string): Promise<Record<string, unknown>> {
  const put = (key: string, value: Uint8Array) => rpc(endpoint, "/etcdserverpb.KV/Put", PutRequestSchema, PutResponseSchema, { key: enc(key), value });
  const alarms = async (action: AlarmRequest_AlarmAction, memberID = 0n, alarm = AlarmType.NONE) => {
    const r = await rpc(endpoint, "/etcdserverpb.Maintenance/Alarm", AlarmRequestSchema, AlarmResponseSchema, { action, memberID, alarm });
    if (failed(r)) return r;
    return r.alarms.map((a) => ({ member: a.memberID, alarm: AlarmType[a.alarm] }));
  };
  const status = async () => {
    const r = await rpc(endpoint, "/etcdserverpb.Maintenance/Status", StatusRequestSchema, StatusResponseSchema, {});
    if (failed(r)) throw new Error(r.error);
    return r;
  };
  const out: Record<string, unknown> = {};

  // fill until refused
  let puts = 0;
  let refusal: unknown;
  for (; puts < MAX_PUTS; puts++) {
    const r = await put(`q/${puts}`, crypto.getRandomValues(new Uint8Array(VALUE_BYTES)));
    if (failed(r)) {
      refusal = r;
      break;
    }
  }
  expect(puts).toBeGreaterThan(0);
  expect(puts).toBeLessThan(MAX_PUTS);
  out.fill = refusal;

  const listed = await alarms(AlarmRequest_AlarmAction.GET);
  if (failed(listed)) throw new Error(listed.error);
  const self = listed[0]?.member;
  const memberName = (m: bigint) => (m === self ? "the member that raised it" : String(m));
  const shown = (l: typeof listed | Failure) => (failed(l) ? l : l.map((a) => ({ ...a, member: memberName(a.member) })));
  out.alarmList = shown(listed);
  // etcdctl's own rendering of the same list
  const ctl = spawnSync("etcdctl", [`--endpoints=${endpoint}`, "alarm", "list"], { encoding: "utf8", env: { ...process.env, ETCDCTL_API: "3" } });
  out.etcdctlAlarmList = ctl.stdout.replace(String(self), "<member>");
  out.statusErrors = (await status()).errors.map((e) => e.replace(String(self), "<member>"));

  // under NOSPACE: writes that add data are refused, the rest goes on
  out.putSmall = await put("q/small", enc("x"));
  const txn = (req: MessageInitShape<typeof TxnRequestSchema>) => rpc(endpoint, "/etcdserverpb.KV/Txn", TxnRequestSchema, TxnResponseSchema, req);
  // what a txn did: whether it succeeded and what each delete in it removed (revisions differ)
  const outcome = (r: Awaited<ReturnType<typeof txn>>) =>
    failed(r) ? r : { succeeded: r.succeeded, deleted: r.responses.map((op) => (op.response.case === "responseDeleteRange" ? op.response.value.deleted : undefined)) };
  out.txnPut = await txn({ success: [{ request: { case: "requestPut", value: { key: enc("q/t"), value: enc("v") } } }] });
  out.txnDeleteOnly = outcome(await txn({ success: [{ request: { case: "requestDeleteRange", value: { key: enc("q/0") } } }] }));
  out.leaseGrant = await rpc(endpoint, "/etcdserverpb.Lease/LeaseGrant", LeaseGrantRequestSchema, LeaseGrantResponseSchema, { TTL: 60n });
  const read = await rpc(endpoint, "/etcdserverpb.KV/Range", RangeRequestSchema, RangeResponseSchema, { key: enc("q/1") });
  out.read = failed(read) ? read : read.kvs.map((kv) => kv.value.length);
  // every key the fill stored goes (etcd may have stored the put whose apply raised the alarm)
  const stored = await rpc(endpoint, "/etcdserverpb.KV/Range", RangeRequestSchema, RangeResponseSchema, { key: enc("q/"), rangeEnd: enc("q0"), countOnly: true });
  if (failed(stored)) throw new Error(stored.error);
  expect(stored.count).toBeGreaterThanOrEqual(BigInt(puts - 1));
  const del = await rpc(endpoint, "/etcdserverpb.KV/DeleteRange", DeleteRangeRequestSchema, DeleteRangeResponseSchema, { key: enc("q/"), rangeEnd: enc("q0") });
  out.deleted = failed(del) ? del : del.deleted === stored.count;
  const revision = (await status()).header!.revision;
  const compacted = await rpc(endpoint, "/etcdserverpb.KV/Compact", CompactionRequestSchema, CompactionResponseSchema, { revision, physical: true });
  out.compact = failed(compacted) ? compacted : "ok";
  const defrag = await rpc(endpoint, "/etcdserverpb.Maintenance/Defragment", DefragmentRequestSchema, DefragmentResponseSchema, {});
  out.defrag = failed(defrag) ? defrag : "ok";
  out.stillRaised = shown(await alarms(AlarmRequest_AlarmAction.GET));

  // disarm as etcdctl does: each listed alarm deactivated by its member and type
  out.disarm = shown(await alarms(AlarmRequest_AlarmAction.DEACTIVATE, self, AlarmType.NOSPACE));
  out.disarmAgain = shown(await alarms(AlarmRequest_AlarmAction.DEACTIVATE, self, AlarmType.NOSPACE));
  out.afterDisarm = shown(await alarms(AlarmRequest_AlarmAction.GET));
  out.statusErrorsAfter = (await status()).errors;
  const again = await put("q/again", crypto.getRandomValues(new Uint8Array(VALUE_BYTES)));
  out.putAfterDisarm = failed(again) ? again : "ok";
  return out;
}

let etcd: EtcdProcess;
let strata: StrataProcess;
/** the strata that measured an empty database's size (its directory holds a SQLite file) */
let first: StrataProcess | undefined;

beforeAll(async () => {
  let quota: number;
  if (BACKEND === "etcd") {
    // strata in front of an etcd: the quota is that etcd's own
    quota = 2 * HEADROOM;
    strata = await startStrata(["--quota-backend-bytes", String(quota)]);
  } else {
    // an empty database's size differs by engine (PostgreSQL's catalogs alone are MBs):
    // measure it, then serve the same database with the headroom above it
    first = await startStrata();
    const s = await rpc(first.endpoint, "/etcdserverpb.Maintenance/Status", StatusRequestSchema, StatusResponseSchema, {});
    if (failed(s)) throw new Error(s.error);
    await first.terminate();
    quota = Number(s.dbSize) + HEADROOM;
    strata = await startStrata(["--quota-backend-bytes", String(quota)], first.backendUrl);
  }
  etcd = await startEtcd(["--quota-backend-bytes", String(2 * HEADROOM)]);
}, 120_000);

afterAll(async () => {
  await Promise.all([etcd?.stop(), strata?.stop(), first?.stop()]);
}, 60_000);

describe("storage quota (NOSPACE)", () => {
  test("filling up, then freeing space, answers as etcd does", async () => {
    const want = await scenario(etcd.endpoint);
    // etcd's answers, stated, so a change on either side shows
    expect(want.fill).toEqual({ error: "RESOURCE_EXHAUSTED etcdserver: mvcc: database space exceeded" });
    expect(want.alarmList).toEqual([{ member: "the member that raised it", alarm: "NOSPACE" }]);
    expect(want.putAfterDisarm).toBe("ok");
    const got = await scenario(strata.endpoint);
    expect(got).toEqual(want);
  }, 120_000);

  // an upstream etcd's alarms are reported by its own /health
  test.skipIf(BACKEND === "etcd")("/readyz reports NOSPACE until it is disarmed (etcd's ?exclude=NOSPACE leaves it out)", async () => {
    const ready = async (q = "") => {
      const r = await fetch(`${strata.metrics}/readyz${q}`);
      return `${r.status} ${(await r.text()).trim()}`;
    };
    expect(await ready()).toBe("200 ok");
    let refused = false;
    for (let i = 0; i < MAX_PUTS && !refused; i++) {
      refused = failed(await rpc(strata.endpoint, "/etcdserverpb.KV/Put", PutRequestSchema, PutResponseSchema, { key: enc(`r/${i}`), value: crypto.getRandomValues(new Uint8Array(VALUE_BYTES)) }));
    }
    expect(refused).toBe(true);
    expect(await ready()).toMatch(/^503 alarm NOSPACE: backend \S+: a write of ~\d+ bytes would take the database \(\d+ bytes\) to its quota of \d+ bytes \(--quota-backend-bytes\)$/);
    expect(await ready("?exclude=NOSPACE")).toBe("200 ok");
    const health = await fetch(`${strata.metrics}/health`);
    expect([health.status, await health.json()]).toEqual([503, { health: "false", reason: "ALARM NOSPACE" }]);
    // the client port answers the same, as etcd's does, and leaves the alarm out when asked
    const onClientPort = await fetch(`http://${strata.endpoint}/health`);
    expect([onClientPort.status, await onClientPort.json()]).toEqual([503, { health: "false", reason: "ALARM NOSPACE" }]);
    const excluded = await fetch(`http://${strata.endpoint}/health?exclude=NOSPACE`);
    expect([excluded.status, await excluded.json()]).toEqual([200, { health: "true", reason: "" }]);
    // the operator's way out, through etcdctl
    const ctl = (...args: string[]) => spawnSync("etcdctl", [`--endpoints=${strata.endpoint}`, ...args], { encoding: "utf8", env: { ...process.env, ETCDCTL_API: "3" } });
    expect(ctl("del", "r/", "--prefix").status).toBe(0);
    const rev = JSON.parse(ctl("endpoint", "status", "-w", "json").stdout)[0].Status.header.revision;
    expect(ctl("compact", String(rev), "--physical").status).toBe(0);
    expect(ctl("defrag").status).toBe(0);
    expect(ctl("alarm", "disarm").stdout).toMatch(/^memberID:\d+ alarm:NOSPACE \n$/);
    expect(await ready()).toBe("200 ok");
    expect(ctl("put", "r/again", "v").stdout).toBe("OK\n");
  }, 120_000);
});
