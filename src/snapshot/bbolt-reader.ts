// Reads a bbolt file page by page (never the whole file): the newer valid meta page, then
// any bucket's entries in key order by walking its tree depth first, so memory is one
// page per tree level. Every page id, page type and element bound is checked against the
// file: a damaged file fails with a BoltFormatError saying where, never a wrong read.
import type { FileHandle } from "node:fs/promises";
import { BRANCH_PAGE, BUCKET_HEADER, BUCKET_LEAF, ELEMENT, LEAF_PAGE, type Meta, PAGE_HEADER, readMeta } from "./bbolt-format.ts";

export class BoltFormatError extends Error {}

export interface BoltEntry {
  key: Uint8Array;
  value: Uint8Array;
  /** a nested bucket (value is its header) */
  bucket: boolean;
}

/** where a bucket's tree starts: a page of the file, or its one page inline in the parent */
export type BucketRef = { root: bigint; inline?: Uint8Array };

interface Page {
  id: bigint;
  flags: number;
  count: number;
  bytes: Uint8Array;
  view: DataView;
}

export class BoltReader {
  private constructor(
    private readonly file: FileHandle,
    /** bytes of the file that belong to the database (a snapshot's hash trailer excluded) */
    private readonly length: number,
    readonly meta: Meta,
  ) {}

  static async open(file: FileHandle, length: number): Promise<BoltReader> {
    const first = await readAt(file, 0, Math.min(length, 4096));
    const m0 = readMeta(first);
    if (typeof m0 === "string") {
      // the first meta may be torn: the second sits one page (of the size it records) later
      throw new BoltFormatError(`not a bbolt database (${m0})`);
    }
    const second = m0.pageSize >= 1024 && length >= 2 * m0.pageSize ? readMeta(await readAt(file, m0.pageSize, m0.pageSize)) : "missing";
    const meta = typeof second !== "string" && second.txid > m0.txid ? second : m0;
    if (meta.pageSize < 1024 || meta.pageSize > 65536 || (meta.pageSize & (meta.pageSize - 1)) !== 0) throw new BoltFormatError(`page size ${meta.pageSize} is not one bbolt uses`);
    if (BigInt(length) < meta.pgid * BigInt(meta.pageSize)) {
      throw new BoltFormatError(`truncated: the database needs ${meta.pgid} pages of ${meta.pageSize} bytes, the file holds ${length} bytes`);
    }
    return new BoltReader(file, length, meta);
  }

  /** the top-level bucket */
  get root(): BucketRef {
    return { root: this.meta.root };
  }

  private async page(id: bigint): Promise<Page> {
    if (id < 2n || id >= this.meta.pgid) throw new BoltFormatError(`page ${id} is outside the database (${this.meta.pgid} pages)`);
    const size = this.meta.pageSize;
    const offset = Number(id) * size;
    let bytes = await readAt(this.file, offset, size);
    let view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const overflow = view.getUint32(12, true);
    if (overflow > 0) {
      if (id + BigInt(overflow) >= this.meta.pgid) throw new BoltFormatError(`page ${id} overflows past the end of the database`);
      bytes = await readAt(this.file, offset, size * (overflow + 1));
      view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    }
    if (view.getBigUint64(0, true) !== id) throw new BoltFormatError(`page ${id} carries id ${view.getBigUint64(0, true)}`);
    return { id, flags: view.getUint16(8, true), count: view.getUint16(10, true), bytes, view };
  }

  private inlinePage(bytes: Uint8Array): Page {
    if (bytes.length < PAGE_HEADER) throw new BoltFormatError("inline bucket too short");
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return { id: 0n, flags: view.getUint16(8, true), count: view.getUint16(10, true), bytes, view };
  }

  /** a bucket element's value as a reference to the nested bucket's tree */
  static bucketRef(value: Uint8Array): BucketRef {
    if (value.length < BUCKET_HEADER) throw new BoltFormatError("bucket header too short");
    const root = new DataView(value.buffer, value.byteOffset, value.byteLength).getBigUint64(0, true);
    return root === 0n ? { root, inline: value.subarray(BUCKET_HEADER) } : { root };
  }

  /** every entry of the bucket, in key order */
  async *entries(ref: BucketRef): AsyncGenerator<BoltEntry> {
    yield* this.walk(ref.inline ? this.inlinePage(ref.inline) : await this.page(ref.root), 0);
  }

  private async *walk(p: Page, depth: number): AsyncGenerator<BoltEntry> {
    if (depth > 64) throw new BoltFormatError(`page ${p.id}: tree deeper than 64 levels (a cycle?)`);
    const where = p.id === 0n ? "inline bucket" : `page ${p.id}`;
    if (PAGE_HEADER + ELEMENT * p.count > p.bytes.length) throw new BoltFormatError(`${where}: ${p.count} elements do not fit`);
    if (p.flags === BRANCH_PAGE) {
      for (let i = 0; i < p.count; i++) {
        const child = p.view.getBigUint64(PAGE_HEADER + ELEMENT * i + 8, true);
        yield* this.walk(await this.page(child), depth + 1);
      }
      return;
    }
    if (p.flags !== LEAF_PAGE) throw new BoltFormatError(`${where}: flags ${p.flags} are neither a branch nor a leaf page`);
    for (let i = 0; i < p.count; i++) {
      const el = PAGE_HEADER + ELEMENT * i;
      const flags = p.view.getUint32(el, true);
      const start = el + p.view.getUint32(el + 4, true);
      const ksize = p.view.getUint32(el + 8, true);
      const vsize = p.view.getUint32(el + 12, true);
      if (start + ksize + vsize > p.bytes.length) throw new BoltFormatError(`${where}: element ${i} runs past the page`);
      yield {
        key: p.bytes.slice(start, start + ksize),
        value: p.bytes.slice(start + ksize, start + ksize + vsize),
        bucket: (flags & BUCKET_LEAF) !== 0,
      };
    }
  }

  /** the value stored under key in a bucket (small buckets: a scan), or undefined */
  async get(ref: BucketRef, key: Uint8Array): Promise<BoltEntry | undefined> {
    for await (const e of this.entries(ref)) if (equal(e.key, key)) return e;
    return undefined;
  }

  get size(): number {
    return this.length;
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function readAt(file: FileHandle, position: number, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await file.read(out, done, length - done, position + done);
    if (bytesRead === 0) throw new BoltFormatError(`truncated: the file ends at ${position + done} bytes, a page needs ${position + length}`);
    done += bytesRead;
  }
  return out;
}
