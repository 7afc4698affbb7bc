// A user's key permissions merged from its roles, and etcd's checks against them
// (range_perm_cache.go): one key is permitted when some permission holds it; a range
// when the permissions overlapping it cover it with no gap. Keys compare as bytes; a
// permission or request whose range_end is "\0" reaches past every key.
import { type Permission, Permission_Type, type Role } from "../gen/etcd/api/authpb/auth_pb.ts";
import { compareBytes } from "../mvcc/keyrange.ts";

/** [start, end); end undefined: no end */
interface Interval {
  start: Uint8Array;
  end: Uint8Array | undefined;
}

export interface UserPermissions {
  read: Interval[];
  write: Interval[];
}

const isEverythingAfter = (end: Uint8Array) => end.length === 1 && end[0] === 0;

/** key + "\0": the end of the interval that holds `key` alone */
function pointEnd(key: Uint8Array): Uint8Array {
  const out = new Uint8Array(key.length + 1);
  out.set(key);
  return out;
}

function permissionInterval(p: Permission): Interval {
  if (p.rangeEnd.length === 0) return { start: p.key, end: pointEnd(p.key) };
  return { start: p.key, end: isEverythingAfter(p.rangeEnd) ? undefined : p.rangeEnd };
}

/** end a before end b (undefined is past every key) */
function compareEnds(a: Uint8Array | undefined, b: Uint8Array | undefined): number {
  if (a === undefined) return b === undefined ? 0 : 1;
  if (b === undefined) return -1;
  return compareBytes(a, b);
}

/** The read and write intervals of the roles' permissions, each list sorted by start. */
export function mergePermissions(roles: Role[]): UserPermissions {
  const read: Interval[] = [], write: Interval[] = [];
  for (const role of roles) {
    for (const p of role.keyPermission) {
      const ivl = permissionInterval(p);
      if (p.permType === Permission_Type.READ || p.permType === Permission_Type.READWRITE) read.push(ivl);
      if (p.permType === Permission_Type.WRITE || p.permType === Permission_Type.READWRITE) write.push(ivl);
    }
  }
  const order = (a: Interval, b: Interval) => compareBytes(a.start, b.start) || compareEnds(a.end, b.end);
  return { read: read.sort(order), write: write.sort(order) };
}

/**
 * Whether `granted` permits key (rangeEnd empty) or [key, rangeEnd) (rangeEnd "\0": every
 * key from key on): for a range, the granted intervals that overlap it must join into one
 * run from at or before its start to at or past its end, as etcd's interval tree answers.
 */
export function permits(granted: Interval[], key: Uint8Array, rangeEnd: Uint8Array): boolean {
  const want: Interval = rangeEnd.length === 0
    ? { start: key, end: pointEnd(key) }
    : { start: key, end: isEverythingAfter(rangeEnd) ? undefined : rangeEnd };
  const overlapping = granted.filter((g) => compareEnds(want.start, g.end) < 0 && compareEnds(g.start, want.end) < 0);
  if (overlapping.length === 0) return false;
  if (rangeEnd.length === 0) return true;
  let reach = overlapping[0]!.end;
  for (const g of overlapping.slice(1)) {
    // a gap between what is covered so far and the next interval
    if (reach !== undefined && compareBytes(reach, g.start) < 0) return false;
    if (compareEnds(g.end, reach) > 0) reach = g.end;
  }
  return compareBytes(overlapping[0]!.start, want.start) <= 0 && compareEnds(reach, want.end) >= 0;
}
