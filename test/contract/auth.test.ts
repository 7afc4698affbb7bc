// The auth record (mvcc's AuthView): etcd's users and roles kept beside the keys, changed
// by compare-and-swap on its revision so that of two processes changing it at once one
// wins, read back after a restart, and apart from the key revisions.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { BACKEND, client, covered, enc, type Opened, openStore, shared } from "./harness.ts";

let db: Opened;
const record = (revision: bigint, text: string) => ({ revision, data: enc(text) });
const read = async (o: Opened) => {
  const r = await o.backend.readAuth();
  return r && { revision: r.revision, data: new TextDecoder().decode(r.data) };
};

describe.skipIf(!covered)(`the auth record on ${BACKEND}`, () => {
  beforeAll(async () => {
    db = await openStore();
  });
  afterAll(() => db?.close());

  test("none at first; the first write is one writer's, then each names the revision it follows", async () => {
    expect(await db.backend.readAuth()).toBeUndefined();
    expect(await db.backend.authRevision()).toBe(0n);
    expect(await db.backend.writeAuth(0n, record(1n, "first"))).toBe(true);
    // a second "first" write finds one there
    expect(await db.backend.writeAuth(0n, record(1n, "also first"))).toBe(false);
    expect(await db.backend.writeAuth(1n, record(2n, "second"))).toBe(true);
    // a writer that read revision 1 comes too late, and changes nothing
    expect(await db.backend.writeAuth(1n, record(2n, "stale"))).toBe(false);
    expect(await read(db)).toEqual({ revision: 2n, data: "second" });
    expect(await db.backend.authRevision()).toBe(2n);
  });

  test("the key revision does not move with it, and bytes of every value come back as written", async () => {
    const before = db.store.revision;
    const bytes = new Uint8Array(70_000).map((_, i) => i % 251);
    expect(await db.backend.writeAuth(2n, { revision: 3n, data: bytes })).toBe(true);
    expect((await db.backend.readAuth())?.data).toEqual(bytes);
    expect((await db.backend.revisions()).revision).toBe(before);
    await client(db.store).put("/k", "v");
    expect(await db.backend.authRevision()).toBe(3n);
  });

  test("kept across a restart", async () => {
    db = await db.reopen();
    expect(await db.backend.authRevision()).toBe(3n);
    expect(await db.backend.writeAuth(3n, record(4n, "after restart"))).toBe(true);
    expect(await read(db)).toEqual({ revision: 4n, data: "after restart" });
  });

  test.if(shared)("two processes on the database: each sees the other's writes, and one of two racing writes wins", async () => {
    const other = await openStore(db.url);
    try {
      expect(await read(other)).toEqual({ revision: 4n, data: "after restart" });
      const results = await Promise.all([db.backend.writeAuth(4n, record(5n, "one")), other.backend.writeAuth(4n, record(5n, "two"))]);
      expect(results.filter(Boolean).length).toBe(1);
      const winner = results[0] ? "one" : "two";
      expect(await read(db)).toEqual({ revision: 5n, data: winner });
      expect(await read(other)).toEqual({ revision: 5n, data: winner });
    } finally {
      await other.close();
    }
  });
});
