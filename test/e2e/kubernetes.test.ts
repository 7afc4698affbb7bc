// Differential: the requests kube-apiserver's etcd3 storage sends, in its own shapes.
import { describe, test } from "bun:test";
import { attempt, b, differential, prefixEnd, sleep, useServers } from "../support/differential.ts";
import { create, pagedList, remove, update } from "../support/kubernetes-ops.ts";

const sides = useServers();

describe("kube-apiserver patterns", () => {
  test("create, create again, guarded update (stale and current), guarded delete", () =>
    differential(sides(), async (c, ctx) => [
      await create(c, "/registry/pods/default/web-0", "v1"),
      await create(c, "/registry/pods/default/web-0", "v1-again"),
      await update(c, "/registry/pods/default/web-0", "v2", ctx.rev(0)),
      await update(c, "/registry/pods/default/web-0", "v2", ctx.rev(1)),
      await remove(c, "/registry/pods/default/web-0", ctx.rev(1)),
      await remove(c, "/registry/pods/default/web-0", ctx.rev(2)),
      await attempt(c.kv.range({ key: b("/registry/pods/default/web-0") } as never)),
    ]));

  test("a paginated list at the first page's revision, with writes in between", () =>
    differential(sides(), async (c) => {
      for (let i = 0; i < 23; i++) await create(c, `/registry/configmaps/ns${i % 3}/cm-${String(i).padStart(2, "0")}`, `d${i}`);
      const prefix = "/registry/configmaps/";
      // writes between pages do not show in later pages read at the first page's revision
      return pagedList(c, prefix, 5, async (n) => {
        await create(c, `${prefix}zz/new-${n + 1}`, "late");
        await c.kv.deleteRange({ key: b(`${prefix}ns0/cm-00`) } as never);
      });
    }));

  test("current revision from a limit-1 range, object counts from count_only", () =>
    differential(sides(), async (c) => {
      for (let i = 0; i < 4; i++) await create(c, `/registry/secrets/kube-system/s${i}`, "x");
      return [
        await attempt(c.kv.range({ key: b("/registry/secrets/"), range_end: prefixEnd("/registry/secrets/"), limit: 1 } as never)),
        await attempt(c.kv.range({ key: b("/registry/secrets/"), range_end: prefixEnd("/registry/secrets/"), count_only: true } as never)),
        await attempt(c.kv.range({ key: b("/registry/secrets/"), range_end: prefixEnd("/registry/secrets/"), keys_only: true } as never)),
      ];
    }));

  test("a prefix watch from a list's revision + 1 with prev_kv sees every later change once", () =>
    differential(sides(), async (c) => {
      const prefix = "/registry/deployments/";
      for (let i = 0; i < 5; i++) await create(c, `${prefix}default/d${i}`, "v1");
      const list = await c.kv.range({ key: b(prefix), range_end: prefixEnd(prefix) } as never);
      // changes between the list and the watch must not be lost
      await update(c, `${prefix}default/d0`, "v2", list.kvs[0]!.mod_revision);
      await remove(c, `${prefix}default/d1`, list.kvs[1]!.mod_revision);
      const seen: unknown[] = [];
      const watcher = await c.watch().prefix(prefix).startRevision(String(BigInt(list.header.revision) + 1n)).withPreviousKV().create();
      watcher.on("put", (kv, prev) => seen.push(["put", kv, prev ?? null]));
      watcher.on("delete", (kv, prev) => seen.push(["delete", kv, prev ?? null]));
      await create(c, `${prefix}default/d9`, "v1");
      const deadline = Date.now() + 5000;
      while (seen.length < 3 && Date.now() < deadline) await sleep(10);
      await sleep(100);
      await watcher.cancel();
      return seen;
    }));

  test("events kept by one lease reused for many keys, gone when it expires", () =>
    differential(sides(), async (c) => {
      const lease = (await c.leaseClient.leaseGrant({ TTL: 2 } as never)).ID;
      for (let i = 0; i < 5; i++) await create(c, `/registry/events/default/e${i}`, "event", lease);
      const before = await c.kv.range({ key: b("/registry/events/"), range_end: prefixEnd("/registry/events/"), count_only: true } as never);
      const deadline = Date.now() + 8000;
      let after;
      do {
        await sleep(200);
        after = await c.kv.range({ key: b("/registry/events/"), range_end: prefixEnd("/registry/events/"), count_only: true } as never);
      } while (after.count !== "0" && Date.now() < deadline);
      return [before.count, after.count];
    }), 15_000);
});
