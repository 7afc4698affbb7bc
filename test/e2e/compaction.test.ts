// Differential: Compact — reads at, below and above the compacted revision, compacting
// again lower or in the future, and the compact_rev_key pattern kube-apiserver uses.
import { describe, test } from "bun:test";
import type { Etcd3 } from "etcd3";
import { attempt, b, differential, prefixEnd, useServers } from "../support/differential.ts";

const sides = useServers();
const compact = (c: Etcd3, revision: string, physical = false) => attempt(c.kv.compact({ revision, physical } as never));

describe("Compact", () => {
  test("reads below the compacted revision fail, at and above it they work", () =>
    differential(sides(), async (c, ctx) => {
      for (const v of ["1", "2", "3"]) await c.kv.put({ key: b("c1/a"), value: b(v) } as never);
      await c.kv.put({ key: b("c1/b"), value: b("x") } as never);
      await c.kv.deleteRange({ key: b("c1/b") } as never);
      await c.kv.put({ key: b("c1/c"), value: b("y") } as never);
      const all = { key: b("c1/"), range_end: prefixEnd("c1/") };
      const out: unknown[] = [await compact(c, ctx.rev(4), true)];
      for (let i = 2; i <= 6; i++) out.push(await attempt(c.kv.range({ ...all, revision: ctx.rev(i) } as never)));
      out.push(await attempt(c.kv.range({ ...all, revision: ctx.rev(4), count_only: true } as never)));
      out.push(await compact(c, ctx.rev(4)));
      out.push(await compact(c, ctx.rev(3)));
      out.push(await compact(c, ctx.rev(99)));
      out.push(await compact(c, ctx.rev(6)));
      out.push(await attempt(c.kv.range({ ...all, revision: ctx.rev(6) } as never)));
      return out;
    }));

  test("a txn reading below the compacted revision fails", () =>
    differential(sides(), async (c, ctx) => {
      await c.kv.put({ key: b("c2/a"), value: b("1") } as never);
      await c.kv.put({ key: b("c2/a"), value: b("2") } as never);
      await c.kv.compact({ revision: ctx.rev(2) } as never);
      return [
        await attempt(c.kv.txn({ compare: [], success: [{ request_range: { key: b("c2/a"), revision: ctx.rev(1) } }], failure: [] } as never)),
        await attempt(c.kv.txn({ compare: [], success: [{ request_range: { key: b("c2/a"), revision: ctx.rev(2) } }], failure: [] } as never)),
      ];
    }));

  test("kube-apiserver's compaction: the compact_rev_key txn, then Compact", () =>
    differential(sides(), async (c, ctx) => {
      for (let i = 0; i < 5; i++) await c.kv.put({ key: b("c3/obj"), value: b(String(i)) } as never);
      const step = async (expectVersion: string) => {
        const t = await attempt(c.kv.txn({
          compare: [{ key: b("compact_rev_key"), target: "Version", result: "Equal", version: expectVersion }],
          success: [{ request_put: { key: b("compact_rev_key"), value: b("base+5") } }],
          failure: [{ request_range: { key: b("compact_rev_key") } }],
        } as never));
        return [t, await compact(c, ctx.rev(5))];
      };
      const existing = await c.kv.range({ key: b("compact_rev_key") } as never);
      const version = existing.kvs[0]?.version ?? "0";
      return [await step(version), await step(version)];
    }));
});
