// The routing policy in force while strata serves: the rules of strata's config source
// (a file, a URL or a Secret: topology-sources.ts) followed by the rules of the
// TopologyConfig objects in force (topology-configs.ts), in their order. Every change goes
// through here, one at a time: it is checked as a config file is at start, and put in
// force only when no existing key would change backend — or, for a TopologyConfig that
// asks for it, after a live move of those keys.
import type { Rule, Topology } from "../router/contract.ts";
import { appendOnly, sameTopology, strandedKeys, strandedMessage, type Stranded, type UpstreamKeys } from "../router/open.ts";
import type { Router } from "../router/router.ts";
import { RoutingTable } from "../router/rules.ts";
import { validateTopology } from "../router/validate.ts";
import { Mutex } from "../util/mutex.ts";
import type { Log } from "../util/log.ts";
import type { MoveProgress, Rerouting } from "./contract.ts";

/** A TopologyConfig in force: its rules, on the backends strata has open. */
export interface PolicyEntry {
  /** its key in the keyspace */
  key: string;
  /** what its spec and order were when it was put in force */
  fingerprint: string;
  /** status.deployOrder, creation time, key: the order entries' rules follow the base's in */
  order: [number, string, string];
  rules: Rule[];
}

export class RoutingPolicy {
  private base: Topology;
  private entries: PolicyEntry[] = [];
  /** one change at a time: each is checked against the policy the last one left */
  readonly lock = new Mutex();

  constructor(
    private readonly router: Router,
    private readonly upstreams: Map<string, UpstreamKeys>,
    private readonly rerouting: Rerouting,
    private readonly log: Log,
    /** the config source's topology */
    base: Topology,
    /** the TopologyConfigs in force when strata started (topology-configs.ts restores them) */
    entries: PolicyEntry[] = [],
  ) {
    this.base = base;
    this.entries = entries;
  }

  /** the config source's topology */
  get baseTopology(): Topology {
    return this.base;
  }

  get inForce(): readonly PolicyEntry[] {
    return this.entries;
  }

  /** the backends strata has open, name → URL */
  get openBackends(): Map<string, string> {
    return this.base.backends;
  }

  /** the base's rules, then the entries' in order */
  compose(entries: readonly PolicyEntry[], base = this.base): Topology {
    return composeTopology(base, entries);
  }

  /**
   * New rules from the config source: refused (with the reason) unless they only append
   * rules and strand no key; the entries' rules stay after them. Call with the lock held.
   */
  async setBase(next: Topology): Promise<string | undefined> {
    if (sameTopology(this.base, next)) return undefined;
    const changed = appendOnly(this.base, next);
    if (changed) return `${changed}; the running rules stay. Changes other than appending rules need a migration: strata migrate --to-config ${next.source} --endpoint URL (live) or with strata stopped (--from-config OLD)`;
    const t = this.compose(this.entries, next);
    try {
      validateTopology(t);
    } catch (err) {
      return `${(err as Error).message} (with the TopologyConfigs in force after ${next.source}'s rules)`;
    }
    const reason = await this.putInForce(t, next.source);
    if (reason) return reason;
    this.base = next;
    this.log("info", "appended routes applied", { file: next.source, routes: next.rules.length });
    if (next.ignored) this.log("warn", "topology fields strata does not honour", { source: next.source, fields: next.ignored });
    return undefined;
  }

  /** Keys the policy with these entries would leave in a backend its rules no longer name. */
  stranded(entries: readonly PolicyEntry[]): Promise<Stranded[]> {
    return strandedKeys({ parts: this.router.parts, upstreams: this.upstreams }, RoutingTable.of(this.compose(entries)));
  }

  /** Puts these entries in force when no key changes backend; else the reason (with the lock held). */
  async setEntries(entries: PolicyEntry[], source: string): Promise<string | undefined> {
    const reason = await this.putInForce(this.compose(entries), source);
    if (!reason) this.entries = entries;
    return reason;
  }

  /** Moves the keys these entries send elsewhere, then puts them in force (with the lock held). */
  async migrateTo(entries: PolicyEntry[], report: (p: MoveProgress) => void): Promise<MoveProgress> {
    const last = await this.rerouting.reroute(this.compose(entries), report);
    this.entries = entries;
    return last;
  }

  private async putInForce(t: Topology, source: string): Promise<string | undefined> {
    if (sameTopology(this.router.topology, t)) return undefined;
    if (this.router.moving) return "a migration is running; try again when it has ended";
    const stranded = await strandedKeys({ parts: this.router.parts, upstreams: this.upstreams }, RoutingTable.of(t));
    if (stranded.length > 0) return strandedMessage(stranded, source);
    if (this.router.moving) return "a migration started meanwhile; try again when it has ended";
    this.router.setTopology(t);
    return undefined;
  }
}

/** the base's rules, then the entries' in their order */
export function composeTopology(base: Topology, entries: readonly PolicyEntry[]): Topology {
  const sorted = [...entries].sort((a, b) => compareOrder(a.order, b.order));
  return { ...base, rules: [...base.rules, ...sorted.flatMap((e) => e.rules)] };
}

export function compareOrder(a: [number, string, string], b: [number, string, string]): number {
  return a[0] - b[0] || a[1].localeCompare(b[1]) || a[2].localeCompare(b[2]);
}
