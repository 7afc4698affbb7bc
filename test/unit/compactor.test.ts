import { expect, test } from "bun:test";
import { AutoCompactor } from "../../src/keyspace/compactor.ts";
import type { Store } from "../../src/mvcc/store.ts";

test("periodic retention compacts to the revision seen one retention period ago", () => {
  let now = 0;
  const store = { revision: 10n, compactRevision: 0n } as Store;
  const c = new AutoCompactor(store, { mode: "periodic", retentionMs: 1000 }, () => now);
  c.start();
  c.stop();
  now = 500;
  store.revision = 20n;
  expect(c.target()).toBeUndefined(); // nothing is a full period old yet
  now = 1000;
  store.revision = 30n;
  expect(c.target()).toBe(10n); // the sample from t=0
  now = 1600;
  store.revision = 40n;
  expect(c.target()).toBe(20n); // the sample from t=500
});

test("revision retention keeps the last N revisions", () => {
  const store = { revision: 1500n, compactRevision: 0n } as Store;
  const c = new AutoCompactor(store, { mode: "revision", retention: 1000n });
  expect(c.target()).toBe(500n);
  store.compactRevision = 500n;
  expect(c.target()).toBeUndefined();
});
