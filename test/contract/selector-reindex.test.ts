// Rows written without the selector index — by a strata from before it (schema 2), or
// without --selector-index — leave it incomplete, so selected reads are the plain range
// (filtered above, in strata), never a subset from a partial index; `strata reindex`
// indexes them, beside rows written since, and selected reads are then answered in the
// database, the same keys as before. Running it again changes nothing.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { PutRequestSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { KeyRange, RangeQuery } from "../../src/mvcc/types.ts";
import { parseSelection, selects } from "../../src/selectors/index.ts";
import { strataCli } from "../support/cli.ts";
import { asJson, asProtobuf, type K8sObject } from "../support/k8s-objects.ts";
import { BACKEND, covered, dec, enc, type Opened, openStore, rawSql } from "./harness.ts";

const PODS: KeyRange = { start: enc("/registry/pods/"), end: enc("/registry/pods0") };
const SELECTIONS = [parseSelection("app=web", "")!, parseSelection("tier in (front),app!=db", "metadata.namespace=prod")!];
const query = (select?: RangeQuery["select"]): RangeQuery => ({ range: PODS, revision: 0n, limit: 0, countOnly: false, keysOnly: false, select });

function pod(i: number): K8sObject {
  return {
    apiVersion: "v1", kind: "Pod", name: `pod-${i}`, namespace: i % 2 ? "prod" : "dev",
    labels: { app: ["web", "db", "cache"][i % 3]!, ...(i % 4 ? { tier: "front" } : {}) },
    body: { status: { phase: "Running" } },
  };
}

// NATS keeps its SQL as a local copy of its log and indexes an old copy when it loads it
describe.skipIf(!covered || BACKEND === "nats")(`selector index of rows written without it, on ${BACKEND}`, () => {
  let o: Opened;
  const put = (s: Opened, i: number) => s.store.put(create(PutRequestSchema, { key: enc(`/registry/pods/${pod(i).namespace}/${pod(i).name}`), value: i % 2 ? asProtobuf(pod(i)) : asJson(pod(i)) }));
  const keys = async (s: Opened, i: number) => {
    const plain = await s.store.read(query());
    return plain.kvs.filter((kv) => selects(SELECTIONS[i]!, kv.value)).map((kv) => dec(kv.key));
  };
  /** selected reads are the plain range (the keyspace filters them), never an index's partial answer */
  const unindexed = async (s: Opened, total: number) => {
    for (const selection of SELECTIONS) {
      const exactOnly = await s.store.read(query({ selection, exactOnly: true }));
      expect(exactOnly.selected).toBeUndefined();
      expect(exactOnly.kvs.length).toBe(0);
      const wide = await s.store.read(query({ selection, exactOnly: false }));
      expect(wide.selected).toBeUndefined();
      expect(wide.kvs.length).toBe(total);
    }
  };
  /** `strata reindex` with the store closed (an SQLite file is one process's) */
  const reindex = async (index: boolean) => {
    let r = { status: null as number | null, stderr: "" };
    o = await o.reopen(async () => (r = await strataCli("reindex", "--backend", o.url)), index);
    expect(r.status).toBe(0);
    return r.stderr;
  };

  beforeAll(async () => {
    o = await openStore(undefined, undefined, true);
    for (let i = 0; i < 300; i++) await put(o, i);
    // what a strata before the index left: schema 2, no index tables (nor the auth table of
    // schema 4), and the index (k, prev_rev) that schema 5 dropped
    o = await o.reopen(() =>
      rawSql(o.url, [
        "CREATE UNIQUE INDEX kv_log_key_prev ON kv_log (k, prev_rev)",
        "DROP TABLE auth",
        "DROP TABLE kv_label",
        "DROP TABLE kv_select",
        "DELETE FROM meta WHERE name = 'select_index'",
        "UPDATE meta SET num = 2 WHERE name = 'schema_version'",
      ])
    );
  });
  afterAll(() => o?.close());

  test("a database from before the index: the plain range until reindexed, then the index's answer, the same keys", async () => {
    expect(await o.backend.selectorIndex!()).toBe("incomplete");
    // written after the upgrade: indexed as written
    for (let i = 300; i < 340; i++) await put(o, i);
    const want = [await keys(o, 0), await keys(o, 1)];
    await unindexed(o, 340);

    const built = await reindex(true);
    expect(built).toContain("selector index built");
    // every row of the log is visited; the 40 indexed as written are skipped
    expect(built).toMatch(/"rows":340\b/);
    expect(await o.backend.selectorIndex!()).toBe("complete");
    for (const [i, selection] of SELECTIONS.entries()) {
      const read = await o.store.read(query({ selection, exactOnly: true }));
      expect(read.selected).toBe("exact");
      expect(read.kvs.map((kv) => dec(kv.key))).toEqual(want[i]!);
      expect(want[i]!.length).toBeGreaterThan(10);
    }
    expect(await reindex(true)).toContain("selector index already complete");
  });

  test("writes without --selector-index leave it incomplete until reindexed again", async () => {
    o = await o.reopen(undefined, false);
    expect(await o.backend.selectorIndex!()).toBe("off");
    for (let i = 340; i < 360; i++) await put(o, i);
    await unindexed(o, 360);
    o = await o.reopen(undefined, true);
    expect(await o.backend.selectorIndex!()).toBe("incomplete");
    await unindexed(o, 360);
    await reindex(true);
    expect(await o.backend.selectorIndex!()).toBe("complete");
    const read = await o.store.read(query({ selection: SELECTIONS[0]!, exactOnly: true }));
    expect(read.kvs.map((kv) => dec(kv.key))).toEqual(await keys(o, 0));
  });

  // a database server can be reindexed while strata serves it (an SQLite file cannot)
  test.skipIf(BACKEND === "sqlite")("a strata without --selector-index never reads the index, even one completed beside it", async () => {
    o = await o.reopen(undefined, false);
    const r = await strataCli("reindex", "--backend", o.url);
    expect(r.status).toBe(0);
    // written unindexed after the index was completed: only the plain range has them
    for (let i = 360; i < 380; i++) await put(o, i);
    await unindexed(o, 380);
  });
});

