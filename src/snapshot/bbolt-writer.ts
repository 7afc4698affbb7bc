// Writes a bbolt file in one pass with bounded memory. Pages are numbered in the order
// they are written: a bucket's leaf pages as its keys arrive (keys must come in order),
// then its branch levels bottom-up, then the buckets that hold it, then the freelist.
// Only the page being filled and one (first key, page id) per written page of the open
// bucket's current level stay in memory (a few MiB for a GiB of data).
//
// The two meta pages come first in the file but name pages written last (the root
// bucket, the freelist, the page count), so they are written at the very end, in place:
// the output is a file (bbolt's own pages cannot be streamed to a client as they are
// made). The file is a temp file when serving Maintenance.Snapshot.
import type { FileHandle } from "node:fs/promises";
import {
  BRANCH_PAGE,
  BUCKET_LEAF,
  bucketValue,
  compareBytes,
  ELEMENT,
  FREELIST_PAGE,
  LEAF_PAGE,
  MAX_INLINE_BUCKET,
  metaPage,
  PAGE_HEADER,
  PAGE_SIZE,
  writePageHeader,
} from "./bbolt-format.ts";

/** bytes gathered before one write to the file */
const WRITE_BATCH = 1 << 20;

interface Element {
  key: Uint8Array;
  value: Uint8Array;
  flags: number;
}

/** pages appended in page id order, batched into large writes */
class PageSink {
  private next = 0n;
  private batch: Uint8Array[] = [];
  private batched = 0;
  written = 0;

  constructor(private readonly file: FileHandle) {}

  /** the id the next page gets */
  get nextId(): bigint {
    return this.next;
  }

  /** Appends a page (its length a multiple of PAGE_SIZE); returns its id. */
  async append(page: Uint8Array): Promise<bigint> {
    const id = this.next;
    this.next += BigInt(page.length / PAGE_SIZE);
    this.batch.push(page);
    this.batched += page.length;
    if (this.batched >= WRITE_BATCH) await this.flush();
    return id;
  }

  async flush(): Promise<void> {
    if (this.batched === 0) return;
    const all = new Uint8Array(this.batched);
    let o = 0;
    for (const p of this.batch) {
      all.set(p, o);
      o += p.length;
    }
    await writeFully(this.file, all, this.written);
    this.written += all.length;
    this.batch = [];
    this.batched = 0;
  }

  async writeAt(page: Uint8Array, id: bigint): Promise<void> {
    await writeFully(this.file, page, Number(id) * PAGE_SIZE);
  }
}

async function writeFully(file: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await file.write(bytes, done, bytes.length - done, position + done);
    done += bytesWritten;
  }
}

/** Lays elements out as one page (leaf or branch), padded to whole pages unless `inline`. */
function buildPage(flags: number, elements: Element[], children: bigint[] | undefined, inline: boolean): Uint8Array {
  const data = elements.reduce((n, e) => n + e.key.length + (children ? 0 : e.value.length), 0);
  const size = PAGE_HEADER + ELEMENT * elements.length + data;
  const pages = Math.max(1, Math.ceil(size / PAGE_SIZE));
  const bytes = new Uint8Array(inline ? size : pages * PAGE_SIZE);
  const v = new DataView(bytes.buffer);
  // the id is set when the page is placed (inline pages keep 0, as bbolt writes them)
  writePageHeader(v, 0n, flags, elements.length, inline ? 0 : pages - 1);
  let at = PAGE_HEADER + ELEMENT * elements.length;
  elements.forEach((e, i) => {
    const el = PAGE_HEADER + ELEMENT * i;
    if (children) {
      // branch element: pos, ksize, child page id
      v.setUint32(el, at - el, true);
      v.setUint32(el + 4, e.key.length, true);
      v.setBigUint64(el + 8, children[i]!, true);
    } else {
      // leaf element: flags, pos, ksize, vsize (pos counts from the element itself)
      v.setUint32(el, e.flags, true);
      v.setUint32(el + 4, at - el, true);
      v.setUint32(el + 8, e.key.length, true);
      v.setUint32(el + 12, e.value.length, true);
    }
    bytes.set(e.key, at);
    at += e.key.length;
    if (!children) {
      bytes.set(e.value, at);
      at += e.value.length;
    }
  });
  return bytes;
}

function pageSizeOf(elements: number, data: number): number {
  return PAGE_HEADER + ELEMENT * elements + data;
}

/**
 * One bucket being written: put() its entries in key order, then finish() for the value
 * its parent stores under the bucket's name. A bucket that never filled a page and is
 * small ends up inline in its parent, as bbolt keeps small buckets.
 */
export class BucketWriter {
  private page: Element[] = [];
  private pageData = 0;
  /** (first key, page id) of every leaf page written */
  private leaves: Array<{ key: Uint8Array; id: bigint }> = [];
  private last: Uint8Array | undefined;
  entries = 0;

  constructor(private readonly sink: PageSink) {}

  async put(key: Uint8Array, value: Uint8Array, flags = 0): Promise<void> {
    if (this.last && compareBytes(this.last, key) >= 0) throw new Error("bbolt writer: keys must be put in increasing order");
    this.last = key;
    this.entries++;
    const add = key.length + value.length;
    // a full page goes out before the element that would not fit; a lone large element
    // gets a page of its own that overflows into the next ones
    if (this.page.length > 0 && pageSizeOf(this.page.length + 1, this.pageData + add) > PAGE_SIZE) await this.flushLeaf();
    this.page.push({ key, value, flags });
    this.pageData += add;
  }

  /** a nested bucket, by the value its own writer finished with */
  putBucket(name: Uint8Array, value: Uint8Array): Promise<void> {
    return this.put(name, value, BUCKET_LEAF);
  }

  private async flushLeaf(): Promise<void> {
    const page = buildPage(LEAF_PAGE, this.page, undefined, false);
    const id = this.sink.nextId;
    new DataView(page.buffer).setBigUint64(0, id, true);
    await this.sink.append(page);
    this.leaves.push({ key: this.page[0]!.key, id });
    this.page = [];
    this.pageData = 0;
  }

  /**
   * Writes what is left and the branch levels; returns the value the parent stores (the
   * bucket header, with the page inline when small) and the root page id.
   */
  async finish(allowInline = true): Promise<{ value: Uint8Array; root: bigint }> {
    const hasNested = this.page.some((e) => e.flags & BUCKET_LEAF);
    if (allowInline && this.leaves.length === 0 && !hasNested && pageSizeOf(this.page.length, this.pageData) <= MAX_INLINE_BUCKET) {
      return { value: bucketValue(0n, buildPage(LEAF_PAGE, this.page, undefined, true)), root: 0n };
    }
    if (this.page.length > 0 || this.leaves.length === 0) await this.flushLeaf();
    let level = this.leaves;
    this.leaves = [];
    while (level.length > 1) level = await this.branchLevel(level);
    return { value: bucketValue(level[0]!.id), root: level[0]!.id };
  }

  /** one level of branch pages over the pages of the level below */
  private async branchLevel(below: Array<{ key: Uint8Array; id: bigint }>): Promise<Array<{ key: Uint8Array; id: bigint }>> {
    const out: Array<{ key: Uint8Array; id: bigint }> = [];
    let start = 0, data = 0;
    const emit = async (end: number) => {
      const slice = below.slice(start, end);
      const page = buildPage(BRANCH_PAGE, slice.map((c) => ({ key: c.key, value: EMPTY, flags: 0 })), slice.map((c) => c.id), false);
      const id = this.sink.nextId;
      new DataView(page.buffer).setBigUint64(0, id, true);
      await this.sink.append(page);
      out.push({ key: slice[0]!.key, id });
      start = end;
      data = 0;
    };
    for (let i = 0; i < below.length; i++) {
      const k = below[i]!.key.length;
      if (i > start && pageSizeOf(i - start + 1, data + k) > PAGE_SIZE) await emit(i);
      data += k;
    }
    await emit(below.length);
    return out;
  }
}

const EMPTY = new Uint8Array(0);

/**
 * A bbolt file being written: bucket() gives a writer for a top-level or nested bucket
 * (one open at a time, since pages are numbered as they are written); close() with the
 * top-level buckets' values writes the root, the freelist and the meta pages.
 */
export class BoltWriter {
  private readonly sink: PageSink;

  private constructor(private readonly file: FileHandle) {
    this.sink = new PageSink(file);
  }

  static async create(file: FileHandle): Promise<BoltWriter> {
    const w = new BoltWriter(file);
    // pages 0 and 1, the meta pages, are written last
    await w.sink.append(new Uint8Array(2 * PAGE_SIZE));
    return w;
  }

  bucket(): BucketWriter {
    return new BucketWriter(this.sink);
  }

  /** bytes written so far */
  get size(): number {
    return Number(this.sink.nextId) * PAGE_SIZE;
  }

  /** Writes the root bucket holding `buckets` (name → value from finish()), the freelist and the meta pages; returns the file size. */
  async close(buckets: Array<{ name: Uint8Array; value: Uint8Array }>): Promise<number> {
    const root = this.bucket();
    for (const b of [...buckets].sort((x, y) => compareBytes(x.name, y.name))) await root.putBucket(b.name, b.value);
    const { root: rootId } = await root.finish(false);
    // an empty freelist: every page is in use
    const freelist = new Uint8Array(PAGE_SIZE);
    const freelistId = this.sink.nextId;
    writePageHeader(new DataView(freelist.buffer), freelistId, FREELIST_PAGE, 0, 0);
    await this.sink.append(freelist);
    await this.sink.flush();
    const pages = this.sink.nextId;
    // both metas name the same tree; the second is the newer one
    for (const txid of [2n, 3n]) {
      const meta = metaPage({ pageSize: PAGE_SIZE, flags: 0, root: rootId, sequence: 0n, freelist: freelistId, pgid: pages, txid });
      await this.sink.writeAt(meta, txid % 2n);
    }
    await this.file.sync();
    return Number(pages) * PAGE_SIZE;
  }
}
