// etcd's quota arithmetic and alarm bookkeeping (the server's behaviour under NOSPACE is
// checked against a real etcd in test/integration/quota.test.ts).
import { describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { PutRequestSchema, TxnRequestSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { Alarms, AlarmType } from "../../src/mvcc/alarms.ts";
import { costOfPut, costOfTxn, SpaceQuota } from "../../src/mvcc/quota.ts";

const bytes = (n: number) => new Uint8Array(n);
const put = (k: number, v: number) => create(PutRequestSchema, { key: bytes(k), value: bytes(v) });
const op = (p: ReturnType<typeof put>) => ({ request: { case: "requestPut" as const, value: p } });

describe("quota charges (etcd's)", () => {
  test("a put costs key + value + 256", () => {
    expect(costOfPut(put(3, 10))).toBe(269);
  });
  test("a txn costs its costlier branch's own puts; deletes, ranges and nested txns cost nothing", () => {
    const nested = create(TxnRequestSchema, { success: [op(put(1, 1000))] });
    const t = create(TxnRequestSchema, {
      success: [op(put(1, 10)), op(put(1, 10)), { request: { case: "requestDeleteRange", value: { key: bytes(1) } } }],
      failure: [op(put(1, 100)), { request: { case: "requestTxn", value: nested } }],
    });
    expect(costOfTxn(t)).toBe(534); // success: 2 × 267; failure: 357
    expect(costOfTxn(create(TxnRequestSchema, { success: [{ request: { case: "requestTxn", value: nested } }] }))).toBe(0);
  });
});

describe("SpaceQuota", () => {
  test("refuses a charge that would reach the quota, measured afresh before refusing", async () => {
    let size = 900n;
    let asked = 0;
    const q = new SpaceQuota(1000n, async () => {
      asked++;
      return { size, inUse: size };
    });
    expect(await q.fits(50)).toBe(true); // 900 + 50 < 1000
    expect(asked).toBe(1);
    // charges admitted since the measure count against it until the next one
    expect(await q.fits(40)).toBe(true); // 950 + 40 < 1000, no new measure
    expect(asked).toBe(1);
    size = 100n; // space freed: the fresh measure before refusing sees it
    expect(await q.fits(100)).toBe(true);
    expect(asked).toBe(2);
    size = 990n;
    await new Promise((r) => setTimeout(r, 300)); // the measure went stale
    expect(await q.fits(10)).toBe(false); // 990 + 10 is not < 1000, as etcd's test
    expect(q.lastSize).toBe(990n);
  });
});

describe("Alarms", () => {
  const quiet = () => {};
  test("activate, list, deactivate as etcd's alarm store", () => {
    const a = new Alarms(7n, quiet);
    expect(a.noSpace).toBe(false);
    a.raiseNoSpace("disk full");
    a.raiseNoSpace("again");
    expect(a.list()).toEqual([{ memberId: 7n, alarm: AlarmType.NOSPACE }]);
    expect(a.reason).toBe("disk full");
    expect(a.activate(9n, AlarmType.CORRUPT)).toEqual({ memberId: 9n, alarm: AlarmType.CORRUPT });
    expect(a.list(AlarmType.CORRUPT)).toEqual([{ memberId: 9n, alarm: AlarmType.CORRUPT }]);
    expect(a.deactivate(8n, AlarmType.NOSPACE)).toBeUndefined();
    expect(a.deactivate(7n, AlarmType.NOSPACE)).toEqual({ memberId: 7n, alarm: AlarmType.NOSPACE });
    expect(a.noSpace).toBe(false);
    expect(a.reason).toBe("");
    expect(a.list()).toEqual([{ memberId: 9n, alarm: AlarmType.CORRUPT }]);
  });
});
