// HariKube's TopologyConfig objects, read from the keyspace itself the moment they are
// written (PREFIX harikube.info/topologyconfigs/NS/NAME, JSON as kube-apiserver stores
// custom resources): no operator between kubectl apply and the routing. Each object's
// backends[] entries are rules after the config source's (routing-policy.ts), in
// status.deployOrder, then creation, order. A TopologyConfig is checked as a config file
// is; one that strands no key is put in force at once; one that would strand keys is
// refused, unless spec.migrate (strata's extension) asks for the live move. The outcome
// goes back into the object's status (deployStatus Active / Failed, deployStatusReason)
// through a normal write, so watchers and `kubectl get` see it.
//
// Status writes change no spec: only a change of the specs (or orders) stored is evaluated,
// and a status is written only when it differs from the stored one, so they never loop.
// The spec in force is kept in status.appliedSpec: a restarted strata puts those rules back
// before it checks where keys are (restoreTopologyConfigs), whatever was edited meanwhile.
import { resolve } from "node:path";
import { create } from "@bufbuild/protobuf";
import {
  Compare_CompareResult,
  Compare_CompareTarget,
  CompareSchema,
  PutRequestSchema,
  RequestOpSchema,
  TxnRequestSchema,
  WatchCreateRequestSchema,
} from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { ConfigError } from "../util/config-error.ts";
import type { BackendSettings, Rule, Topology } from "../router/contract.ts";
import type { ReadView } from "../mvcc/backend.ts";
import { keyString, prefixEnd } from "../mvcc/keyrange.ts";
import { DELETE, type KeyValue, type Rev } from "../mvcc/types.ts";
import type { Log } from "../util/log.ts";
import { redact } from "../backends/open.ts";
import { strandedMessage } from "../router/open.ts";
import { validateTopology } from "../router/validate.ts";
import type { Keyspace, MoveProgress, WatchSession } from "./contract.ts";
import { readAtOneRevision } from "./read-prefix.ts";
import { compareOrder, composeTopology, type PolicyEntry, type RoutingPolicy } from "./routing-policy.ts";
import { type JsonObject, readStoredJson, type StoredJson } from "./stored-object.ts";

const PAGE = 100n;
const WATCH_ID = 1n;
const RETRY_MIN_MS = 200, RETRY_MAX_MS = 10_000;
/** a migration's progress is written into its status at most this often */
const PROGRESS_EVERY_MS = 1000;

/** A TopologyConfig object's spec, as strata reads it; `migrate` is strata's own extension. */
export interface TopologyConfigSpec {
  backends: Map<string, string>;
  settings: Map<string, BackendSettings>;
  rules: Rule[];
  migrate: boolean;
  ignored?: string;
}

/**
 * Reads a TopologyConfig object (`source` names it: "TopologyConfig NS/NAME"); throws a
 * ConfigError naming the field at fault. config/topology.ts reads them; cli/ passes it in.
 */
export type ReadTopologyConfig = (object: unknown, source: string) => TopologyConfigSpec;

interface Stored {
  key: Uint8Array;
  modRevision: Rev;
  lease: bigint;
  json: StoredJson;
}

/** what strata writes into status */
interface Outcome {
  deployStatus: "Active" | "Failed" | "Migrating";
  deployStatusReason: string;
  /** the spec now in force (unset: the one in force stays) */
  appliedSpec?: unknown;
  /** strata's extension: a migration's progress */
  migration?: { phase: string; moved: number; total: number };
}

export class TopologyConfigs {
  private readonly prefix: Uint8Array;
  private readonly objects = new Map<string, Stored>();
  /** the stored specs and orders last evaluated */
  private evaluated = "";
  private session: WatchSession | undefined;
  private generation = 0;
  private running = false;
  private retryMs = RETRY_MIN_MS;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private pending = false;

  constructor(
    /** where the objects' keys are read and written (the dispatcher) */
    private readonly keyspace: Keyspace,
    private readonly policy: RoutingPolicy,
    private readonly readTopologyConfig: ReadTopologyConfig,
    keyPrefix: string,
    private readonly log: Log,
  ) {
    this.prefix = topologyConfigPrefix(keyPrefix);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    void this.load();
  }

  stop(): void {
    this.running = false;
    this.generation++;
    this.session?.close();
    this.session = undefined;
    clearTimeout(this.retryTimer);
  }

  /** Reads every object at one revision, then watches for changes after it. */
  private async load(): Promise<void> {
    const generation = ++this.generation;
    this.session?.close();
    const end = prefixEnd(this.prefix)!;
    let revision: bigint;
    const found: KeyValue[] = [];
    try {
      revision = await readAtOneRevision(this.keyspace, this.prefix, end, PAGE, (kv) => found.push(kv));
    } catch (err) {
      if (generation === this.generation) this.failed(`reading the TopologyConfigs failed: ${(err as Error).message}`);
      return;
    }
    if (!this.running || generation !== this.generation) return;
    this.objects.clear();
    for (const kv of found) this.remember(kv);
    this.session = this.keyspace.watch({
      own: true,
      send: (resp) => {
        if (generation !== this.generation) return;
        if (resp.canceled) return this.failed(`the watch on the TopologyConfigs was canceled: ${resp.cancelReason || "compacted"}`);
        for (const ev of resp.events) {
          if (ev.type === DELETE) this.objects.delete(keyString(ev.kv.key));
          else this.remember(ev.kv);
        }
        if (resp.events.length > 0) this.changed();
      },
      forget: () => {
        if (generation === this.generation) this.failed("the watch on the TopologyConfigs ended");
      },
      congested: () => false,
      drained: async () => {},
    });
    this.session.create(create(WatchCreateRequestSchema, { key: this.prefix, rangeEnd: end, startRevision: revision + 1n }), WATCH_ID);
    this.retryMs = RETRY_MIN_MS;
    this.changed();
  }

  private remember(kv: KeyValue): void {
    const key = keyString(kv.key);
    const json = readStoredJson(kv.value);
    if (!json) {
      this.objects.delete(key);
      this.log("warn", "a TopologyConfig strata cannot read (not JSON) is left aside", { key });
      return;
    }
    this.objects.set(key, { key: kv.key, modRevision: kv.modRevision, lease: kv.lease, json });
  }

  private failed(why: string): void {
    this.generation++;
    this.session?.close();
    this.session = undefined;
    if (!this.running) return;
    this.log("warn", `strata: TopologyConfigs are read again: ${why}`, { retryMs: this.retryMs });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.load(), this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
  }

  /** Evaluates when the specs or orders stored changed since the last evaluation (never for a status change). */
  private changed(): void {
    if (this.pending) return;
    this.pending = true;
    void this.policy.lock.run(async () => {
      this.pending = false;
      const signature = JSON.stringify([...this.objects].map(([k, o]) => [k, fingerprint(o.json.object)]).sort());
      if (signature === this.evaluated) return;
      this.evaluated = signature;
      try {
        await this.evaluate();
      } catch (err) {
        // a database that did not answer: evaluated again in a while, as no change may come
        this.log("error", "TopologyConfigs could not be evaluated; trying again", { error: String(err), retryMs: RETRY_MAX_MS });
        this.evaluated = "";
        clearTimeout(this.retryTimer);
        this.retryTimer = setTimeout(() => this.running && this.changed(), RETRY_MAX_MS);
      }
    });
  }

  /** Called (with the policy's lock held) after the config source's rules changed: failed objects get another try. */
  async baseChanged(): Promise<void> {
    if (this.running) await this.evaluate();
  }

  private async evaluate(): Promise<void> {
    const objects = [...this.objects].map(([key, o]) => ({ key, o, order: orderOf(key, o.json.object), fp: fingerprint(o.json.object) }))
      .sort((a, b) => compareOrder(a.order, b.order));
    const outcomes = new Map<string, Outcome>();
    // the rules of deleted objects leave first, unless that strands keys; a changed one's
    // stay in force until its new spec replaces them
    let running = this.policy.inForce.filter((e) => objects.some((x) => x.key === e.key));
    if (running.length < this.policy.inForce.length) {
      const reason = await this.policy.setEntries(running, "the TopologyConfigs");
      if (reason) {
        running = [...this.policy.inForce];
        this.log("error", "a deleted TopologyConfig keeps its rules in force: removing them would strand keys", { reason });
      }
    }
    for (const x of objects) {
      const label = `TopologyConfig ${x.key.slice(keyString(this.prefix).length)}`;
      if (running.some((e) => e.key === x.key && e.fingerprint === x.fp)) {
        const stored = status(x.o.json.object);
        if (stored.deployStatus !== "Active") outcomes.set(x.key, { deployStatus: "Active", deployStatusReason: "", appliedSpec: x.o.json.object.spec });
        continue;
      }
      let entry: PolicyEntry, migrate: boolean, ignored: string | undefined;
      try {
        const spec = this.readTopologyConfig(x.o.json.object, label);
        entry = { key: x.key, fingerprint: x.fp, order: x.order, rules: onOpenBackends(this.policy.openBackends, this.policy.baseTopology.source, spec.backends, spec.rules, label) };
        migrate = spec.migrate;
        ignored = spec.ignored;
        validateTopology(this.policy.compose([...running.filter((e) => e.key !== x.key), entry]));
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        // ordered before others, its rules may take every key of a rule already in force
        const reason = err.message.startsWith(`${label}:`) ? err.message : `${label}: refused, as a rule in force would no longer match: ${err.message}`;
        outcomes.set(x.key, { deployStatus: "Failed", deployStatusReason: reason });
        continue;
      }
      const previous = running.find((e) => e.key === x.key);
      const next = [...running.filter((e) => e.key !== x.key), entry];
      const kept = previous ? "; its previous spec stays in force" : "";
      const stranded = await this.policy.stranded(next);
      let reason: string | undefined;
      let done = "";
      if (stranded.length > 0 && !migrate) {
        reason = strandedMessage(stranded, label, "Set spec.migrate: true to move them while strata serves, or route them back");
      } else if (stranded.length > 0) {
        try {
          const last = await this.migrate(x.key, next);
          done = `moved ${last.moved} keys${last.message ? ` (${last.message})` : ""}`;
        } catch (err) {
          reason = `${label}: the migration failed: ${(err as Error).message}`;
        }
      } else {
        reason = await this.policy.setEntries(next, label);
      }
      if (reason) {
        outcomes.set(x.key, { deployStatus: "Failed", deployStatusReason: reason + kept });
        continue;
      }
      running = next;
      if (ignored) this.log("warn", "topology fields strata does not honour", { source: label, fields: ignored });
      const notes = [done, ignored ? `strata does not honour ${ignored}` : ""].filter(Boolean).join("; ");
      outcomes.set(x.key, { deployStatus: "Active", deployStatusReason: notes, appliedSpec: x.o.json.object.spec });
      this.log("info", "TopologyConfig in force", { source: label, rules: entry.rules.length, ...(done && { migration: done }) });
    }
    for (const [key, outcome] of outcomes) await this.writeStatus(key, outcome);
  }

  /** The live move to these entries, its progress written into the object's status. */
  private async migrate(key: string, entries: PolicyEntry[]): Promise<MoveProgress> {
    let lastWrite = 0;
    let writing: Promise<void> = Promise.resolve();
    const report = (p: MoveProgress) => {
      const now = Date.now();
      if (now - lastWrite < PROGRESS_EVERY_MS) return;
      lastWrite = now;
      writing = writing.then(() => this.writeStatus(key, progressOutcome(p)));
    };
    await this.writeStatus(key, progressOutcome({ phase: "counting", moved: 0, total: 0 }));
    try {
      return await this.policy.migrateTo(entries, report);
    } finally {
      await writing;
    }
  }

  /** Writes the outcome into the object's status unless it is there already; a write that lost a race is left to the next event. */
  private async writeStatus(key: string, outcome: Outcome): Promise<void> {
    const o = this.objects.get(key);
    if (!o) return;
    const object = structuredClone(o.json.object);
    const current = (isObject(object.status) ? object.status : {}) as JsonObject;
    const next: JsonObject = { ...current, deployStatus: outcome.deployStatus, deployStatusReason: outcome.deployStatusReason };
    if (outcome.migration) next.migration = outcome.migration;
    else delete next.migration;
    if (outcome.appliedSpec !== undefined) next.appliedSpec = outcome.appliedSpec;
    if (JSON.stringify(current) === JSON.stringify(next)) return;
    object.status = next;
    const value = o.json.encode(object);
    try {
      const out = await this.keyspace.txn(create(TxnRequestSchema, {
        compare: [create(CompareSchema, { key: o.key, target: Compare_CompareTarget.MOD, result: Compare_CompareResult.EQUAL, targetUnion: { case: "modRevision", value: o.modRevision } })],
        success: [create(RequestOpSchema, { request: { case: "requestPut", value: create(PutRequestSchema, { key: o.key, value, lease: o.lease }) } })],
      }));
      if (!out.succeeded) return;
      // later writes of this evaluation compare against this one
      this.objects.set(key, { ...o, modRevision: out.header.revision, json: { object, encode: o.json.encode } });
    } catch (err) {
      this.log("warn", "a TopologyConfig's status could not be written", { key, error: (err as Error).message });
    }
  }
}

/**
 * The rules on the backends strata has open: a backend named as an open one must have
 * its URL; one named otherwise is the open backend with its URL. strata opens its
 * databases at start (each numbers revisions in its own residue): a new one needs a
 * restart with it among the config's backends.
 */
function onOpenBackends(open: Map<string, string>, baseSource: string, backends: Map<string, string>, rules: Rule[], label: string): Rule[] {
  const alias = new Map<string, string>();
  for (const [name, url] of backends) {
    const openAs = open.get(name);
    if (openAs !== undefined && sameDatabase(openAs, url)) continue;
    const same = [...open].find(([, u]) => sameDatabase(u, url))?.[0];
    if (openAs !== undefined || same === undefined) {
      const at = rules.find((r) => r.backend === name)?.source ?? `${label}: spec.backends`;
      throw new ConfigError(openAs !== undefined
        ? `${at}.endpoint: backend "${name}" is open with another URL (${redact(openAs)}); use that URL or another name`
        : `${at}.endpoint: ${redact(url)} is not one of the databases strata has open (${[...open].map(([n, u]) => `${n}=${redact(u)}`).join(", ")}); strata opens its databases at start: add it to the backends of ${baseSource} and restart strata`);
    }
    alias.set(name, same);
  }
  return rules.map((r) => ({ ...r, backend: alias.get(r.backend) ?? r.backend }));
}

/**
 * Whether two URLs open the same database: the same URL, or for SQLite the same file
 * (HariKube's examples carry driver options strata does not read: ?_journal=WAL&cache=shared).
 */
function sameDatabase(a: string, b: string): boolean {
  if (a === b) return true;
  const file = (u: string) => (u.startsWith("sqlite://") ? resolve(u.slice("sqlite://".length).split("?")[0]!) : undefined);
  return file(a) !== undefined && file(a) === file(b);
}

/**
 * The TopologyConfigs in force when strata last ran (each object's status.appliedSpec), read
 * from every database before strata checks where keys are: the keys their rules placed are
 * where those rules say. One that no longer fits the config (a database gone, a rule now
 * shadowed) is left out, and the checks that follow say what that strands.
 */
export async function restoreTopologyConfigs(backends: ReadView[], base: Topology, readTopologyConfig: ReadTopologyConfig, log: Log): Promise<PolicyEntry[]> {
  const prefix = topologyConfigPrefix(base.keyPrefixes[0]!);
  const range = { start: prefix, end: prefixEnd(prefix) };
  const entries: PolicyEntry[] = [];
  const found = new Map<string, JsonObject>();
  for (const b of backends) {
    for (const kv of (await b.range({ range, revision: 0n, limit: 0, countOnly: false, keysOnly: false })).kvs) {
      const json = readStoredJson(kv.value);
      if (json) found.set(keyString(kv.key), json.object);
    }
  }
  const label = (key: string) => `TopologyConfig ${key.slice(keyString(prefix).length)}`;
  const sorted = [...found].map(([key, o]) => ({ key, o, order: orderOf(key, o) })).sort((a, b) => compareOrder(a.order, b.order));
  for (const { key, o, order } of sorted) {
    const applied = status(o).appliedSpec;
    if (applied === undefined) continue;
    try {
      const spec = readTopologyConfig({ spec: applied }, label(key));
      const entry = { key, fingerprint: fingerprint({ ...o, spec: applied }), order, rules: onOpenBackends(base.backends, base.source, spec.backends, spec.rules, label(key)) };
      validateTopology(composeTopology(base, [...entries, entry]));
      entries.push(entry);
    } catch (err) {
      log("warn", "a TopologyConfig in force before is left out: it no longer fits the config", { source: label(key), reason: (err as Error).message });
    }
  }
  return entries;
}

function topologyConfigPrefix(keyPrefix: string): Uint8Array {
  return new TextEncoder().encode(`${keyPrefix.endsWith("/") ? keyPrefix : `${keyPrefix}/`}harikube.info/topologyconfigs/`);
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function status(o: JsonObject): JsonObject {
  return isObject(o.status) ? o.status : {};
}

/** what is evaluated of an object: its spec and its order, never the rest of its status */
function fingerprint(o: JsonObject): string {
  return JSON.stringify([o.spec ?? null, status(o).deployOrder ?? null]);
}

/** status.deployOrder first (objects without one after those with), then creation time, then key */
function orderOf(key: string, o: JsonObject): [number, string, string] {
  const order = status(o).deployOrder;
  const meta = isObject(o.metadata) ? o.metadata : {};
  const created = typeof meta.creationTimestamp === "string" ? meta.creationTimestamp : "";
  return [typeof order === "number" && Number.isFinite(order) ? order : Number.MAX_SAFE_INTEGER, created, key];
}

function progressOutcome(p: MoveProgress): Outcome {
  return {
    deployStatus: "Migrating",
    deployStatusReason: `${p.phase}: ${p.moved} of ${p.total} keys moved${p.message ? `; ${p.message}` : ""}`,
    migration: { phase: p.phase, moved: p.moved, total: p.total },
  };
}
