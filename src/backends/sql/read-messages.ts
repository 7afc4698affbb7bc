// What the event loop and a read thread (read-pool.ts, read-worker.ts) tell each other.
import type { EventsOptions } from "../../mvcc/backend.ts";
import type { RangeQuery, Rev } from "../../mvcc/types.ts";

/** the database a thread reads: a SQLite file, or a database server's URL */
export type ReadTarget = { sqlite: string } | { postgres: string } | { mysql: string };

/** one at a time: a thread gets its next request once it answered the last */
export type ReadRequest =
  | { open: ReadTarget; name: string }
  | { range: RangeQuery }
  | { events: { from: Rev; to: Rev; limit: number; opts: EventsOptions } }
  | { close: true };

/** what a read failed with: enough to throw the same error on the event loop */
export interface ReadFailure {
  name: string;
  message: string;
  /** an EtcdError's gRPC code, or SQLite's error code */
  code: string | undefined;
  /** a fault the thread's backend recognised (disk full, damage): thrown again as one */
  fault?: { kind: "full" | "corrupt"; backend: string; detail: string };
}

export type ReadReply = { result: unknown } | { error: ReadFailure };
