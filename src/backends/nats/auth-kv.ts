// etcd's auth store on NATS: one entry of a JetStream key-value bucket beside the log
// (strata-BUCKET-auth), shared by every process on the bucket. A change is an update
// that names the entry's KV revision, so of two processes changing it at once one wins
// and the other reads again; the auth revision itself travels in the entry's value.
import { type KV, StorageType } from "nats";
import type { AuthRecord } from "../../mvcc/backend.ts";
import type { Rev } from "../../mvcc/types.ts";
import type { NatsLog } from "./log.ts";

const ENTRY = "state";
/** JetStream's error code for an update whose expected KV revision is no longer the entry's */
const WRONG_LAST_SEQUENCE = 10071;

export class AuthKv {
  /** the KV revision of the entry each auth revision was read from: what an update names */
  private readonly sequences = new Map<Rev, number>();

  private constructor(private readonly kv: KV) {}

  static async open(log: NatsLog, bucket: string, replicas: number): Promise<AuthKv> {
    return new AuthKv(await log.js.views.kv(`strata-${bucket}-auth`, { storage: StorageType.File, replicas, history: 1 }));
  }

  async read(): Promise<AuthRecord | undefined> {
    const e = await this.kv.get(ENTRY);
    if (!e || e.operation !== "PUT" || e.value.length < 8) return undefined;
    const revision = Buffer.from(e.value).readBigUInt64BE(0);
    this.sequences.set(revision, e.revision);
    return { revision, data: e.value.slice(8) };
  }

  async revision(): Promise<Rev> {
    return (await this.read())?.revision ?? 0n;
  }

  async write(expected: Rev, next: AuthRecord): Promise<boolean> {
    const value = new Uint8Array(8 + next.data.length);
    Buffer.from(value.buffer).writeBigUInt64BE(next.revision, 0);
    value.set(next.data, 8);
    try {
      if (expected === 0n) await this.kv.create(ENTRY, value);
      else {
        const seq = this.sequences.get(expected) ?? (await this.read(), this.sequences.get(expected));
        if (seq === undefined) return false;
        await this.kv.update(ENTRY, value, seq);
      }
      return true;
    } catch (err) {
      const code = (err as { api_error?: { err_code?: number } }).api_error?.err_code;
      // create() of an entry that exists fails the same way
      if (code === WRONG_LAST_SEQUENCE || /wrong last sequence|key exists/i.test((err as Error).message)) return false;
      throw err;
    }
  }
}
