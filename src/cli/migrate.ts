// `strata migrate --from-config OLD --to-config NEW`: moves the keys whose backend the new
// rules change, keeping their revisions and versions, then checks that every key is
// where the new rules look for it and that no key was lost. Run it with strata stopped
// (a SQLite backend is locked by a running strata, so it refuses). An interrupted run is
// resumed by running it again: a key is copied before it is removed from its old place.
// With --endpoint instead of --from-config the running strata does it live (router/move.ts).
// A new default backend gets the old one's users and roles (etcd's auth store), which live
// in the default backend.
import { readFileSync } from "node:fs";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { AuthView, Backend, BackendState } from "../mvcc/backend.ts";
import { CLIENT_TLS_USAGE, clientTlsFlags, grpcClientTransport } from "./client-transport.ts";
import { openBackend, redact } from "../backends/open.ts";
import { type Config, ConfigError } from "../config/config.ts";
import { loadCheckedConfig } from "./config.ts";
import { Store } from "../mvcc/store.ts";
import { Admin } from "../gen/strata/admin/v1/admin_pb.ts";
import { copyInto, forgetIn } from "../router/copy.ts";
import { keyCount } from "../router/key-count.ts";
import { eachKey, eachPage, strandedKeys, UPSTREAM_KEYS_STAY, upstreamIn } from "../router/open.ts";
import { keyString } from "../mvcc/keyrange.ts";
import type { Part } from "../router/part.ts";
import { RoutingTable } from "../router/rules.ts";

const BATCH = 500;

export async function migrateCommand(args: string[]): Promise<number> {
  const flag = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : args.find((a) => a.startsWith(`${name}=`))?.slice(name.length + 1);
  };
  const from = flag("--from-config"), to = flag("--to-config"), endpoint = flag("--endpoint");
  if (to && endpoint) return migrateLive(endpoint, to, args);
  if (!from || !to) {
    console.error(`usage: strata migrate --to-config NEW.yaml --endpoint http(s)://STRATA:2379 ${CLIENT_TLS_USAGE}   (live, strata serving)\n` +
      "       strata migrate --from-config OLD.yaml --to-config NEW.yaml                (strata stopped)");
    return 2;
  }
  let oldConfig: Config, newConfig: Config;
  try {
    oldConfig = loadCheckedConfig(["--config", from], {});
    newConfig = loadCheckedConfig(["--config", to], {});
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`strata: configuration error: ${err.message}`);
      return 2;
    }
    throw err;
  }
  for (const c of [oldConfig, newConfig]) {
    const upstream = upstreamIn(c.topology);
    if (upstream !== undefined) {
      console.error(`strata migrate: ${c.topology.source}: backend ${upstream} is an upstream etcd; ${UPSTREAM_KEYS_STAY}, and its routes take whole resources that stay where they are`);
      return 2;
    }
  }
  // backends are the same database when their URLs are; names may differ between files
  const urls = [...new Set([...oldConfig.topology.backends.values(), ...newConfig.topology.backends.values()])];
  const backends = new Map<string, Backend>();
  const states: Array<[string, Backend, BackendState]> = [];
  try {
    for (const url of urls) {
      const b = await openBackend(url, { poolSize: newConfig["pool-size"], selectorIndex: newConfig["selector-index"] });
      backends.set(url, b);
      states.push([url, b, await b.open().catch((err: Error) => {
        throw new Error(`backend ${redact(url)}: ${err.message}`);
      })]);
    }
  } catch (err) {
    console.error(`strata: cannot migrate: ${(err as Error).message}`);
    await Promise.allSettled([...backends.values()].map((b) => b.close()));
    return 1;
  }
  const stores = new Map<string, Store>();
  for (const [url, b, state] of states) {
    const s = new Store(b);
    s.init(state.revision, state.compactRevision);
    stores.set(url, s);
  }
  const table = RoutingTable.of(newConfig.topology);
  const urlOf = (name: string) => newConfig.topology.backends.get(name)!;
  try {
    // what moves: every key whose new backend is another database than the one holding it
    let total = 0, before = 0;
    for (const [url, b] of backends) {
      await eachKey(b, (k) => {
        before++;
        if (urlOf(table.route(keyString(k))) !== url) total++;
      });
    }
    console.error(`strata migrate: ${total} of ${before} keys change backend`);
    let moved = 0;
    const progress = () => progressBar(moved, total, "keys moved");
    progress();
    for (const [url, b] of backends) {
      await eachPage(b, false, async (kvs) => {
        const leaving = kvs.filter((kv) => urlOf(table.route(keyString(kv.key))) !== url);
        for (let i = 0; i < leaving.length; i += BATCH) {
          const batch = leaving.slice(i, i + BATCH);
          const byTarget = new Map<string, typeof batch>();
          for (const kv of batch) {
            const target = urlOf(table.route(keyString(kv.key)));
            byTarget.set(target, [...(byTarget.get(target) ?? []), kv]);
          }
          // copied first, removed second: a crash in between leaves a copy the next run finds
          for (const [target, group] of byTarget) await copyInto(stores.get(target)!, group, b);
          await forgetIn(stores.get(url)!, batch.map((kv) => kv.key));
          moved += batch.length;
          progress();
        }
      });
    }
    process.stderr.write("\n");
    // verify: nothing is left where the new rules do not look, and nothing was lost
    const parts: Part[] = [...newConfig.topology.backends].map(([name, url], index) => ({ name, index, backend: backends.get(url)!, store: stores.get(url)! }));
    const stranded = await strandedKeys({ parts }, table);
    let after = 0;
    for (const url of new Set(newConfig.topology.backends.values())) after += Number(await keyCount(backends.get(url)!));
    const leftBehind = [...backends.keys()].filter((u) => ![...newConfig.topology.backends.values()].includes(u));
    let orphaned = 0;
    for (const u of leftBehind) orphaned += Number(await keyCount(backends.get(u)!));
    if (stranded.length > 0 || after !== before || orphaned > 0) {
      console.error(`strata migrate: verification failed: ${before} keys before, ${after} where the new rules look, ${orphaned} in backends the new config drops, ${stranded.reduce((n, s) => n + s.count, 0)} in the wrong backend; run it again to resume`);
      return 1;
    }
    const auth = await moveAuth(backends.get(oldConfig.topology.backends.get(oldConfig.topology.default)!)!, backends.get(urlOf(newConfig.topology.default))!);
    if (auth) console.error(`strata migrate: ${auth}`);
    const perBackend = await Promise.all(parts.map(async (p) => `${p.name}=${await keyCount(p.backend)}`));
    console.error(`strata migrate: done: ${moved} keys moved, ${after} keys in all (${perBackend.join(", ")}), every key where ${to} routes it`);
    return 0;
  } catch (err) {
    process.stderr.write("\n");
    console.error(`strata migrate: stopped: ${(err as Error).message}; run it again to resume`);
    return 1;
  } finally {
    for (const s of stores.values()) await s.drain();
    await Promise.allSettled([...backends.values()].map((b) => b.close()));
  }
}

/** Asks the strata serving at endpoint to move its keys to the rules in file, showing its progress. */
async function migrateLive(endpoint: string, file: string, args: string[]): Promise<number> {
  let config: string;
  try {
    config = readFileSync(file, "utf8");
  } catch (err) {
    console.error(`strata: configuration error: ${file}: cannot read config file: ${(err as Error).message}`);
    return 2;
  }
  let admin;
  try {
    admin = createClient(Admin, grpcClientTransport(endpoint, clientTlsFlags(args)));
  } catch (err) {
    console.error(`strata migrate: ${(err as Error).message}`);
    return 2;
  }
  let phase = "";
  try {
    for await (const p of admin.migrate({ config, source: file })) {
      if (p.phase !== phase && phase !== "") process.stderr.write("\n");
      phase = p.phase;
      if (p.phase === "done") {
        console.error(`strata migrate: done: ${p.moved} keys moved${p.message ? ` (${p.message})` : ""}; ${endpoint} now routes by ${file}. ` +
          `Make ${file} the config strata starts with, so a restart keeps these rules.`);
        return 0;
      }
      if (p.phase === "copying") progressBar(Number(p.moved), Number(p.total), "keys copied");
      else process.stderr.write(`strata migrate: ${p.phase}${p.message ? `: ${p.message}` : ""}`);
    }
    process.stderr.write("\n");
    console.error(`strata migrate: the server ended the migration without finishing it; the rules in force are unchanged unless it said "switched"`);
    return 1;
  } catch (err) {
    if (phase) process.stderr.write("\n");
    const e = ConnectError.from(err);
    console.error(`strata migrate: ${e.rawMessage.replace(/^strata: /, "")}`);
    return e.code === Code.InvalidArgument ? 2 : 1;
  }
}

function progressBar(done: number, total: number, what: string): void {
  const width = 30, filled = total === 0 ? width : Math.round((done / total) * width);
  process.stderr.write(`\r[${"#".repeat(filled)}${" ".repeat(width - filled)}] ${done}/${total} ${what}`);
}

/** The users and roles into a new default backend (copied: the old database keeps its own). */
async function moveAuth(from: AuthView, to: AuthView): Promise<string | undefined> {
  if (from === to) return undefined;
  const record = await from.readAuth();
  if (!record) return undefined;
  const there = await to.readAuth();
  if (there && Buffer.from(there.data).equals(Buffer.from(record.data))) return "users and roles: already in the new default backend";
  if (there) return "users and roles: the new default backend keeps its own; the old default's are not copied";
  await to.writeAuth(0n, { revision: 1n, data: record.data });
  return "users and roles copied to the new default backend";
}
