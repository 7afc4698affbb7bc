// Moving keys to the backends new rules name while strata serves (`strata migrate
// --endpoint`). Copy what moves as of a snapshot while writes go on; then hold back the
// writes that may touch moving keys, copy what changed since the snapshot, put the new
// rules in force and let the writes go; finally remove the old copies. Until the end,
// reads and watchers see each key only in the backend the rules in force give it.
import { create } from "@bufbuild/protobuf";
import { CompactionRequestSchema } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { MoveProgress, Topology } from "./contract.ts";
import { EtcdError } from "../mvcc/errors.ts";
import { keyString, successor } from "../mvcc/keyrange.ts";
import type { Event, KeyValue, Rev } from "../mvcc/types.ts";
import { copyInto, forgetIn } from "./copy.ts";
import { eachPage, sameTopology } from "./open.ts";
import type { Part } from "./part.ts";
import type { Router } from "./router.ts";
import { RoutingTable } from "./rules.ts";

const BATCH = 500;

/** Why next cannot be reached by moving keys alone; undefined when it can. */
export function notMovable(current: Topology, next: Topology): string | undefined {
  const names = (t: Topology) => JSON.stringify([...t.backends].sort(([a], [b]) => a.localeCompare(b)));
  if (names(current) !== names(next)) return "the backends differ from the running ones (a live migration moves keys between the backends strata already has; add or remove backends with a restart)";
  if (current.default !== next.default) return "the default backend differs (it keeps the leases; change it with strata stopped)";
  if (String(current.keyPrefixes) !== String(next.keyPrefixes)) return "key-prefix differs";
  return undefined;
}

export async function moveKeys(router: Router, next: Topology, report: (p: MoveProgress) => void): Promise<MoveProgress> {
  if (sameTopology(router.topology, next)) return { phase: "done", moved: 0, total: 0, message: "these rules are already in force" };
  const reason = notMovable(router.topology, next);
  if (reason) throw new EtcdError("FailedPrecondition", `strata: cannot migrate live: ${reason}`);
  const to = RoutingTable.of(next);
  await router.beginMove(to);
  const target = (kv: KeyValue) => router.byName.get(to.route(keyString(kv.key)))!;
  const progress: MoveProgress = { phase: "counting", moved: 0, total: 0 };
  const tell = (phase: MoveProgress["phase"], message?: string) => report({ ...progress, phase, message });
  let switched = false;
  try {
    // 1. a snapshot of each backend; count, then copy what leaves it
    const snapshots = new Map<Part, Rev>();
    for (const p of router.parts) snapshots.set(p, (await p.backend.revisions()).revision);
    for (const [p, at] of snapshots) {
      await eachPage(p.backend, true, async (kvs) => void (progress.total += kvs.filter((kv) => target(kv) !== p).length), at);
    }
    tell("copying");
    for (const [p, at] of snapshots) {
      await eachPage(p.backend, false, async (kvs) => {
        const leaving = kvs.filter((kv) => target(kv) !== p);
        for (let i = 0; i < leaving.length; i += BATCH) {
          await copyGrouped(p, leaving.slice(i, i + BATCH), target);
          progress.moved += Math.min(BATCH, leaving.length - i);
          tell("copying");
        }
      }, at);
    }
    // history of moving keys since the last compaction: the newest change decides how far
    // back history must be cut (a moved key brings only its current version)
    let lastChange = 0n;
    for (const [p, at] of snapshots) {
      lastChange = max(lastChange, await lastMovingChange(p, p.store.compactRevision + 1n, at, (e) => target(e.kv) !== p));
    }

    // 2. hold back writes to moving keys; copy what changed since the snapshots
    tell("catching up");
    const fenced = performance.now();
    const release = await router.raiseFence();
    try {
      for (const [p, at] of snapshots) {
        const now = (await p.backend.revisions()).revision;
        const changed = new Map<string, Uint8Array>();
        lastChange = max(lastChange, await lastMovingChange(p, at + 1n, now, (e) => {
          if (target(e.kv) === p) return false;
          changed.set(keyString(e.kv.key), e.kv.key);
          return true;
        }));
        await catchUp(p, [...changed.values()], target);
      }
      // 3. history before the last change of a moved key is cut, as etcd would after a
      // compaction, because the old versions of moved keys stay behind; then the new rules
      const compact = lastChange > router.compactRevision;
      if (compact) await router.compactNow(create(CompactionRequestSchema, { revision: lastChange }));
      router.setTopology(next);
      switched = true;
      const held = `writes to moving keys held for ${Math.round(performance.now() - fenced)} ms`;
      progress.message = compact ? `${held}; history compacted at revision ${lastChange}` : held;
      tell("switched", progress.message);
    } finally {
      release();
    }
    // 4. the old copies go
    tell("cleaning up");
    await forgetStrays(router);
    progress.phase = "done";
    return { ...progress };
  } catch (err) {
    // before the switch the copies are strays of the old rules; after it the originals are
    try {
      await forgetStrays(router);
    } catch (cleanup) {
      throw new Error(`${(err as Error).message}; removing the ${switched ? "old copies" : "partial copies"} also failed (${(cleanup as Error).message}): run the migration again`);
    }
    throw err;
  } finally {
    router.endMove();
  }
}

/** Copies kvs into the backends they move to, one write per target. */
async function copyGrouped(source: Part, kvs: KeyValue[], target: (kv: KeyValue) => Part): Promise<void> {
  const byTarget = new Map<Part, KeyValue[]>();
  for (const kv of kvs) byTarget.set(target(kv), [...(byTarget.get(target(kv)) ?? []), kv]);
  for (const [t, group] of byTarget) await copyInto(t.store, group, source.backend);
}

/** The newest revision in [from, to] at which p's history changes a key `moving` accepts (0 if none). */
async function lastMovingChange(p: Part, from: Rev, to: Rev, moving: (e: Event) => boolean): Promise<Rev> {
  let last = 0n;
  while (from <= to) {
    const page = await p.backend.events(from, to, 5000);
    if (page.compactRevision >= from) throw new Error(`backend ${p.name}: history from revision ${from} was compacted during the migration`);
    for (const e of page.events) if (moving(e)) last = max(last, e.kv.modRevision);
    if (page.through >= to) break;
    from = page.through + 1n;
  }
  return last;
}

/** Brings the moved copies of changed keys up to date with p (writes to them are held back). */
async function catchUp(p: Part, keys: Uint8Array[], target: (kv: KeyValue) => Part): Promise<void> {
  for (let i = 0; i < keys.length; i += BATCH) {
    const batch = keys.slice(i, i + BATCH);
    const present: KeyValue[] = [];
    const gone = new Map<Part, Uint8Array[]>();
    for (const key of batch) {
      const kv = (await p.backend.range({ range: { start: key, end: successor(key) }, revision: 0n, limit: 1, countOnly: false, keysOnly: false })).kvs[0];
      if (kv) present.push(kv);
      else {
        const t = target({ key } as KeyValue);
        gone.set(t, [...(gone.get(t) ?? []), key]);
      }
    }
    await copyGrouped(p, present, target);
    for (const [t, ks] of gone) await forgetIn(t.store, ks);
  }
}

/** Removes every key a backend holds that the rules in force give another backend. */
async function forgetStrays(router: Router): Promise<void> {
  for (const p of router.parts) {
    const strays: Uint8Array[] = [];
    await eachPage(p.backend, true, async (kvs) => {
      for (const kv of kvs) if (router.routing.route(keyString(kv.key)) !== p.name) strays.push(kv.key);
    });
    for (let i = 0; i < strays.length; i += BATCH) await forgetIn(p.store, strays.slice(i, i + BATCH));
  }
}

function max(a: Rev, b: Rev): Rev {
  return a > b ? a : b;
}
