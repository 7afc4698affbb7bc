// Differential: Range, Put and DeleteRange with every option, against a real etcd.
import { describe, test } from "bun:test";
import type { Etcd3 } from "etcd3";
import { attempt, b, differential, prefixEnd, useServers } from "../support/differential.ts";

const sides = useServers();

/** keys with distinct values, versions and revisions, so every sort target is tie-free */
async function seed(c: Etcd3, p: string): Promise<void> {
  await c.kv.put({ key: b(`${p}c`), value: b("3") } as never);
  await c.kv.put({ key: b(`${p}a`), value: b("5") } as never);
  await c.kv.put({ key: b(`${p}a`), value: b("1") } as never);
  await c.kv.put({ key: b(`${p}d`), value: b("2") } as never);
  await c.kv.put({ key: b(`${p}b`), value: b("4") } as never);
  await c.kv.put({ key: b(`${p}b`), value: b("9") } as never);
  await c.kv.put({ key: b(`${p}b`), value: b("0") } as never);
}

const range = (c: Etcd3, req: Record<string, unknown>) => attempt(c.kv.range(req as never));

describe("Range", () => {
  test("single key, missing key, range_end, prefix, from a key to the end", () =>
    differential(sides(), async (c) => {
      await seed(c, "r1/");
      return [
        await range(c, { key: b("r1/a") }),
        await range(c, { key: b("r1/zz") }),
        await range(c, { key: b("r1/a"), range_end: b("r1/c") }),
        await range(c, { key: b("r1/"), range_end: prefixEnd("r1/") }),
        await range(c, { key: b("r1/b"), range_end: b("\0") }),
        await range(c, { key: b("r1/c"), range_end: b("r1/a") }), // end before start: nothing
      ];
    }));

  test("limit, more and count; negative limit means none", () =>
    differential(sides(), async (c) => {
      await seed(c, "r2/");
      const all = { key: b("r2/"), range_end: prefixEnd("r2/") };
      return [
        await range(c, { ...all, limit: 2 }),
        await range(c, { ...all, limit: 4 }),
        await range(c, { ...all, limit: 10 }),
        await range(c, { ...all, limit: -1 }),
      ];
    }));

  test("count_only and keys_only", () =>
    differential(sides(), async (c) => {
      await seed(c, "r3/");
      const all = { key: b("r3/"), range_end: prefixEnd("r3/") };
      return [
        await range(c, { ...all, count_only: true }),
        await range(c, { ...all, keys_only: true }),
        await range(c, { ...all, keys_only: true, limit: 1 }),
        await range(c, { ...all, count_only: true, limit: 1 }),
      ];
    }));

  test("every sort order with every sort target, with and without limit", () =>
    differential(sides(), async (c) => {
      await seed(c, "r4/");
      const out = [];
      for (const sort_order of ["None", "Ascend", "Descend"]) {
        for (const sort_target of ["Key", "Version", "Create", "Mod", "Value"]) {
          out.push(await range(c, { key: b("r4/"), range_end: prefixEnd("r4/"), sort_order, sort_target }));
          out.push(await range(c, { key: b("r4/"), range_end: prefixEnd("r4/"), sort_order, sort_target, limit: 2 }));
        }
      }
      out.push(await range(c, { key: b("r4/"), range_end: prefixEnd("r4/"), sort_target: "Value", keys_only: true }));
      return out;
    }));

  test("min/max create and mod revision filters", () =>
    differential(sides(), async (c, ctx) => {
      await seed(c, "r5/");
      const all = { key: b("r5/"), range_end: prefixEnd("r5/") };
      return [
        await range(c, { ...all, min_mod_revision: ctx.rev(4) }),
        await range(c, { ...all, max_mod_revision: ctx.rev(4) }),
        await range(c, { ...all, min_create_revision: ctx.rev(2) }),
        await range(c, { ...all, max_create_revision: ctx.rev(2) }),
        await range(c, { ...all, min_mod_revision: ctx.rev(2), max_mod_revision: ctx.rev(5), limit: 1 }),
      ];
    }));

  test("reads at past revisions, the current one and a future one", () =>
    differential(sides(), async (c, ctx) => {
      await seed(c, "r6/");
      await c.kv.deleteRange({ key: b("r6/c") } as never);
      const all = { key: b("r6/"), range_end: prefixEnd("r6/") };
      const out = [];
      for (let i = 1; i <= 9; i++) out.push(await range(c, { ...all, revision: ctx.rev(i) }));
      out.push(await range(c, { ...all, revision: ctx.rev(3), limit: 1 }));
      out.push(await range(c, { ...all, revision: ctx.rev(3), count_only: true }));
      return out;
    }));

  test("an empty key is refused", () => differential(sides(), async (c) => range(c, { key: b("") })));

  test("paging while keys come and go: each page's count at the pinned revision and at the newest", () =>
    differential(sides(), async (c) => {
      for (let i = 0; i < 7; i++) await c.kv.put({ key: b(`r7/k${i}`), value: b(String(i)) } as never);
      const end = prefixEnd("r7/");
      const out = [];
      // pinned: every page at the first page's revision, a key added and one deleted in between
      const first = (await c.kv.range({ key: b("r7/"), range_end: end, limit: 2 } as never)) as { header: { revision: string } };
      out.push(first);
      await c.kv.put({ key: b("r7/k5x"), value: b("new") } as never);
      out.push(await range(c, { key: b("r7/k1\0"), range_end: end, limit: 2, revision: first.header.revision }));
      await c.kv.deleteRange({ key: b("r7/k6") } as never);
      out.push(await range(c, { key: b("r7/k3\0"), range_end: end, limit: 2, revision: first.header.revision }));
      // newest: pages with no revision, the same changes between them
      out.push(await range(c, { key: b("r7/"), range_end: end, limit: 3 }));
      await c.kv.put({ key: b("r7/k4x"), value: b("new") } as never);
      out.push(await range(c, { key: b("r7/k2\0"), range_end: end, limit: 3 }));
      out.push(await range(c, { key: b("r7/k4x\0"), range_end: end, limit: 3 }));
      out.push(await range(c, { key: b("r7/k5x\0"), range_end: end, limit: 3 }));
      return out;
    }));

  test("the count of a large range, once counted, follows creations, deletions and updates", () =>
    differential(sides(), async (c) => {
      // more keys than strata's smallest kept count (mvcc/live-counts.ts), in txns of 100
      const key = (i: number) => b(`r8/${String(i).padStart(4, "0")}`);
      for (let i = 0; i < 1200; i += 100) {
        const puts = Array.from({ length: 100 }, (_, j) => ({ request_put: { key: key(i + j), value: b("v") } }));
        await c.kv.txn({ compare: [], success: puts, failure: [] } as never);
      }
      const all = { key: b("r8/"), range_end: prefixEnd("r8/") };
      const page = { ...all, limit: 2, keys_only: true };
      const out = [await range(c, page), await range(c, { ...all, count_only: true })];
      // each change, then the first page and the count again
      const changes: Array<() => Promise<unknown>> = [
        () => c.kv.put({ key: key(5000), value: b("created") } as never),
        () => c.kv.put({ key: key(7), value: b("updated") } as never),
        () => c.kv.deleteRange({ key: key(8) } as never),
        () => c.kv.deleteRange({ key: key(9) } as never), // deleted again: no change
        () => c.kv.deleteRange({ key: key(100), range_end: key(150) } as never),
        () => c.kv.put({ key: b("r80"), value: b("outside the range") } as never),
        () => c.kv.txn({ compare: [], success: [{ request_put: { key: key(8), value: b("again") } }, { request_delete_range: { key: key(20) } }, { request_put: { key: key(21), value: b("u") } }], failure: [] } as never),
      ];
      for (const change of changes) {
        await change();
        out.push(await range(c, page), await range(c, { ...all, count_only: true }), await range(c, { ...all, key: key(600), limit: 1, keys_only: true }));
      }
      return out;
    }), 120_000);

  test("on a server started empty, the count of every '/'-ended prefix follows each change", () =>
    differential(sides(), async (c) => {
      // strata counts such prefixes of up to four slashes from its events when it started
      // with no key (mvcc/live-counts.ts): each is listed, paged and counted after each change
      const prefixes = ["/", "/r9/", "/r9/a/", "/r9/a/ns-1/", "/r9/a/ns-1/x/", "/r9/b/", "/r9/c/"];
      const lists = async () => {
        const out: unknown[] = [];
        for (const p of prefixes) {
          const all = { key: b(p), range_end: prefixEnd(p) };
          out.push(await range(c, { ...all, limit: 1, keys_only: true }), await range(c, { ...all, count_only: true }));
        }
        return out;
      };
      const lease = await c.leaseClient.leaseGrant({ TTL: 600 } as never);
      const changes: Array<() => Promise<unknown>> = [
        () => c.kv.put({ key: b("/r9/a/ns-1/k1"), value: b("v") } as never),
        () => c.kv.put({ key: b("/r9/a/ns-1/x/y/z"), value: b("deep") } as never),
        () => c.kv.put({ key: b("/r9/a/ns-2/k1"), value: b("v"), lease: lease.ID } as never),
        () => c.kv.put({ key: b("/r9/a/ns-1/k1"), value: b("updated") } as never),
        () => c.kv.put({ key: b("/r9/b"), value: b("not under /r9/b/") } as never),
        () => c.kv.txn({ compare: [], success: [{ request_put: { key: b("/r9/c/1"), value: b("v") } }, { request_put: { key: b("/r9/c/2"), value: b("v") } }, { request_delete_range: { key: b("/r9/a/ns-1/k1") } }], failure: [] } as never),
        () => c.kv.deleteRange({ key: b("/r9/a/ns-1/k1") } as never), // deleted again: no change
        () => c.leaseClient.leaseRevoke({ ID: lease.ID } as never),
        () => c.kv.deleteRange({ key: b("/r9/"), range_end: prefixEnd("/r9/c/") } as never),
      ];
      const out = [await lists()];
      for (const change of changes) {
        await change();
        out.push(await lists());
      }
      return out;
    }), 120_000);
});

describe("Put", () => {
  test("prev_kv, versions and create revisions", () =>
    differential(sides(), async (c) => [
      await attempt(c.kv.put({ key: b("p1/k"), value: b("1"), prev_kv: true } as never)),
      await attempt(c.kv.put({ key: b("p1/k"), value: b("2"), prev_kv: true } as never)),
      await attempt(c.kv.put({ key: b("p1/k"), value: b("") } as never)),
      await range(c, { key: b("p1/k") }),
    ]));

  test("ignore_value and ignore_lease keep what was there; on a missing key they fail", () =>
    differential(sides(), async (c) => {
      const lease = await c.leaseClient.leaseGrant({ TTL: 60 } as never);
      return [
        await attempt(c.kv.put({ key: b("p2/k"), value: b("v"), lease: lease.ID } as never)),
        await attempt(c.kv.put({ key: b("p2/k"), ignore_value: true, prev_kv: true } as never)),
        await attempt(c.kv.put({ key: b("p2/k"), value: b("w"), ignore_lease: true } as never)),
        await range(c, { key: b("p2/k") }),
        await attempt(c.kv.put({ key: b("p2/missing"), ignore_value: true } as never)),
        await attempt(c.kv.put({ key: b("p2/missing"), value: b("x"), ignore_lease: true } as never)),
        await attempt(c.kv.put({ key: b("p2/k"), value: b("x"), ignore_value: true } as never)),
        await attempt(c.kv.put({ key: b("p2/k"), lease: lease.ID, ignore_lease: true } as never)),
        await attempt(c.kv.put({ key: b("p2/k"), value: b("x"), lease: "12345" } as never)),
        await attempt(c.kv.put({ key: b(""), value: b("x") } as never)),
        await range(c, { key: b("p2/k") }),
      ];
    }));

  test("binary keys and values", () =>
    differential(sides(), async (c) => [
      await attempt(c.kv.put({ key: Buffer.from([0x70, 0x33, 0xff, 0x00, 0x80]), value: Buffer.from([0, 1, 2, 255]) } as never)),
      await range(c, { key: Buffer.from([0x70, 0x33]), range_end: Buffer.from([0x70, 0x34]) }),
    ]));
});

describe("DeleteRange", () => {
  test("single key, range, prefix with prev_kv; deleting nothing makes no revision", () =>
    differential(sides(), async (c) => {
      await seed(c, "d1/");
      return [
        await attempt(c.kv.deleteRange({ key: b("d1/a"), prev_kv: true } as never)),
        await attempt(c.kv.deleteRange({ key: b("d1/a") } as never)),
        await attempt(c.kv.deleteRange({ key: b("d1/b"), range_end: b("d1/d"), prev_kv: true } as never)),
        await attempt(c.kv.deleteRange({ key: b("d1/zz"), range_end: b("d1/zzz") } as never)),
        await range(c, { key: b("d1/"), range_end: prefixEnd("d1/") }),
        await attempt(c.kv.put({ key: b("d1/a"), value: b("again") } as never)),
        await range(c, { key: b("d1/a") }),
        await attempt(c.kv.deleteRange({ key: b("d1/"), range_end: b("\0") } as never)),
        await attempt(c.kv.deleteRange({ key: b("") } as never)),
      ];
    }));

  test("one delete of 3,000 long keys (about 18 MiB of SQL on MySQL) removes them all", () =>
    differential(sides(), async (c) => {
      const key = (i: number) => b(`d2/${String(i).padStart(4, "0")}/${"k".repeat(1500)}`);
      for (let i = 0; i < 3000; i += 100) {
        const puts = Array.from({ length: 100 }, (_, j) => ({ request_put: { key: key(i + j), value: b(`v${i + j}`) } }));
        await c.kv.txn({ compare: [], success: puts, failure: [] } as never);
      }
      const all = { key: b("d2/"), range_end: prefixEnd("d2/") };
      const deleted = await attempt(c.kv.deleteRange({ ...all, prev_kv: true } as never));
      return [deleted, await range(c, { ...all, count_only: true })];
    }), 120_000);
});
