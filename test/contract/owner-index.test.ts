// The ownership lookups of a write transaction (mvcc's OwnerLookup, answered from the
// selector index's entries) on every backend that keeps the index: they see the writes
// made before them in the same batch, only live keys' current versions count, and a
// backend without the index offers none. And the storage-side collector's bound: a
// collection stops after its most changes, leaving whole steps behind.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { AutoGc } from "../../src/mvcc/auto-gc.ts";
import type { WriteTx } from "../../src/mvcc/backend.ts";
import { Store } from "../../src/mvcc/store.ts";
import type { KeyValue } from "../../src/mvcc/types.ts";
import { BACKEND, client, covered, dec, enc, type Opened, openStore } from "./harness.ts";

/** a custom resource as the apiserver stores it (JSON), owned by the given uids */
function object(name: string, owners: string[] = [], labels: Record<string, string> = {}): Uint8Array {
  const metadata: Record<string, unknown> = { name, namespace: "ns", uid: `uid-${name}`, labels };
  if (owners.length) metadata.ownerReferences = owners.map((uid) => ({ apiVersion: "example.com/v1", kind: "Set", name: uid, uid, blockOwnerDeletion: true }));
  return enc(JSON.stringify({ apiVersion: "example.com/v1", kind: "Thing", metadata }));
}

const key = (name: string) => `/registry/example.com/things/ns/${name}`;
const names = (kvs: KeyValue[]) => kvs.map((kv) => dec(kv.key).split("/").at(-1));

describe.skipIf(!covered)(`ownership lookups on ${BACKEND}`, () => {
  let db: Opened;
  beforeAll(async () => {
    db = await openStore(undefined, undefined, true);
  });
  afterAll(() => db?.close());

  /** runs fn as one transaction of a batch on the backend, after the store's revision */
  async function inBatch<T>(fn: (tx: WriteTx) => Promise<T>): Promise<T> {
    const [r] = await db.backend.write([fn]);
    if (!r!.ok) throw r!.error;
    return r!.value;
  }

  test("a lookup sees the batch's earlier writes; only live keys' current versions count", async () => {
    const c = client(db.store);
    await c.put(key("a"), dec(object("a", ["uid-owner"])));
    await c.put(key("b"), dec(object("b", ["uid-owner", "uid-other"])));
    await c.put(key("gone"), dec(object("gone", ["uid-owner"])));
    await c.del(key("gone"));
    // b no longer names the owner in its current version
    await c.put(key("b"), dec(object("b", ["uid-other"])));
    const found = await inBatch(async (tx) => {
      const owners = tx.owners!;
      const before = names(await owners.dependents("uid-owner"));
      // a put earlier in the same transaction, not yet committed
      const rev = tx.revision + 1n;
      await tx.put({ key: enc(key("c")), value: object("c", ["uid-owner"]), createRevision: rev, modRevision: rev, version: 1n, lease: 0n }, undefined, 0);
      await tx.setRevision(rev);
      return { before, after: names(await owners.dependents("uid-owner")), other: names(await owners.dependents("uid-other")), byUid: names(await owners.withUid("uid-c")) };
    });
    expect(found).toEqual({ before: ["a"], after: ["a", "c"], other: ["b"], byUid: ["c"] });
    await db.store.syncExternal();
  });

  test("a collection stops at its most changes, each a whole step; the rest stays", async () => {
    const { revision, compactRevision } = await db.backend.revisions();
    const store = new Store(db.backend, { autoGc: new AutoGc(5) });
    store.init(revision, compactRevision);
    const c = client(store);
    await c.put(key("set"), dec(object("set", [], { "skip-controller-manager-metadata-caching": "true" })));
    for (let i = 0; i < 8; i++) await c.put(key(`dep-${i}`), dec(object(`dep-${i}`, ["uid-set"])));
    const r = await c.del(key("set"));
    expect(r.deleted).toBe(1n);
    const left = await c.list(key("dep-"), key("dep."));
    expect(left.length).toBe(3);
    expect(store.autoGc!.counts.deleted).toBe(5);
    // the answer's revision is the collection's last change: after the 9 puts, the owner's
    // delete and 5 deletes, each at a revision of its own
    expect(r.header.revision).toBe(revision + 9n + 1n + 5n);
    await db.store.syncExternal();
  });
});

describe.skipIf(!covered)(`without the selector index on ${BACKEND}`, () => {
  test("a write transaction offers no ownership lookups", async () => {
    const db = await openStore();
    try {
      const [r] = await db.backend.write([async (tx) => tx.owners]);
      expect(r).toEqual({ ok: true, value: undefined });
    } finally {
      await db.close();
    }
  });
});
