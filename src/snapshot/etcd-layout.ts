// etcd's database layout inside the bbolt file, as etcd 3.4 writes it and as its
// `snapshot status`/`snapshot restore` read it: the buckets, how a revision becomes a key,
// what the meta bucket records. Written from etcd's formats, not its code.
//
//   key      revision → mvccpb.KeyValue. A revision key is the main revision (8 bytes, big
//            endian), '_', the sub revision (8 bytes, big endian): 17 bytes; a deletion
//            appends 't' and stores a KeyValue holding only the key (a tombstone).
//   meta     consistent_index (8 bytes big endian), finishedCompactRev and
//            scheduledCompactRev (revision keys, sub 0) once compacted; etcd 3.5 adds term
//            and confState, 3.6 storageVersion.
//   lease    lease ID (8 bytes big endian) → leasepb.Lease
//   auth     authEnabled ([1] or [0]) and authRevision (8 bytes big endian)
//   authUsers, authRoles: user and role name → authpb.User, authpb.Role
//   alarm, cluster, members, members_removed: etcd creates them; strata writes them empty
//            (restore gives the member its own identity)

const text = new TextEncoder();

export const BUCKETS = {
  key: text.encode("key"),
  meta: text.encode("meta"),
  lease: text.encode("lease"),
  auth: text.encode("auth"),
  authUsers: text.encode("authUsers"),
  authRoles: text.encode("authRoles"),
} as const;

/** the buckets etcd creates that a strata snapshot leaves empty */
export const EMPTY_BUCKETS = ["alarm", "cluster", "members", "members_removed"].map((n) => text.encode(n));

export const AUTH_KEYS = {
  enabled: text.encode("authEnabled"),
  revision: text.encode("authRevision"),
} as const;

export const META_KEYS = {
  consistentIndex: text.encode("consistent_index"),
  finishedCompact: text.encode("finishedCompactRev"),
  scheduledCompact: text.encode("scheduledCompactRev"),
  term: text.encode("term"),
  confState: text.encode("confState"),
  storageVersion: text.encode("storageVersion"),
} as const;

/** the newest etcd storage schema whose key and lease records strata knows (unchanged since 3.4) */
export const NEWEST_SCHEMA: [number, number] = [3, 6];

export const REV_BYTES = 17;
const TOMBSTONE = 0x74; // 't'

export interface Revision {
  main: bigint;
  sub: bigint;
  tombstone: boolean;
}

export function revisionKey(main: bigint, sub: bigint, tombstone = false): Uint8Array {
  const out = new Uint8Array(REV_BYTES + (tombstone ? 1 : 0));
  const v = new DataView(out.buffer);
  v.setBigUint64(0, main, false);
  out[8] = 0x5f; // '_'
  v.setBigUint64(9, sub, false);
  if (tombstone) out[REV_BYTES] = TOMBSTONE;
  return out;
}

/** a key bucket key as a revision, or undefined when it is not one */
export function parseRevisionKey(k: Uint8Array): Revision | undefined {
  if (k.length !== REV_BYTES && !(k.length === REV_BYTES + 1 && k[REV_BYTES] === TOMBSTONE)) return undefined;
  if (k[8] !== 0x5f) return undefined;
  const v = new DataView(k.buffer, k.byteOffset, k.byteLength);
  return { main: v.getBigInt64(0, false), sub: v.getBigInt64(9, false), tombstone: k.length === REV_BYTES + 1 };
}

export function uint64BE(n: bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt.asUintN(64, n), false);
  return out;
}

export function readUint64BE(b: Uint8Array): bigint {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(0, false);
}
