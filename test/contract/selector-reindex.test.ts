// A database written before the selector index existed (schema 2): opened by this strata
// it is migrated with the index marked incomplete, so selected reads are the plain range
// (filtered above, in strata) — never a subset from a half-built index; `strata reindex`
// builds it for the old rows, beside rows written since, and selected reads are then
// answered in the database, the same keys as before. Running it again changes nothing.
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
describe.skipIf(!covered || BACKEND === "nats")(`selector index of a database from before it, on ${BACKEND}`, () => {
  let o: Opened;
  const put = (s: Opened, i: number) => s.store.put(create(PutRequestSchema, { key: enc(`/registry/pods/${pod(i).namespace}/${pod(i).name}`), value: i % 2 ? asProtobuf(pod(i)) : asJson(pod(i)) }));
  const keys = async (s: Opened, i: number) => {
    const plain = await s.store.read(query());
    return plain.kvs.filter((kv) => selects(SELECTIONS[i]!, kv.value)).map((kv) => dec(kv.key));
  };

  beforeAll(async () => {
    o = await openStore();
    for (let i = 0; i < 300; i++) await put(o, i);
    // what a strata before the index left: schema 2, no index tables
    o = await o.reopen(() =>
      rawSql(o.url, [
        "DROP TABLE kv_label",
        "DROP TABLE kv_select",
        "DELETE FROM meta WHERE name = 'select_index'",
        "UPDATE meta SET num = 2 WHERE name = 'schema_version'",
      ])
    );
  });
  afterAll(() => o?.close());

  test("until reindexed, selected reads are the plain range; afterwards the index answers them, the same keys", async () => {
    expect(await o.backend.selectIndexComplete!()).toBe(false);
    // written after the upgrade: indexed as written
    for (let i = 300; i < 340; i++) await put(o, i);
    const want = [await keys(o, 0), await keys(o, 1)];
    for (const selection of SELECTIONS) {
      const exactOnly = await o.store.read(query({ selection, exactOnly: true }));
      expect(exactOnly.selected).toBeUndefined();
      expect(exactOnly.kvs.length).toBe(0);
      const wide = await o.store.read(query({ selection, exactOnly: false }));
      expect(wide.selected).toBeUndefined();
      expect(wide.kvs.length).toBe(340);
    }

    // an SQLite file is one process's: reindexed with strata stopped
    let r = { status: null as number | null, stderr: "" };
    o = await o.reopen(async () => (r = await strataCli("reindex", "--backend", o.url)));
    expect(r.stderr).toContain("selector index built");
    expect(r.status).toBe(0);
    // every row of the log is visited; the 40 indexed as written are skipped
    expect(r.stderr).toMatch(/"rows":340\b/);
    expect(await o.backend.selectIndexComplete!()).toBe(true);
    for (const [i, selection] of SELECTIONS.entries()) {
      const read = await o.store.read(query({ selection, exactOnly: true }));
      expect(read.selected).toBe("exact");
      expect(read.kvs.map((kv) => dec(kv.key))).toEqual(want[i]!);
      expect(want[i]!.length).toBeGreaterThan(10);
    }

    let again = { status: null as number | null, stderr: "" };
    o = await o.reopen(async () => (again = await strataCli("reindex", "--backend", o.url)));
    expect(again.status).toBe(0);
    expect(again.stderr).toContain("selector index already complete");
  });
});
