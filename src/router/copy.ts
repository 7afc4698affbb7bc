// Placing existing keys into a backend as they are: same create/mod revisions and
// versions, no new revision and no watch event (used by migrate and import). Only each
// key's current version moves; its older history stays behind (and is forgotten).
import { crc32 } from "node:zlib";
import { successor } from "../mvcc/keyrange.ts";
import type { LeaseView } from "../mvcc/backend.ts";
import type { Store } from "../mvcc/store.ts";
import type { KeyValue, LeaseRecord, Rev } from "../mvcc/types.ts";

/** these writes make no events: the store's counts kept from events cannot follow them */
const UNANNOUNCED = true;

/**
 * Writes the keys, replacing any other version of them there; the store's revision is
 * raised to cover them. A key's lease is copied from `from` when the store lacks it; a
 * key whose lease is gone everywhere is skipped (it went with its lease).
 */
export async function copyInto(store: Store, kvs: KeyValue[], from?: LeaseView): Promise<void> {
  const newest = kvs.reduce((a, kv) => (kv.modRevision > a ? kv.modRevision : a), 0n);
  const leases = new Map<Rev, LeaseRecord | undefined>();
  for (const kv of kvs) if (kv.lease !== 0n && !leases.has(kv.lease)) leases.set(kv.lease, await from?.lease(kv.lease));
  return store.write(async (a) => {
    await a.advanceTo(newest);
    for (const kv of kvs) {
      const there = (await a.tx.range({ start: kv.key, end: successor(kv.key) }, { limit: 1 }))[0];
      if (there && there.modRevision === kv.modRevision) continue; // copied by an earlier, interrupted run
      if (there) await a.tx.forget(kv.key);
      if (kv.lease !== 0n && !(await a.tx.leaseExists(kv.lease))) {
        const lease = leases.get(kv.lease);
        if (!lease) continue;
        await a.tx.leaseInsert(lease);
      }
      // a row's position within its revision only has to be unique: derive it from the key
      await a.tx.put(kv, undefined, crc32(kv.key) & 0x3fffffff);
    }
  }, [], undefined, UNANNOUNCED);
}

/** Removes keys that now live in another backend, leaving no tombstone. */
export function forgetIn(store: Store, keys: Uint8Array[]): Promise<void> {
  return store.write(async (a) => {
    for (const k of keys) await a.tx.forget(k);
  }, [], undefined, UNANNOUNCED);
}

/** Makes sure a lease exists in the store (import). */
export function ensureLease(store: Store, lease: LeaseRecord): Promise<void> {
  return store.write(async (a) => {
    if (!(await a.tx.leaseExists(lease.id))) await a.tx.leaseInsert(lease);
  });
}
