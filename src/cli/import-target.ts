// What both kinds of `strata import` share — from a live etcd (import.ts) and from an etcd
// snapshot file (import-snapshot.ts): opening strata's own backends from the rest of the
// command line, placing keys where the rules route them with their revisions and
// versions, leases first, and the end: every backend continues above the source's
// revision and the key counts are verified.
import { type Config, ConfigError } from "../config/config.ts";
import { keyString } from "../mvcc/keyrange.ts";
import type { KeyValue, LeaseRecord, Rev } from "../mvcc/types.ts";
import { copyInto, ensureLease } from "../router/copy.ts";
import { keyCount } from "../router/key-count.ts";
import { openRouter, UPSTREAM_KEYS_STAY, upstreamIn } from "../router/open.ts";
import type { Router } from "../router/router.ts";
import { loadCheckedConfig, routerOptions } from "./config.ts";

/** Opens the configured backends, or prints why not and returns the exit status. */
export async function openImportTarget(own: string[]): Promise<Router | number> {
  let config: Config;
  try {
    config = loadCheckedConfig(own, process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`strata: configuration error: ${err.message}`);
      return 2;
    }
    throw err;
  }
  const upstream = upstreamIn(config.topology);
  if (upstream !== undefined) {
    console.error(`strata import: backend ${upstream} is an upstream etcd; import copies an etcd's keys into strata's own databases and ${UPSTREAM_KEYS_STAY}. To serve an etcd's keys where they are, make it a backend (etcd://HOST:2379) instead of importing them`);
    return 2;
  }
  const log = (level: string, msg: string, fields: Record<string, unknown> = {}) => console.error(JSON.stringify({ level, msg, ...fields }));
  try {
    return (await openRouter(routerOptions(config), log)).router;
  } catch (err) {
    console.error(`strata import: cannot open the backends: ${(err as Error).message}`);
    return 1;
  }
}

/** Makes sure every backend has the lease, so keys attached to it find it wherever they land. */
export async function placeLease(router: Router, lease: LeaseRecord): Promise<void> {
  for (const p of router.parts) await ensureLease(p.store, lease);
}

/** Writes keys (current versions, as the source had them) into the backends the rules give them. */
export async function placeKeys(router: Router, kvs: KeyValue[]): Promise<void> {
  const byPart = new Map<string, KeyValue[]>();
  for (const kv of kvs) {
    const name = router.routing.route(keyString(kv.key));
    if (!byPart.has(name)) byPart.set(name, []);
    byPart.get(name)!.push(kv);
  }
  for (const [name, part] of byPart) await copyInto(router.byName.get(name)!.store, part);
}

/**
 * Raises every backend above the source's revision (new writes continue after it), then
 * checks the backends hold `total` keys. Prints the outcome; returns the exit status.
 */
export async function finishImport(router: Router, revision: Rev, total: number, leases: number): Promise<number> {
  for (const p of router.parts) await p.store.advance(revision);
  const counts = await Promise.all(router.parts.map(async (p) => [p.name, await keyCount(p.backend)] as const));
  const sum = counts.reduce((n, [, c]) => n + Number(c), 0);
  if (sum !== total) {
    console.error(`strata import: verification failed: etcd had ${total} keys, the backends hold ${sum}`);
    return 1;
  }
  console.error(`strata import: done: ${total} keys, ${leases} leases, revision ${revision} (${counts.map(([n, c]) => `${n}=${c}`).join(", ")})`);
  return 0;
}

/** Runs an import's copy into the router: a failure is one line, and the router is drained and closed either way. */
export async function runImport(router: Router, copy: () => Promise<number>): Promise<number> {
  try {
    return await copy();
  } catch (err) {
    process.stderr.write("\n");
    console.error(`strata import: stopped: ${(err as Error).message}`);
    return 1;
  } finally {
    await router.drain();
    await router.close();
  }
}
