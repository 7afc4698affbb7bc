// An etcd snapshot file, both ways. Writing: the keyspace's history at one revision, read
// in revision order page by page, becomes etcd's `key` bucket as it arrives (revision
// keys are ordered as history is), then the meta, lease and the other buckets etcd
// creates. Reading: a snapshot etcd (or strata) made, its hash checked, its structure
// and schema checked, its history read back in revision order.
//
// What history goes in: every revision the databases still hold — each key's version
// that survived compaction and every change after it — as etcd keeps it, so a restored
// etcd answers reads at the snapshot revision and at older ones down to the compaction.
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { KeyValueSchema } from "../gen/etcd/api/mvccpb/kv_pb.ts";
import { LeaseSchema } from "../gen/etcd/server/leasepb/lease_pb.ts";
import type { EventsOptions, EventsPage } from "../mvcc/backend.ts";
import { compareBytes } from "../mvcc/keyrange.ts";
import { DELETE, type KeyValue, type LeaseRecord, type Rev } from "../mvcc/types.ts";
import { BoltFormatError, BoltReader, type BucketRef } from "./bbolt-reader.ts";
import { BoltWriter } from "./bbolt-writer.ts";
import { AUTH_KEYS, BUCKETS, EMPTY_BUCKETS, META_KEYS, NEWEST_SCHEMA, parseRevisionKey, readUint64BE, revisionKey, type Revision, uint64BE } from "./etcd-layout.ts";

/**
 * What a snapshot is read from: the whole keyspace's history and leases. While it is read
 * no history may be removed (the caller holds compaction back); compactRevisionNow tells
 * whether something else (another process) compacted meanwhile.
 */
export interface SnapshotSource {
  /** the revision the snapshot is taken at (the keyspace is read as it was then) */
  revision: Rev;
  /** the compaction the history reflects when the read begins */
  compactRevision: Rev;
  events(from: Rev, to: Rev, limit: number, opts?: EventsOptions): Promise<EventsPage>;
  leases(): Promise<LeaseRecord[]>;
  /** the compact revision now: checked after the history was read */
  compactRevisionNow(): Promise<Rev>;
}

/**
 * etcd's auth store as its buckets hold it: whether auth is on, the auth revision, and
 * each user and role by name as authpb bytes (the api layer's encoding, untouched here).
 */
export interface SnapshotAuth {
  enabled: boolean;
  revision: Rev;
  users: Array<{ name: Uint8Array; value: Uint8Array }>;
  roles: Array<{ name: Uint8Array; value: Uint8Array }>;
}

/** History may have been removed while it was read (a compaction recorded meanwhile): take the snapshot again. */
export class CompactedMeanwhile extends Error {}

export interface SnapshotWritten {
  revision: Rev;
  compactRevision: Rev;
  /** revisions (entries of the key bucket) written */
  entries: number;
  leases: number;
  /** bytes of the database file (the hash trailer excluded) */
  size: number;
}

/** history events per page read, and bytes of keys and values per page */
const PAGE_EVENTS = 2000;
const PAGE_BYTES = 4 << 20;
const PROGRESS_EVERY_MS = 5000;

export class SnapshotError extends Error {}

type Log = (level: string, msg: string, fields?: Record<string, unknown>) => void;

/**
 * Writes the snapshot of `source` at source.revision into file (empty, opened for
 * writing), with the users and roles of `auth` in etcd's auth buckets.
 */
export async function writeSnapshot(
  file: FileHandle,
  source: SnapshotSource,
  log: Log,
  signal?: AbortSignal,
  now = Date.now(),
  auth?: SnapshotAuth,
): Promise<SnapshotWritten> {
  const bolt = await BoltWriter.create(file);
  const keys = bolt.bucket();
  const to = source.revision;
  let from = 1n, lastMain = -1n, sub = 0n, lastLog = Date.now();
  const compacted = source.compactRevision;
  while (from <= to) {
    // a client that went away stops the read between pages
    signal?.throwIfAborted();
    const page = await source.events(from, to, PAGE_EVENTS, { prevKv: false, bytes: PAGE_BYTES, subs: true });
    if (page.compactRevision > compacted) throw new CompactedMeanwhile(`compacted at revision ${page.compactRevision} while the snapshot was read`);
    for (const e of page.events) {
      // the sub revisions as stored (compaction may have removed a revision's other
      // changes), else counted: events of one revision come in the order they were made
      const main = e.kv.modRevision;
      sub = e.sub ?? (main === lastMain ? sub + 1n : 0n);
      lastMain = main;
      const tombstone = e.type === DELETE;
      const kv = tombstone ? create(KeyValueSchema, { key: e.kv.key }) : create(KeyValueSchema, e.kv);
      await keys.put(revisionKey(main, sub, tombstone), toBinary(KeyValueSchema, kv));
    }
    if (page.through < from) throw new SnapshotError(`history read made no progress at revision ${from}`);
    from = page.through + 1n;
    if (Date.now() - lastLog >= PROGRESS_EVERY_MS) {
      lastLog = Date.now();
      log("info", "snapshot: reading history", { revision: to, through: page.through, entries: keys.entries, bytes: bolt.size });
    }
  }
  const entries = keys.entries;
  const keyBucket = await keys.finish();

  // A compaction removes a deleted key's tombstone along with its older versions: one
  // that overtook the read could leave a deleted key alive in the file. Compactions by
  // this process wait for the read (see SnapshotSource); one recorded meanwhile (by
  // another process) makes the caller read again.
  const after = await source.compactRevisionNow();
  if (after > compacted) throw new CompactedMeanwhile(`compacted at revision ${after} while the snapshot was read`);

  const meta = bolt.bucket();
  await meta.put(META_KEYS.consistentIndex, uint64BE(to));
  if (compacted > 0n) {
    await meta.put(META_KEYS.finishedCompact, revisionKey(compacted, 0n));
    await meta.put(META_KEYS.scheduledCompact, revisionKey(compacted, 0n));
  }
  const metaBucket = await meta.finish();

  const leases = (await source.leases()).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const lease = bolt.bucket();
  for (const l of leases) {
    // the seconds left now, as etcd's lease checkpoints record them: a restored etcd
    // gives the lease that long
    const remaining = BigInt(Math.max(1, Math.ceil((l.expiresAt - now) / 1000)));
    await lease.put(uint64BE(l.id), toBinary(LeaseSchema, create(LeaseSchema, { ID: l.id, TTL: l.ttl, RemainingTTL: remaining < l.ttl ? remaining : l.ttl })));
  }
  const leaseBucket = await lease.finish();

  // etcd writes the auth bucket's flag and revision from its first start on
  const authBucket = bolt.bucket();
  await authBucket.put(AUTH_KEYS.enabled, new Uint8Array([auth?.enabled ? 1 : 0]));
  await authBucket.put(AUTH_KEYS.revision, uint64BE(auth?.revision ?? 1n));
  const byName = (a: { name: Uint8Array }, b: { name: Uint8Array }) => compareBytes(a.name, b.name);
  const named = async (entries: Array<{ name: Uint8Array; value: Uint8Array }>) => {
    const bucket = bolt.bucket();
    for (const e of [...entries].sort(byName)) await bucket.put(e.name, e.value);
    return (await bucket.finish()).value;
  };
  const buckets = [
    { name: BUCKETS.key, value: keyBucket.value },
    { name: BUCKETS.meta, value: metaBucket.value },
    { name: BUCKETS.lease, value: leaseBucket.value },
    { name: BUCKETS.auth, value: (await authBucket.finish()).value },
    { name: BUCKETS.authUsers, value: await named(auth?.users ?? []) },
    { name: BUCKETS.authRoles, value: await named(auth?.roles ?? []) },
  ];
  for (const name of EMPTY_BUCKETS) buckets.push({ name, value: (await bolt.bucket().finish()).value });
  const size = await bolt.close(buckets);
  return { revision: to, compactRevision: compacted, entries, leases: leases.length, size };
}

/** One entry of a snapshot's key bucket: a revision of a key. */
export interface SnapshotEntry {
  revision: Revision;
  kv: KeyValue;
}

export interface SnapshotLease {
  id: Rev;
  ttl: Rev;
  /** seconds left when the snapshot was taken, if etcd recorded it (0: not recorded) */
  remaining: Rev;
}

/** An etcd snapshot opened for reading; its hash and meta already checked. */
export class SnapshotFile {
  private constructor(
    private readonly bolt: BoltReader,
    private readonly buckets: Map<string, BucketRef>,
    /** whether the file carried the sha256 trailer (a plain etcd db file has none) */
    readonly hashed: boolean,
    readonly compactRevision: Rev,
    /** the etcd storage schema the file was written with: "3.4", "3.5" or its storageVersion */
    readonly schema: string,
  ) {}

  /**
   * Opens and checks a snapshot: the sha256 trailer when present, bbolt's meta pages,
   * etcd's buckets and storage schema. Throws SnapshotError saying what is wrong.
   */
  static async open(file: FileHandle): Promise<SnapshotFile> {
    const { size } = await file.stat();
    let length = size;
    let hashed = false;
    // etcd appends the sha256 of the database to it; databases are whole pages, so a
    // size 32 bytes past a multiple of 512 is how etcd itself tells a trailer is there
    if (size % 512 === 32) {
      length = size - 32;
      hashed = true;
      const expected = new Uint8Array(32);
      await file.read(expected, 0, 32, length);
      const actual = await sha256Of(file, length);
      if (!equalBytes(expected, actual)) {
        throw new SnapshotError(`sha256 mismatch: the file records ${hex(expected)}, its contents hash to ${hex(actual)} (damaged or altered)`);
      }
    }
    if (length < 2 * 1024) throw new SnapshotError(`not an etcd snapshot: ${size} bytes is too short for a bbolt database`);
    let bolt: BoltReader;
    try {
      bolt = await BoltReader.open(file, length);
    } catch (err) {
      throw asSnapshotError(err, hashed);
    }
    return wrapFormat(hashed, async () => {
      const buckets = new Map<string, BucketRef>();
      for await (const e of bolt.entries(bolt.root)) if (e.bucket) buckets.set(new TextDecoder().decode(e.key), BoltReader.bucketRef(e.value));
      if (!buckets.has("key") || !buckets.has("meta")) {
        throw new SnapshotError(`not an etcd snapshot: a bbolt database without etcd's key and meta buckets (it has ${[...buckets.keys()].join(", ") || "no buckets"})`);
      }
      const meta = buckets.get("meta")!;
      const version = await bolt.get(meta, META_KEYS.storageVersion);
      let schema = "3.4";
      if (version) {
        schema = new TextDecoder().decode(version.value);
        const m = /^(\d+)\.(\d+)/.exec(schema);
        const [major, minor] = NEWEST_SCHEMA;
        if (!m || Number(m[1]) > major || (Number(m[1]) === major && Number(m[2]) > minor)) {
          throw new SnapshotError(`written with etcd storage schema ${schema}, newer than the ${major}.${minor} strata reads; restore it into that etcd version and import from the running etcd (strata import --from) instead`);
        }
      } else if ((await bolt.get(meta, META_KEYS.term)) || (await bolt.get(meta, META_KEYS.confState))) schema = "3.5";
      const finished = await bolt.get(meta, META_KEYS.finishedCompact);
      const compactRevision = finished ? (parseRevisionKey(finished.value)?.main ?? 0n) : 0n;
      return new SnapshotFile(bolt, buckets, hashed, compactRevision, schema);
    });
  }

  /** bytes of the database (the trailer excluded) */
  get size(): number {
    return this.bolt.size;
  }

  /** the key bucket in revision order; a malformed entry throws SnapshotError */
  async *entries(): AsyncGenerator<SnapshotEntry> {
    const iter = this.bolt.entries(this.buckets.get("key")!);
    for (;;) {
      let next: IteratorResult<{ key: Uint8Array; value: Uint8Array }>;
      try {
        next = await iter.next();
      } catch (err) {
        throw asSnapshotError(err, this.hashed);
      }
      if (next.done) return;
      const revision = parseRevisionKey(next.value.key);
      if (!revision) throw new SnapshotError(`the key bucket holds ${hex(next.value.key)}, which is not a revision`);
      let kv;
      try {
        kv = fromBinary(KeyValueSchema, next.value.value);
      } catch {
        throw new SnapshotError(`revision ${revision.main}: the value is not an mvccpb.KeyValue`);
      }
      const { $typeName: _, ...plain } = kv;
      yield { revision, kv: plain };
    }
  }

  /** etcd's auth buckets; undefined when the file has none (an etcd that never started its auth store) */
  async auth(): Promise<SnapshotAuth | undefined> {
    const ref = this.buckets.get("auth");
    if (!ref) return undefined;
    return wrapFormat(this.hashed, async () => {
      const enabled = (await this.bolt.get(ref, AUTH_KEYS.enabled))?.value;
      const revision = (await this.bolt.get(ref, AUTH_KEYS.revision))?.value;
      if (revision && revision.length !== 8) throw new SnapshotError(`the auth bucket's authRevision is ${revision.length} bytes, not 8`);
      const named = async (bucket: string) => {
        const out: Array<{ name: Uint8Array; value: Uint8Array }> = [];
        const r = this.buckets.get(bucket);
        if (r) for await (const e of this.bolt.entries(r)) out.push({ name: e.key, value: e.value });
        return out;
      };
      return {
        enabled: enabled !== undefined && enabled.length === 1 && enabled[0] === 1,
        revision: revision ? readUint64BE(revision) : 0n,
        users: await named("authUsers"),
        roles: await named("authRoles"),
      };
    });
  }

  async leases(): Promise<SnapshotLease[]> {
    const ref = this.buckets.get("lease");
    if (!ref) return [];
    return wrapFormat(this.hashed, async () => {
      const out: SnapshotLease[] = [];
      for await (const e of this.bolt.entries(ref)) {
        let l;
        try {
          l = fromBinary(LeaseSchema, e.value);
        } catch {
          throw new SnapshotError(`lease ${hex(e.key)}: the value is not a leasepb.Lease`);
        }
        if (l.ID !== (e.key.length === 8 ? readUint64BE(e.key) : -1n)) throw new SnapshotError(`lease ${hex(e.key)}: the record names lease ${l.ID}`);
        out.push({ id: l.ID, ttl: l.TTL, remaining: l.RemainingTTL });
      }
      return out;
    });
  }
}

async function wrapFormat<T>(hashed: boolean, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw asSnapshotError(err, hashed);
  }
}

function asSnapshotError(err: unknown, hashed: boolean): Error {
  if (err instanceof BoltFormatError) {
    const m = err.message;
    // a file with neither hash nor bbolt meta is not a snapshot at all
    if (m.startsWith("not a bbolt")) return new SnapshotError(`not an etcd snapshot: ${m}`);
    if (m.startsWith("truncated")) return new SnapshotError(m);
    return new SnapshotError(`damaged bbolt database${hashed ? " (its hash matched: written damaged)" : ""}: ${m}`);
  }
  return err as Error;
}

async function sha256Of(file: FileHandle, length: number): Promise<Uint8Array> {
  const h = createHash("sha256");
  const buf = new Uint8Array(1 << 20);
  for (let at = 0; at < length;) {
    const { bytesRead } = await file.read(buf, 0, Math.min(buf.length, length - at), at);
    if (bytesRead === 0) break;
    h.update(buf.subarray(0, bytesRead));
    at += bytesRead;
  }
  return new Uint8Array(h.digest());
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}
