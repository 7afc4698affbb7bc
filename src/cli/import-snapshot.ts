// `strata import --from-snapshot FILE [--config FILE]`: an etcd snapshot file (from
// `etcdctl snapshot save`, against etcd or strata, or an etcd data dir's member/snap/db)
// into the backends the rules name, with the guarantees of `import --from`: each key's
// current version with its revisions and version, leases with the time they had left,
// new writes above the snapshot's revision, counts verified, and a second run resumes
// an interrupted one (keys already there are skipped). etcd's users and roles (its auth
// buckets) go to the default backend, unless it keeps some of its own already.
//
// Two passes over the file. The first checks it whole — hash, pages, records — and finds
// each key's newest revision, before anything is written: a bad file changes nothing.
// It keeps one entry per key (its name and newest revision), not values. The second
// copies the versions that are newest and not deleted.
import { open } from "node:fs/promises";
import { AuthState } from "../api/auth-state.ts";
import { keyString } from "../mvcc/keyrange.ts";
import type { KeyValue, Rev } from "../mvcc/types.ts";
import type { Router } from "../router/router.ts";
import { SnapshotError, SnapshotFile } from "../snapshot/index.ts";
import { finishImport, openImportTarget, placeKeys, placeLease, runImport } from "./import-target.ts";

const BATCH = 1000;
const PROGRESS_EVERY_MS = 2000;

export async function importSnapshotCommand(args: string[]): Promise<number> {
  const i = args.findIndex((a) => a === "--from-snapshot" || a.startsWith("--from-snapshot="));
  const flag = args[i] ?? "";
  const inline = flag.includes("=");
  const path = inline ? flag.slice(flag.indexOf("=") + 1) : args[i + 1];
  if (!path || path.startsWith("--")) {
    console.error("usage: strata import --from-snapshot FILE [--config FILE | --backend URL]");
    return 2;
  }
  const own = args.filter((_, j) => j !== i && !(j === i + 1 && !inline));

  let file;
  try {
    file = await open(path, "r");
  } catch (err) {
    console.error(`strata import: ${path}: cannot open: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    return 1;
  }
  try {
    let snapshot: SnapshotFile;
    // the key's newest revision; negative when that revision deleted it
    const newest = new Map<string, number>();
    let revision = 0n, entries = 0;
    let leases;
    let auth: AuthState | undefined;
    try {
      snapshot = await SnapshotFile.open(file);
      let last = -1n, lastSub = -1n, lastLog = Date.now();
      for await (const e of snapshot.entries()) {
        const { main, sub, tombstone } = e.revision;
        if (main < last || (main === last && sub <= lastSub)) throw new SnapshotError(`revision ${main}_${sub} comes after ${last}_${lastSub}: the key bucket is out of order`);
        if (!tombstone && e.kv.modRevision !== main) throw new SnapshotError(`revision ${main} holds a key-value of revision ${e.kv.modRevision}`);
        last = main;
        lastSub = sub;
        newest.set(keyString(e.kv.key), tombstone ? -Number(main) : Number(main));
        entries++;
        if (Date.now() - lastLog >= PROGRESS_EVERY_MS) {
          lastLog = Date.now();
          process.stderr.write(`\rstrata import: checking ${path}: ${entries} revisions`);
        }
      }
      revision = last > snapshot.compactRevision ? last : snapshot.compactRevision;
      leases = await snapshot.leases();
      const buckets = await snapshot.auth();
      try {
        auth = buckets && AuthState.fromSnapshot(buckets);
      } catch (err) {
        throw new SnapshotError(`the authUsers/authRoles buckets: ${(err as Error).message}`);
      }
    } catch (err) {
      if (err instanceof SnapshotError) {
        console.error(`strata import: ${path}: ${err.message}; nothing imported`);
        return 1;
      }
      throw err;
    }
    let total = 0;
    for (const r of newest.values()) if (r > 0) total++;
    console.error(`strata import: ${total} keys at revision ${revision} in ${path} (etcd storage schema ${snapshot.schema}, ${entries} revisions, ${leases.length} leases${snapshot.hashed ? ", sha256 checked" : ", no sha256 trailer to check"})`);

    const router = await openImportTarget(own);
    if (typeof router === "number") return router;
    return await runImport(router, async () => {
      const now = Date.now();
      // leases first, so keys attached to them find them; a restored etcd gives a lease
      // the time its last checkpoint recorded, or its whole TTL: so does strata
      for (const l of leases) {
        const left = l.remaining > 0n && l.remaining < l.ttl ? l.remaining : l.ttl;
        await placeLease(router, { id: l.id, ttl: l.ttl, expiresAt: now + Number(left) * 1000 });
      }
      let copied = 0;
      let batch: KeyValue[] = [];
      const flush = async () => {
        await placeKeys(router, batch);
        copied += batch.length;
        batch = [];
        process.stderr.write(`\rstrata import: ${copied}/${total} keys copied`);
      };
      for await (const e of snapshot.entries()) {
        if (e.revision.tombstone || newest.get(keyString(e.kv.key)) !== Number(e.revision.main)) continue;
        batch.push(e.kv);
        if (batch.length >= BATCH) await flush();
      }
      await flush();
      process.stderr.write("\n");
      if (auth) console.error(`strata import: ${await placeAuth(router, auth)}`);
      return finishImport(router, revision as Rev, total, leases.length);
    });
  } finally {
    await file.close();
  }
}

/** etcd's users and roles into the default backend, which holds them; one that has its own keeps them */
async function placeAuth(router: Router, auth: AuthState): Promise<string> {
  const backend = router.primary?.backend;
  if (!backend) return "the default backend is an upstream etcd: the snapshot's users and roles are not imported";
  const what = `${auth.users.size} users and ${auth.roles.size} roles, authentication ${auth.enabled ? "on" : "off"}`;
  const data = auth.encode();
  const current = await backend.readAuth();
  // a second run of an interrupted import finds them there
  if (current && Buffer.from(current.data).equals(Buffer.from(data))) return `${what}: already imported`;
  if (current) return `the default backend keeps users and roles of its own: the snapshot's ${what} are not imported`;
  if (!(await backend.writeAuth(0n, { revision: 1n, data }))) return `users and roles were written meanwhile: the snapshot's ${what} are not imported`;
  return `${what} imported`;
}
