// A write batch larger than one NATS message (the server's max_payload, 1 MiB by
// default; etcd accepts 1.5 MiB requests and a batch holds many) goes into the log as a
// run of consecutive chunks. A run counts only when complete and uninterrupted: a writer
// that dies half way, or loses the race for the next sequence, leaves an incomplete run
// that every reader drops the same way, so all processes see the same batches.

/** headers of a chunk: which batch, and its place in it (1-based) */
export const BATCH_HEADER = "Strata-Batch";
export const CHUNK_HEADER = "Strata-Chunk";

export interface Chunk {
  data: Uint8Array;
  /** undefined for a batch that fits in one message */
  headers?: Record<string, string>;
}

/** Splits a batch into messages of at most `max` bytes. */
export function split(bytes: Uint8Array, max: number, token: string): Chunk[] {
  if (bytes.length <= max) return [{ data: bytes }];
  const n = Math.ceil(bytes.length / max);
  return Array.from({ length: n }, (_, i) => ({
    data: bytes.subarray(i * max, (i + 1) * max),
    headers: { [BATCH_HEADER]: token, [CHUNK_HEADER]: `${i + 1}/${n}` },
  }));
}

/** Reassembles batches from the log's messages, fed in stream order. */
export class Assembler {
  private partial: { token: string; total: number; parts: Uint8Array[]; at: number } | undefined;

  /** Takes the next message; returns the batch it completes, if any. */
  add(data: Uint8Array, header: (name: string) => string | undefined, now = Date.now()): Uint8Array | undefined {
    const token = header(BATCH_HEADER);
    const place = /^(\d+)\/(\d+)$/.exec(header(CHUNK_HEADER) ?? "");
    if (token === undefined || !place) {
      this.partial = undefined; // an unfinished run before this message is abandoned
      return data;
    }
    const i = Number(place[1]), total = Number(place[2]);
    const p = this.partial;
    if (i === 1) this.partial = { token, total, parts: [data], at: now };
    else if (p && p.token === token && p.parts.length === i - 1) {
      p.parts.push(data);
      p.at = now;
    } else {
      this.partial = undefined; // the rest of a run whose start was abandoned
      return undefined;
    }
    const done = this.partial;
    if (!done || done.parts.length < done.total) return undefined;
    this.partial = undefined;
    const out = new Uint8Array(done.parts.reduce((n, b) => n + b.length, 0));
    let at = 0;
    for (const b of done.parts) {
      out.set(b, at);
      at += b.length;
    }
    return out;
  }

  /** when the last chunk of an unfinished run arrived (undefined: none pending) */
  get pendingSince(): number | undefined {
    return this.partial?.at;
  }

  /** a message appended by this process ended any unfinished run */
  reset(): void {
    this.partial = undefined;
  }
}
