// The contract suite's harness: a fresh database of the backend under test
// (STRATA_TEST_BACKEND: sqlite by default, postgres, mariadb, nats, or an engine profile on
// its simulation: cockroach-sim, yugabyte-sim, tidb-sim; real servers started once per test
// process by scripts/databases.ts), opened in this process as a Backend with
// an mvcc Store on top. No gRPC and no child process: what is checked is the Backend
// contract (src/mvcc/backend.ts) and the etcd semantics the store builds on it.
import { create } from "@bufbuild/protobuf";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CompareSchema,
  DeleteRangeRequestSchema,
  PutRequestSchema,
  type RangeRequest,
  RangeRequestSchema,
  RequestOpSchema,
  TxnRequestSchema,
} from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { openBackend } from "../../src/backends/open.ts";
import type { Backend } from "../../src/mvcc/backend.ts";
import { finishRange, rangeQuery } from "../../src/mvcc/range.ts";
import { Store } from "../../src/mvcc/store.ts";
import type { Event, KeyValue, Rev } from "../../src/mvcc/types.ts";
import { BACKEND, freshDatabase, SIMULATIONS } from "../support/strata.ts";
import { engineOf } from "../../src/backends/sql/engine-profiles.ts";

export { BACKEND };
/** the backends the contract covers; an upstream etcd is a whole keyspace, not a Backend */
export const CONTRACT_BACKENDS = ["sqlite", "postgres", "mariadb", "nats", ...Object.keys(SIMULATIONS)];
export const covered = CONTRACT_BACKENDS.includes(BACKEND);
/** several processes may share one database (not an SQLite file: one process owns it) */
export const shared = BACKEND !== "sqlite";

export const enc = (s: string) => new TextEncoder().encode(s);
export const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** one process's view of a database: the backend and the store on it */
export interface Opened {
  url: string;
  backend: Backend;
  store: Store;
  /**
   * closes it, keeping the database, and opens it again (a restart); `between` runs while
   * it is closed; `selectorIndex`: the restart's --selector-index (default: as before)
   */
  reopen(between?: () => Promise<unknown>, selectorIndex?: boolean): Promise<Opened>;
  close(): Promise<void>;
}

/**
 * Opens the database at url as another process would, or a fresh database when none is
 * given (then its directory, which holds an SQLite file, goes when it is closed);
 * `selectorIndex`: as --selector-index (off by default, as strata's).
 */
export async function openStore(url?: string, ownDir?: string, selectorIndex = false): Promise<Opened> {
  const dir = url ? ownDir : mkdtempSync(join(tmpdir(), "strata-contract-"));
  const target = url ?? (await freshDatabase(BACKEND, dir!));
  const backend = await openBackend(target, { poolSize: 4, selectorIndex });
  const state = await backend.open();
  const store = new Store(backend);
  store.init(state.revision, state.compactRevision);
  // what the router does: commits by other processes are published here too
  const stop = backend.onExternalCommit(() => void store.syncExternal().catch(() => {}));
  const shut = async () => {
    stop();
    await store.drain();
    await backend.close();
  };
  return {
    url: target,
    backend,
    store,
    reopen: async (between, index = selectorIndex) => {
      await shut();
      await between?.();
      return openStore(target, dir, index);
    },
    close: async () => {
      await shut();
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** the request helpers, bound to one store */
export function client(store: Store) {
  const range = (init: MessageInitShape<typeof RangeRequestSchema>) => rangeOf(store, create(RangeRequestSchema, init));
  return {
    put: (k: string, v: string, lease = 0n) => store.put(create(PutRequestSchema, { key: enc(k), value: enc(v), lease })),
    del: (k: string, end?: string) => store.deleteRange(create(DeleteRangeRequestSchema, { key: enc(k), rangeEnd: end === undefined ? undefined : enc(end) })),
    get: async (k: string, revision = 0n) => (await range({ key: enc(k), revision })).kvs[0],
    range,
    /** every key from `from` up to `to` (every key after `from` without it), as strings */
    list: async (from: string, to?: string, revision = 0n, more: MessageInitShape<typeof RangeRequestSchema> = {}) =>
      (await range({ ...more, key: enc(from), rangeEnd: enc(to ?? "\0"), revision })).kvs.map(show),
    txn: (compare: Cmp[], success: Op[], failure: Op[] = []) => store.txn(create(TxnRequestSchema, { compare, success, failure })),
  };
}

export type Op = MessageInitShape<typeof RequestOpSchema>;
export type Cmp = MessageInitShape<typeof CompareSchema>;

/** a key-value as key=value@mod/vversion/ccreate */
export function show(kv: KeyValue): string {
  return `${dec(kv.key)}=${dec(kv.value)}@${kv.modRevision}/v${kv.version}/c${kv.createRevision}`;
}

/** an event as PUT|DEL key@rev<previous value or -> */
export function showEvent(e: Event): string {
  return `${e.type === 0 ? "PUT" : "DEL"} ${dec(e.kv.key)}@${e.kv.modRevision}<${e.prevKv ? `${dec(e.prevKv.value)}@${e.prevKv.modRevision}` : "-"}`;
}

/** the message of the error fn throws, or "no error" (not expect().rejects: see sqlite-store.test.ts) */
export async function failure(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
    return "no error";
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

/** every event from `from` through `to`, read with one large page */
export async function history(backend: Backend, from: Rev, to: Rev): Promise<Event[]> {
  const page = await backend.events(from, to, 1_000_000);
  if (page.through !== to) throw new Error(`one page of history ended at ${page.through}, not ${to}`);
  return page.events;
}

export const putOp = (key: string, value: string, lease = 0n): Op => ({ request: { case: "requestPut", value: { key: enc(key), value: enc(value), lease } } });
export const delOp = (key: string, end?: string): Op => ({ request: { case: "requestDeleteRange", value: { key: enc(key), rangeEnd: end === undefined ? undefined : enc(end) } } });
export const getOp = (key: string, revision = 0n): Op => ({ request: { case: "requestRange", value: { key: enc(key), revision } } });
/** compare the mod revision of key: EQUAL 0, GREATER 1, LESS 2, NOT_EQUAL 3 */
export const modIs = (key: string, result: number, rev: Rev): Cmp => ({ key: enc(key), target: 2, result, targetUnion: { case: "modRevision", value: rev } });
export const valueIs = (key: string, value: string): Cmp => ({ key: enc(key), target: 3, result: 0, targetUnion: { case: "value", value: enc(value) } });

/** a Range as the keyspace answers it from one store: the raw read (`encode`: encoded where it is read, when it can be), finished */
export async function rangeOf(store: Store, r: RangeRequest, encode = false) {
  return finishRange(r, await store.read(rangeQuery(r, { encodedKvs: encode })));
}

/**
 * Runs statements on the database at url itself, in order, returning each one's rows;
 * undefined for NATS, whose SQL is a local cache of its log (the same code as SQLite's).
 */
export async function rawSql(url: string, statements: string[]): Promise<Array<Array<Record<string, unknown>>> | undefined> {
  const out: Array<Array<Record<string, unknown>>> = [];
  // a distributed engine's profile: its wire's URL
  url = engineOf(url)?.wireUrl ?? url;
  if (url.startsWith("sqlite://")) {
    const { Database } = await import("bun:sqlite");
    // a closed strata's connections let go of the file once their statements are collected
    Bun.gc(true);
    const db = new Database(url.slice("sqlite://".length));
    db.exec("PRAGMA busy_timeout = 10000");
    for (const s of statements) out.push(db.query(s).all() as Array<Record<string, unknown>>);
    db.close();
  } else if (url.startsWith("postgres")) {
    const sql = (await import("postgres")).default(url, { max: 1, onnotice: () => {} });
    for (const s of statements) out.push([...(await sql.unsafe(s))]);
    await sql.end();
  } else if (url.startsWith("mysql")) {
    const conn = await (await import("mysql2/promise")).createConnection(url);
    for (const s of statements) {
      const [rows] = await conn.query(s);
      out.push(Array.isArray(rows) ? (rows as Array<Record<string, unknown>>) : []);
    }
    await conn.end();
  } else return undefined;
  return out;
}
