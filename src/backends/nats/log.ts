// The replicated log on JetStream: one stream whose messages are committed write
// batches. Appending is compare-and-swap on the stream's last sequence (the
// Nats-Expected-Last-Sequence header), so exactly one of several strata processes
// extends the log from a given point; the others learn they are behind and retry.
import {
  connect,
  DeliverPolicy,
  headers as natsHeaders,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type NatsConnection,
  NatsError,
  StorageType,
} from "nats";
import { hostname } from "node:os";
import { type Chunk, split } from "./chunks.ts";
import type { NatsUrl } from "./url.ts";

/** The log moved past the sequence an append expected: catch up to `last` and retry. */
export class LogMoved extends Error {
  constructor(readonly last: number) {
    super(`the log moved on to sequence ${last}`);
  }
}

/** JetStream's error code for a failed Nats-Expected-Last-Sequence check */
const WRONG_LAST_SEQUENCE = 10071;
const STREAM_NOT_FOUND = 10059;
/**
 * How long an append keeps retrying a message whose answer was lost (retries are
 * deduplicated). Short: this process's writes wait behind it, and when it gives up the
 * batch is answered "may have been applied" (the log, read back, has the last word).
 */
const APPEND_RETRY_MS = 2_000;
/**
 * How long one JetStream request waits for its answer (the client's default is 5 s). A
 * request sent while the server is away is lost with the connection, and a retry after
 * the server is back gets through at once; publishes are retried, deduplicated.
 */
const REQUEST_TIMEOUT_MS = 1_000;
/** how long the server keeps the consumer of a process that stopped reading */
const CONSUMER_INACTIVE_MS = 60_000;
/** room left in each message for the headers */
const HEADER_ROOM = 1024;

export class NatsLog {
  private probe: Coalesced<number>;
  /** this process's consumers are named after it, so `nats consumer ls` tells whose each is */
  private readonly consumerPrefix = `strata_${hostname().replace(/[^A-Za-z0-9_-]/g, "_")}_${process.pid}_`;

  private constructor(
    readonly nc: NatsConnection,
    readonly js: JetStreamClient,
    readonly jsm: JetStreamManager,
    readonly stream: string,
    readonly subject: string,
    /** when the stream was created: identifies this keyspace */
    readonly created: string,
  ) {
    this.probe = new Coalesced(async () => (await this.jsm.streams.info(this.stream)).state.last_seq);
  }

  /** Connects and creates the bucket's stream if it does not exist yet. */
  static async open(url: NatsUrl): Promise<NatsLog> {
    const nc = await connect({
      servers: url.servers,
      user: url.user,
      pass: url.pass,
      token: url.token,
      tls: url.tls,
      name: "strata",
      // keep trying while NATS is away; requests fail meanwhile and strata says so
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      timeout: 5000,
    });
    try {
      const jsm = await nc.jetstreamManager({ timeout: REQUEST_TIMEOUT_MS });
      const stream = `strata-${url.bucket}`;
      const subject = `strata.${url.bucket}.log`;
      let info;
      try {
        info = await jsm.streams.info(stream);
      } catch (err) {
        if (!(err instanceof NatsError && err.api_error?.err_code === STREAM_NOT_FOUND)) throw err;
        // two processes creating it at once is fine: the same config is accepted twice
        info = await jsm.streams.add({
          name: stream,
          subjects: [subject],
          storage: StorageType.File,
          num_replicas: url.replicas,
          deny_delete: true,
        });
      }
      return new NatsLog(nc, nc.jetstream({ timeout: REQUEST_TIMEOUT_MS }), jsm, stream, subject, info.created);
    } catch (err) {
      await nc.close();
      throw err;
    }
  }

  /** the largest message the server takes, less room for headers */
  get maxChunk(): number {
    return (this.nc.info?.max_payload ?? 1024 * 1024) - HEADER_ROOM;
  }

  /**
   * Appends a batch after sequence `expected`; resolves to the sequence of its last
   * message. Throws LogMoved when another process appended first.
   */
  async append(batch: Uint8Array, expected: number, token: string): Promise<number> {
    const chunks = split(batch, this.maxChunk, token);
    for (const [i, chunk] of chunks.entries()) await this.publish(chunk, expected + i, `${token}.${i}`);
    return expected + chunks.length;
  }

  private async publish(chunk: Chunk, expected: number, id: string): Promise<void> {
    const h = natsHeaders();
    for (const [k, v] of Object.entries(chunk.headers ?? {})) h.set(k, v);
    const deadline = Date.now() + APPEND_RETRY_MS;
    for (;;) {
      let ack;
      try {
        // the message ID makes a retry of a message that did land a duplicate, not a second copy
        ack = await this.js.publish(this.subject, chunk.data, { msgID: id, expect: { lastSequence: expected }, headers: h });
      } catch (err) {
        if (err instanceof NatsError && err.api_error?.err_code === WRONG_LAST_SEQUENCE) {
          throw new LogMoved(Number(/(\d+)\s*$/.exec(err.api_error.description)?.[1] ?? expected + 1));
        }
        if (Date.now() >= deadline || (err instanceof NatsError && err.api_error)) throw err;
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      if (ack.seq !== expected + 1) throw new Error(`stream ${this.stream} stored the message at ${ack.seq}, expected ${expected + 1}`);
      return;
    }
  }

  /** the sequences of the stream's first and last messages */
  async state(): Promise<{ first: number; last: number }> {
    const { state } = await this.jsm.streams.info(this.stream);
    return { first: state.first_seq, last: state.last_seq };
  }

  /** The stream's last sequence, asked after this call began (concurrent callers share one request). */
  lastSeq(): Promise<number> {
    return this.probe.next();
  }

  /**
   * Delivers every message from sequence `from` on, in order, to onMessage (an ordered
   * consumer: it re-creates itself after a reconnect and resumes where it stopped).
   * Returns a function that stops it.
   */
  async follow(from: number, onMessage: (m: JsMsg) => void): Promise<() => void> {
    const consumer = await this.js.consumers.get(this.stream, {
      filterSubjects: this.subject,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: from,
      name_prefix: this.consumerPrefix,
      // a process gone this long no longer holds back purging (it reloads if it returns)
      inactive_threshold: CONSUMER_INACTIVE_MS,
    });
    const messages = await consumer.consume({ callback: onMessage });
    return () => void messages.close().catch(() => {});
  }

  /** The lowest sequence every other live process has read past (each follows with its own consumer). */
  async readByOthers(): Promise<number> {
    let low = Number.MAX_SAFE_INTEGER;
    for (const c of await this.jsm.consumers.list(this.stream).next()) {
      if (!c.name.startsWith(this.consumerPrefix)) low = Math.min(low, c.delivered.stream_seq);
    }
    return low;
  }

  /** Removes the messages at or below seq. */
  async purgeThrough(seq: number): Promise<void> {
    await this.jsm.streams.purge(this.stream, { seq: seq + 1 });
  }

  async close(): Promise<void> {
    await this.nc.close();
  }
}

/**
 * Runs fn for callers that may share an answer only if it was asked for after they
 * called: a caller arriving while a request is out waits for the next one, which then
 * serves everyone who arrived meanwhile.
 */
class Coalesced<T> {
  private running: Promise<T> | undefined;
  private queued: Promise<T> | undefined;

  constructor(private readonly fn: () => Promise<T>) {}

  next(): Promise<T> {
    if (this.queued) return this.queued;
    if (!this.running) return this.start();
    const after = this.running.catch(() => undefined).then(() => {
      this.queued = undefined;
      return this.start();
    });
    this.queued = after;
    return after;
  }

  private start(): Promise<T> {
    const p = this.fn().finally(() => {
      if (this.running === p) this.running = undefined;
    });
    this.running = p;
    return p;
  }
}
