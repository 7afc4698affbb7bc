// bbolt's on-disk format (the B+tree file etcd keeps its data in), as far as strata writes
// and reads it: the constants, the page and element headers, the meta page and its
// checksum. Written from bbolt's format, not its code. All integers are little-endian
// (bbolt writes its structs in the machine's order; etcd runs on little-endian machines).
//
// A file is pages of PAGE_SIZE bytes. Pages 0 and 1 are meta pages (two, so a torn write
// of one leaves the other); the newer valid one (higher txid) names the root bucket's
// page, the freelist page and the high water mark (pages in use). A bucket is a B+tree:
// branch pages list (first key, child page), leaf pages hold (key, value) elements; a
// page too large for one page spans `overflow` more pages after it. A bucket inside a
// bucket is a leaf element flagged BUCKET_LEAF whose value is the bucket header (root
// page, sequence) — and, for a small bucket with root 0, its one leaf page inline.

export const PAGE_SIZE = 4096;
export const PAGE_HEADER = 16;
export const ELEMENT = 16;
export const BUCKET_HEADER = 16;

export const MAGIC = 0xed0cdaed;
export const VERSION = 2;

export const BRANCH_PAGE = 0x01;
export const LEAF_PAGE = 0x02;
export const META_PAGE = 0x04;
export const FREELIST_PAGE = 0x10;

/** a leaf element whose value is a nested bucket */
export const BUCKET_LEAF = 0x01;

/** the freelist page id meaning "not written" (bbolt rebuilds the freelist instead) */
export const NO_FREELIST = 0xffffffffffffffffn;

/** a bucket no larger than this is stored inline in its parent (bbolt's rule: a quarter page) */
export const MAX_INLINE_BUCKET = PAGE_SIZE / 4;

/** bytes of the meta struct the checksum covers: everything before the checksum itself */
const META_SUMMED = 56;

export interface Meta {
  pageSize: number;
  flags: number;
  root: bigint;
  sequence: bigint;
  freelist: bigint;
  /** the high water mark: pages in use, so the file holds at least pgid pages */
  pgid: bigint;
  txid: bigint;
}

/** FNV-1a, 64 bit: bbolt's meta page checksum */
export function fnv64a(bytes: Uint8Array): bigint {
  // two 32-bit halves instead of a bigint per byte
  let hi = 0xcbf29ce4, lo = 0x84222325;
  for (const b of bytes) {
    lo = (lo ^ b) >>> 0;
    // multiply by the prime 0x100000001b3 = 2^40 + 0x1b3, modulo 2^64
    const loMul = lo * 0x1b3;
    const carry = Math.floor(loMul / 0x100000000);
    const newLo = loMul >>> 0;
    hi = (hi * 0x1b3 + carry + ((lo << 8) >>> 0)) >>> 0;
    lo = newLo;
  }
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** the page header: id, flags, count, overflow */
export function writePageHeader(page: DataView, id: bigint, flags: number, count: number, overflow: number): void {
  page.setBigUint64(0, id, true);
  page.setUint16(8, flags, true);
  page.setUint16(10, count, true);
  page.setUint32(12, overflow, true);
}

/** a meta page (page id txid % 2, as bbolt places them) with its checksum */
export function metaPage(m: Meta): Uint8Array {
  const bytes = new Uint8Array(m.pageSize);
  const v = new DataView(bytes.buffer);
  writePageHeader(v, m.txid % 2n, META_PAGE, 0, 0);
  const o = PAGE_HEADER;
  v.setUint32(o, MAGIC, true);
  v.setUint32(o + 4, VERSION, true);
  v.setUint32(o + 8, m.pageSize, true);
  v.setUint32(o + 12, m.flags, true);
  v.setBigUint64(o + 16, m.root, true);
  v.setBigUint64(o + 24, m.sequence, true);
  v.setBigUint64(o + 32, m.freelist, true);
  v.setBigUint64(o + 40, m.pgid, true);
  v.setBigUint64(o + 48, m.txid, true);
  v.setBigUint64(o + META_SUMMED, fnv64a(bytes.subarray(o, o + META_SUMMED)), true);
  return bytes;
}

/** Reads a meta page; says what is wrong with it instead when it is not a valid one. */
export function readMeta(page: Uint8Array): Meta | string {
  if (page.length < PAGE_HEADER + META_SUMMED + 8) return "too short for a meta page";
  const v = new DataView(page.buffer, page.byteOffset, page.byteLength);
  const o = PAGE_HEADER;
  if (v.getUint32(o, true) !== MAGIC) return "no bbolt magic number";
  const version = v.getUint32(o + 4, true);
  if (version !== VERSION) return `bbolt format version ${version}, expected ${VERSION}`;
  if (v.getBigUint64(o + META_SUMMED, true) !== fnv64a(page.subarray(o, o + META_SUMMED))) return "meta page checksum mismatch";
  return {
    pageSize: v.getUint32(o + 8, true),
    flags: v.getUint32(o + 12, true),
    root: v.getBigUint64(o + 16, true),
    sequence: v.getBigUint64(o + 24, true),
    freelist: v.getBigUint64(o + 32, true),
    pgid: v.getBigUint64(o + 40, true),
    txid: v.getBigUint64(o + 48, true),
  };
}

/** the value of a nested bucket's leaf element: its header, then its page when inline */
export function bucketValue(root: bigint, inlinePage?: Uint8Array): Uint8Array {
  const out = new Uint8Array(BUCKET_HEADER + (inlinePage?.length ?? 0));
  const v = new DataView(out.buffer);
  v.setBigUint64(0, root, true);
  v.setBigUint64(8, 0n, true); // sequence: etcd never uses NextSequence
  if (inlinePage) out.set(inlinePage, BUCKET_HEADER);
  return out;
}

export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}
