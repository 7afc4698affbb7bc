// A commit whose answer is lost: the database connection fails while the batch is
// committing. strata acknowledges the batch only if its commit token shows it committed.
// The database is a real SQLite file; only the failure of the connection is simulated.
import { afterAll, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PutRequestSchema, type RangeRequest, RangeRequestSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { SqlDriver } from "../../src/backends/sql/driver.ts";
import { SqlBackend } from "../../src/backends/sql/sql-backend.ts";
import { openSqliteDriver } from "../../src/backends/sqlite/sqlite.ts";
import { sqliteDialect } from "../../src/backends/sqlite/sqlite-dialect.ts";
import { finishRange, rangeQuery } from "../../src/mvcc/range.ts";
import { Store } from "../../src/mvcc/store.ts";

const dir = mkdtempSync(join(tmpdir(), "strata-commit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** a driver whose next write transaction loses its connection before or after COMMIT */
function flaky(inner: SqlDriver) {
  let failNext: "before" | "after" | undefined;
  const driver: SqlDriver = {
    read: (fn) => inner.read(fn),
    query: (sql, params) => inner.query(sql, params),
    exec: (sql) => inner.exec(sql),
    close: () => inner.close(),
    async write(fn) {
      const mode = failNext;
      failNext = undefined;
      if (mode === "before") {
        return inner.write(async (c) => {
          await fn(c);
          throw new Error("connection reset while committing"); // rolled back
        });
      }
      const result = await inner.write(fn);
      if (mode === "after") throw new Error("connection reset while committing"); // committed, answer lost
      return result;
    },
  };
  return { driver, fail: (mode: "before" | "after") => (failNext = mode) };
}

test("a lost commit answer is resolved by the commit token, never guessed", async () => {
  const { driver, fail } = flaky(await openSqliteDriver(join(dir, "s.db")));
  const backend = new SqlBackend("sqlite://test", driver, sqliteDialect);
  const state = await backend.open();
  const store = new Store(backend);
  store.init(state.revision, state.compactRevision);
  const enc = (s: string) => new TextEncoder().encode(s);
  const get = async (k: string) => (await rangeOf(store, create(RangeRequestSchema, { key: enc(k) }))).kvs[0];

  // committed, answer lost: acknowledged, at its revision, and visible
  fail("after");
  const committed = await store.put(create(PutRequestSchema, { key: enc("a"), value: enc("1") }));
  expect(committed.header.revision).toBe(2n);
  expect((await get("a"))?.modRevision).toBe(2n);

  // not committed: refused, and nothing is there
  fail("before");
  await expect(store.put(create(PutRequestSchema, { key: enc("b"), value: enc("1") }))).rejects.toThrow("unavailable");
  expect(await get("b")).toBeUndefined();

  // and the store carries on at the next revision
  const next = await store.put(create(PutRequestSchema, { key: enc("c"), value: enc("1") }));
  expect(next.header.revision).toBe(3n);
  await backend.close();
});

/** a Range as the keyspace answers it from one store: the raw read, finished */
async function rangeOf(store: Store, r: RangeRequest) {
  return finishRange(r, await store.read(rangeQuery(r)));
}
