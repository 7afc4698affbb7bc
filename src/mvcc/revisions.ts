// etcd's rules for reading at a revision.
import { errors } from "./errors.ts";
import type { Rev } from "./types.ts";

/** The revision to read at: 0 means the current one; errors as etcd's mvcc. */
export function checkRevision(requested: Rev, current: Rev, compact: Rev): Rev {
  if (requested > current) throw errors.futureRevision();
  const at = requested <= 0n ? current : requested;
  if (at < compact) throw errors.compacted();
  return at;
}
