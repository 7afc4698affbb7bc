// The selector index (src/backends/sql/selector-index.ts) on the backend under test:
// a selected read must keep exactly what checking every value of the plain range keeps
// (src/selectors' `selects`, itself checked against Kubernetes' rules in the selectors
// tests) when the index decides the selection, and never less when it only narrows —
// at the latest revision and older ones, through label changes, deletions, re-creations
// and compaction, in pages, for objects in JSON and protobuf, encrypted values, foreign
// bytes and empty values.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { CompactionRequestSchema, PutRequestSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { KeyRange, KeyValue, RangeQuery, Rev } from "../../src/mvcc/types.ts";
import { indexAnswersExactly, labelEntries, parseSelection, type Selection, selects } from "../../src/selectors/index.ts";
import { asJson, asProtobuf, encrypted, type K8sObject } from "../support/k8s-objects.ts";
import { LABELS_THROUGH, MERGE_ROWS } from "../../src/backends/sql/selector-index.ts";
import { BACKEND, client, covered, dec, enc, type Opened, openStore, putOp, rawSql } from "./harness.ts";

const SELECTORS: Array<[labels: string, fields: string]> = [
  ["app=web", ""],
  ["app in (web,db)", ""],
  ["app!=web", ""],
  ["app notin (web,cache)", ""],
  ["tier", ""],
  ["!tier", ""],
  ["shard>10", ""],
  ["shard<5", ""],
  ["app=web,tier=front", ""],
  ["app=web,!tier", ""],
  ["tier,app notin (db)", ""],
  ["app.kubernetes.io/part-of=shop", ""],
  ["zone=a", ""],
  ["size=l", ""],
  ["app=nope", ""],
  ["", "metadata.namespace=prod"],
  ["", "metadata.name=pod-003"],
  ["", "metadata.namespace!=default"],
  ["", "status.phase=Running"],
  ["", "spec.nodeName=node-1,status.phase!=Pending"],
  ["", "spec.color=red"],
  ["app=web", "metadata.namespace=prod"],
  ["tier", "status.phase=Pending"],
  ["app in (db,cache)", "metadata.namespace!=kube-system"],
];

function pod(i: number, round: number): K8sObject {
  const labels: Record<string, string> = { app: ["web", "db", "cache"][(i + round) % 3]! };
  if ((i + round) % 2) labels.tier = i % 4 === 1 ? "front" : "back";
  if (i % 5 === 0) labels["app.kubernetes.io/part-of"] = "shop";
  if (i % 3 === 1) labels.shard = String(i);
  return {
    apiVersion: "v1",
    kind: "Pod",
    name: `pod-${String(i).padStart(3, "0")}`,
    namespace: ["default", "prod", "kube-system"][i % 3]!,
    labels,
    body: {
      spec: i % 4 ? { nodeName: `node-${(i + round) % 3}`, restartPolicy: "Always" } : { restartPolicy: "Never" },
      status: { phase: (i + round) % 3 ? "Running" : "Pending", podIP: `10.0.0.${i}` },
    },
  };
}

/** every value kind a key may hold, by key */
function values(round: number): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  const add = (key: string, o: K8sObject, pb: boolean) => out.set(key, pb ? asProtobuf(o) : asJson(o));
  for (let i = 0; i < 120; i++) {
    const p = pod(i, round);
    add(`/registry/pods/${p.namespace}/${p.name}`, p, i % 2 === 1);
  }
  for (let i = 0; i < 12; i++) out.set(`/registry/secrets/prod/enc-${i}`, encrypted(`s${i}-${round}`));
  for (let i = 0; i < 8; i++) {
    add(`/registry/minions/node-${i}`, { apiVersion: "v1", kind: "Node", name: `node-${i}`, labels: { zone: (i + round) % 2 ? "a" : "b" } }, true);
    add(`/registry/example.com/widgets/prod/w-${i}`, { apiVersion: "example.com/v1", kind: "Widget", name: `w-${i}`, namespace: "prod", labels: { size: i % 3 ? "s" : "l", app: "web" }, body: { spec: { color: "red" } } }, false);
  }
  out.set("/registry/pods/default/empty", new Uint8Array(0));
  out.set("/registry/pods/default/foreign", enc(`not an object ${round}`));
  return out;
}

const RANGES: KeyRange[] = [
  { start: enc("/registry/"), end: enc("/registry0") },
  { start: enc("/registry/pods/"), end: enc("/registry/pods0") },
  { start: enc("/registry/pods/prod/"), end: enc("/registry/pods/prod0") },
  { start: enc("/registry/pods/default/pod-000"), end: undefined },
];

const ORPHANS = ["kv_label", "kv_select"].map((t) =>
  `SELECT COUNT(*) AS n FROM ${t} WHERE NOT EXISTS (SELECT 1 FROM kv_log l WHERE l.rev = ${t}.rev AND l.k = ${t}.k)`
).join(" UNION ALL ");

/** Index rows whose log row is gone, read from the database itself (undefined for NATS: see rawSql). */
async function orphans(url: string): Promise<number | undefined> {
  const counts = await rawSql(url, [ORPHANS]);
  return counts?.[0]!.reduce((a, r) => a + Number(r.n), 0);
}

/** SQLite's index rows of keys under /registry/ whose label rows are not in kv_label yet (it merges them later: selector-index.ts) */
async function unmerged(url: string): Promise<number> {
  const [counts] = (await rawSql(url, [
    `SELECT COUNT(*) AS n FROM kv_select s JOIN meta m ON m.name = '${LABELS_THROUGH}' AND s.rev > m.num WHERE CAST(s.k AS TEXT) LIKE '/registry/%'`,
  ]))!;
  return Number(counts![0]!.n);
}

/** SQLite's meta LABELS_THROUGH */
async function labelsThrough(url: string): Promise<number> {
  const [rows] = (await rawSql(url, [`SELECT num FROM meta WHERE name = '${LABELS_THROUGH}'`]))!;
  return Number(rows![0]!.num);
}

/**
 * What SQLite's last merge (label rows of the versions past `after` up to the mark, as
 * they stood at the mark) wrote wrongly: versions current at the mark without a label row
 * in kv_label (every indexed object here has one: its uid), label rows of versions
 * replaced or deleted by then, and versions whose label rows are not exactly the entries
 * of their packed labels (what reads of the unmerged tail matched).
 */
async function mergedWrongly(url: string, after: number): Promise<{ missing: number; stale: number; differing: number }> {
  const mark = await labelsThrough(url);
  const replaced = (v: string) => `EXISTS (SELECT 1 FROM kv_log l WHERE l.k = ${v}.k AND l.rev > ${v}.rev AND l.rev <= ${mark})`;
  const [missing, stale, packed, rows] = (await rawSql(url, [
    `SELECT COUNT(*) AS n FROM kv_select s WHERE s.rev > ${after} AND s.rev <= ${mark} AND NOT ${replaced("s")}
        AND NOT EXISTS (SELECT 1 FROM kv_label x WHERE x.k = s.k AND x.rev = s.rev)`,
    `SELECT COUNT(*) AS n FROM kv_label x WHERE x.rev > ${after} AND x.rev <= ${mark} AND ${replaced("x")}`,
    `SELECT s.k, s.rev, s.labels FROM kv_select s WHERE s.rev > ${after} AND s.rev <= ${mark} AND NOT ${replaced("s")}`,
    `SELECT x.name, x.value, x.k, x.rev FROM kv_label x WHERE x.rev > ${after} AND x.rev <= ${mark}`,
  ]))!;
  const version = (r: Record<string, unknown>) => `${dec(r.k as Uint8Array)}@${r.rev}`;
  const expected = new Map<string, string[]>();
  for (const r of packed!) expected.set(version(r), r.labels == null ? ["\t="] : labelEntries(r.labels as string).map(([n, v]) => `${n}=${v}`));
  const found = new Map<string, string[]>();
  for (const r of rows!) found.set(version(r), [...(found.get(version(r)) ?? []), `${r.name}=${r.value}`]);
  const differing = [...expected].filter(([v, entries]) => JSON.stringify(entries.sort()) !== JSON.stringify((found.get(v) ?? []).sort())).length;
  return { missing: Number(missing![0]!.n), stale: Number(stale![0]!.n), differing };
}

/** SQLite's meta select_index: 0 incomplete, 1 complete in kv_label, 2 complete with a tail (selector-index.ts) */
async function indexFlag(url: string): Promise<number> {
  const [rows] = (await rawSql(url, ["SELECT num FROM meta WHERE name = 'select_index'"]))!;
  return Number(rows![0]!.num);
}

/** Labelled objects outside the ranges read, enough that their label rows are merged with those before them. */
async function bulk(c: ReturnType<typeof client>, round: number): Promise<void> {
  for (let i = 0; i < MERGE_ROWS + 100; i += 100) {
    const puts = Array.from({ length: 100 }, (_, j) => {
      // and labels whose index text is hashed (long) or not ASCII, and values that cannot be decoded
      const labels: Record<string, string> = { app: "web", round: String(round), ...(j % 7 ? {} : { long: "x".repeat(200 + j), "naïve": `ünï-${j}` }) };
      const o: K8sObject = { apiVersion: "v1", kind: "ConfigMap", name: `cm-${i + j}`, namespace: "bulk", labels };
      return putOp(`/bulk/configmaps/cm-${i + j}`, j % 10 === 3 ? `not an object ${round}` : dec(asJson(o)));
    });
    await c.txn([], puts);
  }
}

const query = (range: KeyRange, revision: Rev, limit: number, select?: RangeQuery["select"]): RangeQuery =>
  ({ range, revision, limit, countOnly: false, keysOnly: false, select });
const keysOf = (kvs: KeyValue[]) => kvs.map((kv) => `${dec(kv.key)}@${kv.modRevision}`);

describe.skipIf(!covered)(`selector index on ${BACKEND}`, () => {
  let o: Opened;
  /** revisions to read at: after loading, after the changes */
  const revisions: Rev[] = [];

  beforeAll(async () => {
    o = await openStore(undefined, undefined, true);
    const c = client(o.store);
    let rev = 0n;
    const put = async (k: string, v: Uint8Array) => (rev = (await o.store.put(create(PutRequestSchema, { key: enc(k), value: v }))).header.revision);
    for (const [k, v] of values(0)) await put(k, v);
    revisions.push(rev);
    // where label rows are merged later (SQLite), round 0's are merged and round 1's left unmerged
    await bulk(c, 0);
    // labels and fields change, keys go and come back
    const next = values(1);
    let i = 0;
    for (const [k, v] of next) {
      i++;
      if (i % 7 === 0) rev = (await c.del(k)).header.revision;
      else if (i % 3 !== 0) await put(k, v);
    }
    for (const [k, v] of [...next].filter((_, j) => (j + 1) % 14 === 0)) await put(k, v);
    revisions.push(rev);
  });
  afterAll(() => o?.close());

  /** what checking every value of the plain range keeps */
  async function reference(range: KeyRange, revision: Rev, s: Selection): Promise<KeyValue[]> {
    const plain = await o.store.read(query(range, revision, 0));
    return plain.kvs.filter((kv) => selects(s, kv.value));
  }

  async function checkAll(revisions: Rev[]) {
    let exactReads = 0;
    for (const [labels, fields] of SELECTORS) {
      const s = parseSelection(labels, fields)!;
      const exact = indexAnswersExactly(s);
      for (const revision of revisions) {
        for (const range of RANGES) {
          const want = await reference(range, revision, s);
          const what = `${labels} | ${fields} in ${dec(range.start)} at ${revision}`;
          // the superset: never fewer, nothing outside the range, values as stored
          const wide = await o.store.read(query(range, revision, 0, { selection: s, exactOnly: false }));
          expect(wide.selected, what).toBe(exact ? "exact" : "superset");
          const got = new Map(wide.kvs.map((kv) => [dec(kv.key), kv]));
          for (const kv of want) expect(got.get(dec(kv.key))?.modRevision, what).toBe(kv.modRevision);
          if (exact) expect(keysOf(wide.kvs), what).toEqual(keysOf(want));
          for (const limit of [0, 4]) {
            const read = await o.store.read(query(range, revision, limit, { selection: s, exactOnly: true }));
            if (!exact) {
              expect(read.selected, what).toBeUndefined();
              expect(read.kvs.length, what).toBe(0);
              continue;
            }
            exactReads++;
            expect(read.selected, what).toBe("exact");
            expect(read.count, what).toBe(BigInt(want.length));
            expect(keysOf(read.kvs), `${what} limit ${limit}`).toEqual(keysOf(limit ? want.slice(0, limit) : want));
            if (read.kvs.length) expect(dec(read.kvs[0]!.value), what).toBe(dec(want[0]!.value));
          }
        }
      }
    }
    return exactReads;
  }

  test("selected reads keep what the values' check keeps, at the latest and an older revision", async () => {
    const exactReads = await checkAll(revisions);
    // most of the selectors are decided by the index alone
    expect(exactReads).toBeGreaterThan(100);
  });

  test("a page of a selected read continues from the last key, as plain pages do", async () => {
    const s = parseSelection("app in (web,db)", "")!;
    const range = RANGES[0]!, at = revisions[1]!;
    const want = keysOf(await reference(range, at, s));
    const pages: string[] = [];
    let start = range.start;
    for (;;) {
      const page = await o.store.read(query({ start, end: range.end }, at, 11, { selection: s, exactOnly: true }));
      pages.push(...keysOf(page.kvs.slice(0, 10)));
      if (page.kvs.length <= 10) break;
      const last = page.kvs[9]!.key;
      start = new Uint8Array([...last, 0]);
    }
    expect(pages).toEqual(want);
  });

  test("once every row's label rows are merged, selected reads answer as before", async () => {
    // the test above read round 1's rows from the unmerged tail
    if (BACKEND === "sqlite") expect(await unmerged(o.url)).toBeGreaterThan(50);
    const mark = BACKEND === "sqlite" ? await labelsThrough(o.url) : 0;
    const c = client(o.store);
    // keys created and deleted within the tail: none of their label rows may be merged
    for (let i = 0; i < 5; i++) {
      const gone: K8sObject = { apiVersion: "v1", kind: "ConfigMap", name: `gone-${i}`, namespace: "bulk", labels: { app: "web" } };
      await c.txn([], [putOp(`/bulk/configmaps/gone-${i}`, dec(asJson(gone)))]);
      await c.del(`/bulk/configmaps/gone-${i}`);
    }
    // merged from the writer's memory of the tail (this process merged the one before), with round 1's changes, deletions and re-creations in it
    await bulk(c, 1);
    if (BACKEND === "sqlite") {
      expect(await unmerged(o.url)).toBe(0);
      // what the merge wrote is exactly the label rows of the current versions it covered: none missing, none of a replaced or deleted version
      expect(await mergedWrongly(o.url, mark)).toEqual({ missing: 0, stale: 0, differing: 0 });
    }
    await checkAll(revisions);
  });

  test("closing merges the label rows left unmerged (an older strata reads kv_label alone)", async () => {
    for (const [k, v] of [...values(1)].slice(0, 10)) await o.store.put(create(PutRequestSchema, { key: enc(k), value: v }));
    if (BACKEND === "sqlite") {
      expect(await unmerged(o.url)).toBe(10);
      // while a tail is left, an earlier release (which knows 0 and 1) takes the index for incomplete
      expect(await indexFlag(o.url)).toBe(2);
    }
    let closed = -1;
    let flag = -1;
    o = await o.reopen(async () => {
      closed = BACKEND === "sqlite" ? await unmerged(o.url) : 0;
      flag = BACKEND === "sqlite" ? await indexFlag(o.url) : 1;
    });
    expect(closed).toBe(0);
    expect(flag).toBe(1);
    await checkAll([revisions[1]!]);
  });

  test.skipIf(BACKEND !== "sqlite")("rows an earlier release wrote past the mark, with their label rows, are read once", async () => {
    // an earlier release writes label rows with each commit, past a mark it does not know:
    // as if the mark stood 40 revisions back, its rows since are in kv_label and the tail alike
    let moved = -1;
    o = await o.reopen(async () => {
      await rawSql(o.url, [`UPDATE meta SET num = num - 40 WHERE name = '${LABELS_THROUGH}'`]);
      moved = await unmerged(o.url);
    });
    expect(moved).toBeGreaterThan(0);
    expect(await unmerged(o.url)).toBe(0);
    await checkAll([revisions[1]!]);
  });

  test("after compaction the index answers as before, and reads below it are refused", async () => {
    const before = await orphans(o.url);
    await o.store.compact(create(CompactionRequestSchema, { revision: revisions[1]! - 5n, physical: true }));
    if (before !== undefined) {
      expect(before).toBe(0);
      // the history compaction removed took its index rows with it
      expect(await orphans(o.url)).toBe(0);
    }
    await checkAll([revisions[1]!]);
    const s = parseSelection("app=web", "")!;
    let refused = "";
    try {
      await o.store.read(query(RANGES[0]!, revisions[0]!, 0, { selection: s, exactOnly: true }));
    } catch (e) {
      refused = String(e);
    }
    expect(refused).toContain("compacted");
  });
});
