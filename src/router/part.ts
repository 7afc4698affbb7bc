// One database under the router: its backend, the store on it, and what the router keeps
// about it (its storage quota, whether it reported damage).
import type { Backend, StorageFault } from "../mvcc/backend.ts";
import { backendUnavailable, EtcdError } from "../mvcc/errors.ts";
import type { SpaceQuota } from "../mvcc/quota.ts";
import type { Store } from "../mvcc/store.ts";

export interface Part {
  name: string;
  index: number;
  backend: Backend;
  store: Store;
  /** the storage quota, when one applies */
  quota?: SpaceQuota;
  /** set once the database reported damaged data: its writes are refused from then on */
  damage?: StorageFault;
}

/** Calls p's database: etcd's own errors pass as they are, any other failure is its unavailability, naming it. */
export async function callPart<T>(p: Part, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof EtcdError) throw err;
    throw backendUnavailable(`${p.name} (${p.backend.name})`, err);
  }
}
