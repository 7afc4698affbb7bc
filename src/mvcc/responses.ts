// The answers to KV requests in mvcc's shapes: what a keyspace returns and the api layer
// puts etcd's response header on (the header here carries only the revision).
import type { KeyValue, Rev } from "./types.ts";

export interface Header {
  revision: Rev;
}
export interface RangeOut {
  header: Header;
  kvs: KeyValue[];
  /** the kvs field already encoded by the read (then `kvs` is empty); only when asked for */
  encodedKvs?: Uint8Array;
  more: boolean;
  count: bigint;
}
export interface PutOut {
  header: Header;
  prevKv?: KeyValue;
}
export interface DeleteOut {
  header: Header;
  deleted: bigint;
  prevKvs: KeyValue[];
}
export type ResponseOpOut =
  | { response: { case: "responseRange"; value: RangeOut } }
  | { response: { case: "responsePut"; value: PutOut } }
  | { response: { case: "responseDeleteRange"; value: DeleteOut } }
  | { response: { case: "responseTxn"; value: TxnOut } };
export interface TxnOut {
  header: Header;
  succeeded: boolean;
  responses: ResponseOpOut[];
}
