import type { ReadView } from "../mvcc/backend.ts";

/** the number of live keys a backend holds */
export async function keyCount(backend: ReadView): Promise<bigint> {
  const everything = { range: { start: new Uint8Array([0]), end: undefined }, revision: 0n, limit: 0, countOnly: true, keysOnly: true };
  return (await backend.range(everything)).count;
}
