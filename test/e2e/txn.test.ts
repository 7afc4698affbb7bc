// Differential: Txn — every compare target and result, ranges, missing keys, nested
// txns, reads after writes, and etcd's refusals.
import { describe, test } from "bun:test";
import type { Etcd3 } from "etcd3";
import { attempt, b, differential, prefixEnd, useServers } from "../support/differential.ts";

const sides = useServers();
const txn = (c: Etcd3, req: Record<string, unknown>) => attempt(c.kv.txn({ compare: [], success: [], failure: [], ...req } as never));
const put = (key: string, value = "v", extra: Record<string, unknown> = {}) => ({ request_put: { key: b(key), value: b(value), ...extra } });
const get = (key: string, extra: Record<string, unknown> = {}) => ({ request_range: { key: b(key), ...extra } });
const del = (key: string, range_end?: Buffer) => ({ request_delete_range: { key: b(key), ...(range_end ? { range_end } : {}), prev_kv: true } });

describe("Txn compares", () => {
  test("every target with every result, true and false", () =>
    differential(sides(), async (c, ctx) => {
      await c.kv.put({ key: b("t1/k"), value: b("m") } as never);
      await c.kv.put({ key: b("t1/k"), value: b("m") } as never);
      const lease = await c.leaseClient.leaseGrant({ TTL: 60 } as never);
      await c.kv.put({ key: b("t1/l"), value: b("x"), lease: lease.ID } as never);
      const targets: Array<[string, string, unknown, unknown]> = [
        ["Version", "version", "2", "3"],
        ["Create", "create_revision", ctx.rev(1), ctx.rev(5)],
        ["Mod", "mod_revision", ctx.rev(2), ctx.rev(1)],
        ["Value", "value", b("m"), b("a")],
      ];
      const out = [];
      for (const [target, field, equal, other] of targets) {
        for (const result of ["Equal", "NotEqual", "Greater", "Less"]) {
          for (const v of [equal, other]) {
            out.push(await txn(c, { compare: [{ key: b("t1/k"), target, result, [field]: v }], success: [get("t1/k")], failure: [] }));
          }
        }
      }
      for (const result of ["Equal", "NotEqual", "Greater", "Less"]) {
        out.push(await txn(c, { compare: [{ key: b("t1/l"), target: "Lease", result, lease: lease.ID }] }));
        out.push(await txn(c, { compare: [{ key: b("t1/k"), target: "Lease", result, lease: "0" }] }));
      }
      return out;
    }));

  test("a missing key compares as zero, but never by value", () =>
    differential(sides(), async (c) => {
      const out = [];
      for (const [target, field, v] of [["Version", "version", "0"], ["Create", "create_revision", "0"], ["Mod", "mod_revision", "0"], ["Value", "value", b("")], ["Lease", "lease", "0"]] as const) {
        for (const result of ["Equal", "NotEqual"]) {
          out.push(await txn(c, { compare: [{ key: b("t2/missing"), target, result, [field]: v }] }));
        }
      }
      return out;
    }));

  test("compares over a range hold only if they hold for every key", () =>
    differential(sides(), async (c) => {
      await c.kv.put({ key: b("t3/a"), value: b("1") } as never);
      await c.kv.put({ key: b("t3/b"), value: b("1") } as never);
      await c.kv.put({ key: b("t3/b"), value: b("2") } as never);
      const range = { key: b("t3/"), range_end: prefixEnd("t3/") };
      return [
        await txn(c, { compare: [{ ...range, target: "Version", result: "Greater", version: "0" }] }),
        await txn(c, { compare: [{ ...range, target: "Version", result: "Equal", version: "1" }] }),
        await txn(c, { compare: [{ ...range, target: "Value", result: "Less", value: b("3") }] }),
        await txn(c, { compare: [{ key: b("t3/x"), range_end: b("t3/y"), target: "Create", result: "Equal", create_revision: "0" }] }),
        await txn(c, { compare: [{ key: b("t3/"), range_end: b("\0"), target: "Mod", result: "Greater", mod_revision: "0" }] }),
      ];
    }));

  test("several compares must all hold", () =>
    differential(sides(), async (c) => {
      await c.kv.put({ key: b("t4/a"), value: b("1") } as never);
      return [
        await txn(c, { compare: [{ key: b("t4/a"), target: "Value", result: "Equal", value: b("1") }, { key: b("t4/b"), target: "Version", result: "Equal", version: "0" }], success: [put("t4/b")] }),
        await txn(c, { compare: [{ key: b("t4/a"), target: "Value", result: "Equal", value: b("1") }, { key: b("t4/b"), target: "Version", result: "Equal", version: "0" }], success: [put("t4/b")], failure: [get("t4/b")] }),
      ];
    }));
});

describe("Txn operations", () => {
  test("reads see the writes made before them in the same txn; headers as etcd's", () =>
    differential(sides(), async (c) => [
      await txn(c, { success: [get("t5/a"), put("t5/a", "1"), get("t5/a"), del("t5/a"), get("t5/a"), put("t5/b", "2", { prev_kv: true })] }),
      await txn(c, { success: [del("t5/nothing"), get("t5/b")] }),
      await txn(c, { success: [get("t5/", { range_end: prefixEnd("t5/"), count_only: true })] }),
    ]));

  test("nested txns take their own branch, compared before the outer writes", () =>
    differential(sides(), async (c) => {
      await c.kv.put({ key: b("t6/flag"), value: b("on") } as never);
      return [
        await txn(c, {
          compare: [{ key: b("t6/flag"), target: "Value", result: "Equal", value: b("on") }],
          success: [
            put("t6/flag", "off"),
            {
              request_txn: {
                compare: [{ key: b("t6/flag"), target: "Value", result: "Equal", value: b("on") }],
                success: [put("t6/inner-then"), get("t6/flag")],
                failure: [put("t6/inner-else")],
              },
            },
            { request_txn: { compare: [], success: [], failure: [] } },
          ],
          failure: [put("t6/outer-else")],
        }),
        await attempt(c.kv.range({ key: b("t6/"), range_end: prefixEnd("t6/") } as never)),
      ];
    }));

  test("a put with a missing lease, or ignore_value on a missing key, fails the whole txn", () =>
    differential(sides(), async (c) => [
      await txn(c, { success: [put("t7/a"), put("t7/b", "v", { lease: "999" })] }),
      await txn(c, { success: [put("t7/a"), { request_put: { key: b("t7/c"), ignore_value: true } }] }),
      await attempt(c.kv.range({ key: b("t7/"), range_end: prefixEnd("t7/") } as never)),
    ]));

  test("a read at a compacted or future revision fails the txn", () =>
    differential(sides(), async (c, ctx) => [
      await txn(c, { success: [put("t8/a"), get("t8/a", { revision: ctx.rev(5) })] }),
      await txn(c, { success: [get("t8/a", { revision: ctx.rev(0) })] }),
    ]));
});

describe("Txn refusals", () => {
  test("too many operations, duplicate keys, puts inside deleted ranges, empty keys", () =>
    differential(sides(), async (c) => {
      const many = Array.from({ length: 129 }, (_, i) => put(`t9/k${i}`));
      return [
        await txn(c, { success: many }),
        await txn(c, { success: many.slice(0, 128) }),
        await txn(c, { compare: Array.from({ length: 129 }, () => ({ key: b("t9/x"), target: "Version", result: "Equal", version: "0" })) }),
        await txn(c, { success: [put("t9/d"), put("t9/d")] }),
        await txn(c, { success: [del("t9/a", b("t9/z")), put("t9/m")] }),
        await txn(c, { success: [put("t9/m"), del("t9/m")] }),
        await txn(c, { success: [put("t9/n"), { request_txn: { success: [put("t9/n")], failure: [] } }] }),
        await txn(c, { success: [{ request_txn: { success: [put("t9/o")], failure: [put("t9/o")] } }] }),
        await txn(c, { success: [put("t9/p")], failure: [put("t9/p")] }),
        await txn(c, { success: [del("t9/q", b("t9/s")), del("t9/r", b("t9/t"))] }),
        await txn(c, { success: [put("")] }),
        await txn(c, { compare: [{ key: b(""), target: "Version", result: "Equal", version: "0" }] }),
        await txn(c, { success: [get("")] }),
        await txn(c, { success: [{}] }),
      ];
    }));
});
