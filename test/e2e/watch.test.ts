// Differential: Watch over raw gRPC streams (every response compared, not just events)
// and through the etcd3 client's watchers.
import { describe, test } from "bun:test";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Etcd3 } from "etcd3";
import type { WatchCreateRequestSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { b, type Ctx, differential, prefixEnd, sleep, useServers } from "../support/differential.ts";
import { type RawWatch, rawWatch } from "../support/raw-watch.ts";

// both servers send progress notifications every second
const sides = useServers({
  etcdArgs: ["--experimental-watch-progress-notify-interval", "1s"],
  strataArgs: ["--watch-progress-notify-interval", "1s"],
});

type Create = MessageInitShape<typeof WatchCreateRequestSchema>;
const create = (w: RawWatch, c: Create) => w.send({ requestUnion: { case: "createRequest", value: c } });

/**
 * Waits until the stream has n responses (or 5 s), then groups them by watch id: etcd
 * orders the responses of one watcher, not how different watchers' responses interleave.
 */
async function responses(w: RawWatch, n: number): Promise<Record<string, unknown[]>> {
  const deadline = Date.now() + 5000;
  while (w.responses.length < n && Date.now() < deadline) await sleep(10);
  await sleep(100); // anything extra would show up as a difference
  const byWatcher: Record<string, unknown[]> = {};
  for (const r of w.responses) (byWatcher[String(r.watchId)] ??= []).push({ ...r });
  return byWatcher;
}

async function writes(c: Etcd3, p: string): Promise<void> {
  await c.kv.put({ key: b(`${p}a`), value: b("1") } as never);
  await c.kv.put({ key: b(`${p}b`), value: b("2") } as never);
  await c.kv.put({ key: b(`${p}a`), value: b("3") } as never);
  await c.kv.deleteRange({ key: b(`${p}b`) } as never);
  await c.kv.txn({
    compare: [],
    success: [
      { request_put: { key: b(`${p}c`), value: b("4") } },
      { request_put: { key: b(`${p}d`), value: b("5") } },
      { request_delete_range: { key: b(`${p}a`) } },
    ],
    failure: [],
  } as never);
}

function onStream(ctx: Ctx, fn: (w: RawWatch) => Promise<unknown>): Promise<unknown> {
  const w = rawWatch(ctx.side.endpoint);
  return fn(w).finally(() => w.close());
}

describe("Watch", () => {
  test("history replay from a past revision, prefix, with prev_kv; a txn's events share a revision", () =>
    differential(sides(), async (c, ctx) => {
      await writes(c, "w1/");
      return onStream(ctx, async (w) => {
        create(w, { key: b("w1/"), rangeEnd: prefixEnd("w1/"), startRevision: ctx.base + 1n, prevKv: true });
        return responses(w, 2);
      });
    }));

  test("live events on a single key and on a prefix, several watchers on one stream", () =>
    differential(sides(), async (c, ctx) =>
      onStream(ctx, async (w) => {
        create(w, { key: b("w2/a") });
        create(w, { key: b("w2/"), rangeEnd: prefixEnd("w2/"), prevKv: true });
        create(w, { key: b("w2/b"), rangeEnd: b("\0") });
        await responses(w, 3);
        await writes(c, "w2/");
        return responses(w, 14);
      })));

  test("NOPUT and NODELETE filters", () =>
    differential(sides(), async (c, ctx) =>
      onStream(ctx, async (w) => {
        create(w, { key: b("w3/"), rangeEnd: prefixEnd("w3/"), filters: [0] });
        create(w, { key: b("w3/"), rangeEnd: prefixEnd("w3/"), filters: [1] });
        await responses(w, 2);
        await writes(c, "w3/");
        return responses(w, 2 + 6);
      })));

  test("watchers of one range with every combination of filters and prev_kv on one stream each get their own events", () =>
    differential(sides(), async (c, ctx) =>
      onStream(ctx, async (w) => {
        // strata hands every watcher of one range and one set of options the same list of
        // events, encoded once: none may get another's
        for (const prevKv of [false, true]) {
          for (const filters of [[], [0], [1], [0, 1]]) create(w, { key: b("w13/"), rangeEnd: prefixEnd("w13/"), filters, prevKv });
        }
        create(w, { key: b("w13/"), rangeEnd: prefixEnd("w13/") });
        create(w, { key: b("w13/a"), prevKv: true });
        create(w, { key: b("w13/a") });
        create(w, { key: b("w13/a"), filters: [1], prevKv: true });
        await responses(w, 12);
        await writes(c, "w13/");
        return responses(w, 12 + 2 * (5 + 2 + 4) + 5 + 3 + 3 + 2);
      })));

  test("a watch from a future revision waits for it", () =>
    differential(sides(), async (c, ctx) =>
      onStream(ctx, async (w) => {
        create(w, { key: b("w4/"), rangeEnd: prefixEnd("w4/"), startRevision: ctx.base + 3n });
        await responses(w, 1);
        await writes(c, "w4/");
        return responses(w, 4);
      })));

  test("cancel stops a watcher; cancelling an unknown id does nothing; ids are per stream", () =>
    differential(sides(), async (c, ctx) =>
      onStream(ctx, async (w) => {
        create(w, { key: b("w5/a") });
        create(w, { key: b("w5/b"), watchId: 7n });
        create(w, { key: b("w5/c"), watchId: 7n }); // duplicate id
        await responses(w, 3);
        w.send({ requestUnion: { case: "cancelRequest", value: { watchId: 0n } } });
        w.send({ requestUnion: { case: "cancelRequest", value: { watchId: 42n } } });
        await responses(w, 4);
        await c.kv.put({ key: b("w5/a"), value: b("x") } as never);
        await c.kv.put({ key: b("w5/b"), value: b("y") } as never);
        create(w, { key: b("w5/d") });
        return responses(w, 6);
      })));

  test("an empty range is refused at creation", () =>
    differential(sides(), async (_c, ctx) =>
      onStream(ctx, async (w) => {
        create(w, { key: b("w6/b"), rangeEnd: b("w6/a") });
        return responses(w, 1);
      })));

  test("a progress request is answered with the current revision", () =>
    differential(sides(), async (c, ctx) =>
      onStream(ctx, async (w) => {
        create(w, { key: b("w7/") , rangeEnd: prefixEnd("w7/") });
        await responses(w, 1);
        await c.kv.put({ key: b("w7/a"), value: b("1") } as never);
        await responses(w, 2);
        w.send({ requestUnion: { case: "progressRequest", value: {} } });
        return responses(w, 3);
      })));

  test("progress_notify reaches an idle watcher", () =>
    differential(sides(), async (c, ctx) =>
      onStream(ctx, async (w) => {
        await c.kv.put({ key: b("w8/a"), value: b("1") } as never);
        create(w, { key: b("w8/"), rangeEnd: prefixEnd("w8/"), progressNotify: true });
        await sleep(1300);
        // a notification arrived within a second or so; compare the first one
        return (await responses(w, 2))["0"]!.slice(0, 2);
      })), 15_000);

  test("a watch from a compacted revision is cancelled with the compact revision", () =>
    differential(sides(), async (c, ctx) => {
      await writes(c, "w9/");
      await c.kv.compact({ revision: ctx.rev(4), physical: true } as never);
      return onStream(ctx, async (w) => {
        create(w, { key: b("w9/"), rangeEnd: prefixEnd("w9/"), startRevision: ctx.base + 2n });
        create(w, { key: b("w9/"), rangeEnd: prefixEnd("w9/"), startRevision: ctx.base + 4n, prevKv: true });
        return responses(w, 4);
      });
    }));
});

describe("Watch fragments", () => {
  // values are large; compare what each response carried, not the bytes
  const shape = (rs: unknown[] | undefined) =>
    (rs ?? []).map((r) => {
      const x = r as { fragment: boolean; created: boolean; events: { type: number; kv: { key: Uint8Array }; prevKv?: { value: Uint8Array } }[] };
      return { created: x.created, fragment: x.fragment, events: x.events.map((e) => `${e.type}:${Buffer.from(e.kv.key)}:${e.prevKv?.value.length ?? 0}`) };
    });

  test("one revision larger than max-request-bytes is fragmented for a watcher that asked, whole for one that did not", () =>
    differential(sides(), async (c, ctx) => {
      const big = Buffer.alloc(600 * 1024, 120);
      for (const k of ["a", "b", "c", "d"]) await c.kv.put({ key: b(`w11/${k}`), value: big } as never);
      // one revision whose events carry four 600 KiB previous values: 2.4 MiB, above
      // etcd's limit for watch responses (max-request-bytes + 512 KiB)
      const deleted = (await c.kv.deleteRange({ key: b("w11/"), range_end: prefixEnd("w11/") } as never)).header.revision;
      return onStream(ctx, async (w) => {
        create(w, { key: b("w11/"), rangeEnd: prefixEnd("w11/"), startRevision: BigInt(deleted), prevKv: true, fragment: true });
        create(w, { key: b("w11/"), rangeEnd: prefixEnd("w11/"), startRevision: BigInt(deleted), prevKv: true });
        const byWatcher = await responses(w, 5);
        return { fragmenting: shape(byWatcher["0"]), whole: shape(byWatcher["1"]) };
      });
    }));

  test("a replay larger than max-request-bytes reaches both watchers whole once joined", () =>
    differential(sides(), async (c, ctx) => {
      const big = Buffer.alloc(600 * 1024, 120);
      // four 600 KiB puts: replayed from history they are 2.4 MiB. etcd sends them as one
      // response (in fragments to a watcher that asked); strata splits between revisions
      // so no response exceeds a client's receive limit. Joined, the events are the same.
      for (const k of ["a", "b", "c", "d"]) await c.kv.put({ key: b(`w12/${k}`), value: big } as never);
      return onStream(ctx, async (w) => {
        create(w, { key: b("w12/"), rangeEnd: prefixEnd("w12/"), startRevision: ctx.base + 1n, fragment: true });
        create(w, { key: b("w12/"), rangeEnd: prefixEnd("w12/"), startRevision: ctx.base + 1n });
        const deadline = Date.now() + 5000;
        while (w.responses.reduce((n, r) => n + r.events.length, 0) < 8 && Date.now() < deadline) await sleep(10);
        await sleep(100); // anything extra would show up as a difference
        const joined: Record<string, string[]> = {};
        const last: Record<string, boolean> = {};
        for (const r of w.responses) {
          (joined[String(r.watchId)] ??= []).push(...shape([r])[0]!.events);
          last[String(r.watchId)] = r.fragment;
        }
        // every fragment sequence ends
        return { joined, fragmentPending: last };
      });
    }));
});

describe("Watch through the etcd3 client", () => {
  test("events with prev_kv as the client reports them", () =>
    differential(sides(), async (c) => {
      const seen: unknown[] = [];
      const watcher = await c.watch().prefix("w10/").withPreviousKV().create();
      watcher.on("put", (kv, prev) => seen.push(["put", kv, prev ?? null]));
      watcher.on("delete", (kv, prev) => seen.push(["delete", kv, prev ?? null]));
      await writes(c, "w10/");
      const deadline = Date.now() + 5000;
      while (seen.length < 6 && Date.now() < deadline) await sleep(10);
      await watcher.cancel();
      return seen;
    }));
});
