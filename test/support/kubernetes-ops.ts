// The transactions kube-apiserver's etcd3 storage sends (create if absent, update and
// delete guarded by mod_revision), each answering with the most it can: the failure
// branch reads the key and an update returns the previous value, so a differential
// comparison sees as much of the answer as possible.
import type { Etcd3 } from "etcd3";
import { attempt, b, prefixEnd } from "./differential.ts";

export const create = (c: Etcd3, key: string, value: string, lease = "0") =>
  attempt(c.kv.txn({
    compare: [{ key: b(key), target: "Mod", result: "Equal", mod_revision: "0" }],
    success: [{ request_put: { key: b(key), value: b(value), lease } }],
    failure: [{ request_range: { key: b(key) } }],
  } as never));

export const update = (c: Etcd3, key: string, value: string, modRevision: string) =>
  attempt(c.kv.txn({
    compare: [{ key: b(key), target: "Mod", result: "Equal", mod_revision: modRevision }],
    success: [{ request_put: { key: b(key), value: b(value), prev_kv: true } }],
    failure: [{ request_range: { key: b(key) } }],
  } as never));

export const remove = (c: Etcd3, key: string, modRevision: string) =>
  attempt(c.kv.txn({
    compare: [{ key: b(key), target: "Mod", result: "Equal", mod_revision: modRevision }],
    success: [{ request_delete_range: { key: b(key), prev_kv: true } }],
    failure: [{ request_range: { key: b(key) } }],
  } as never));

export const modRevisionOf = async (c: Etcd3, key: string): Promise<string> =>
  (await c.kv.range({ key: b(key) } as never)).kvs[0]!.mod_revision;

/**
 * Lists prefix in pages of `limit` at the first page's revision, as kube-apiserver pages a
 * list, running `between(n)` after page n (writes there must not show in later pages);
 * ends with a count of the prefix now. Returns every answer, for comparison.
 */
export async function pagedList(c: Etcd3, prefix: string, limit: number, between: (n: number) => Promise<unknown>): Promise<unknown[]> {
  const answers: unknown[] = [];
  let key = b(prefix);
  let revision = "0";
  for (let n = 0; ; n++) {
    const page = await c.kv.range({ key, range_end: prefixEnd(prefix), limit, revision } as never);
    answers.push(page);
    if (revision === "0") revision = page.header.revision;
    await between(n);
    if (!page.more) break;
    key = Buffer.concat([page.kvs.at(-1)!.key, Buffer.from([0])]);
  }
  answers.push(await attempt(c.kv.range({ key: b(prefix), range_end: prefixEnd(prefix), count_only: true } as never)));
  return answers;
}
