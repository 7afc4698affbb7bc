// Snapshots of the materialised data at a log sequence, in a JetStream object store
// beside the log. With one, the log can be purged up to its sequence: a process that
// starts loads the newest snapshot and reads only the log after it.
import { createReadStream, createWriteStream } from "node:fs";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { type ObjectStore, StorageType } from "nats";
import type { NatsLog } from "./log.ts";

/** snapshots kept: the newest and the one before (a process may be loading it) */
const KEEP = 2;

export class Snapshots {
  private constructor(private readonly store: ObjectStore) {}

  static async open(log: NatsLog, bucket: string, replicas: number): Promise<Snapshots> {
    return new Snapshots(await log.js.views.os(`strata-${bucket}-snapshots`, { storage: StorageType.File, replicas }));
  }

  /** the sequences of the stored snapshots, newest first */
  private async sequences(): Promise<number[]> {
    const seqs = (await this.store.list())
      .map((o) => /^snapshot-(\d+)$/.exec(o.name)?.[1])
      .filter((s): s is string => s !== undefined)
      .map(Number);
    return seqs.sort((a, b) => b - a);
  }

  /** the log sequence of the newest snapshot; 0 when there is none */
  async newest(): Promise<number> {
    return (await this.sequences())[0] ?? 0;
  }

  /** Writes the newest snapshot into file; resolves to its sequence, or undefined when there is none. */
  async load(file: string): Promise<number | undefined> {
    const seq = (await this.sequences())[0];
    if (seq === undefined) return undefined;
    const obj = await this.store.get(name(seq));
    if (!obj) throw new Error(`snapshot ${name(seq)} disappeared while it was being loaded`);
    await pipeline(Readable.fromWeb(obj.data as never), createWriteStream(file));
    const failed = await obj.error;
    if (failed) throw failed;
    return seq;
  }

  /** Stores file as the snapshot at seq and drops older ones beyond the newest KEEP. */
  async save(file: string, seq: number): Promise<void> {
    await this.store.put({ name: name(seq) }, Readable.toWeb(createReadStream(file)) as never);
    for (const old of (await this.sequences()).slice(KEEP)) await this.store.delete(name(old));
  }
}

function name(seq: number): string {
  return `snapshot-${String(seq).padStart(16, "0")}`;
}
