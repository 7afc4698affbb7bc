// Key ranges as the routing rules see them: a single key routes by itself; any other
// range by the longest prefix all its keys share.
import { keyString } from "../mvcc/keyrange.ts";
import type { KeyRange } from "../mvcc/types.ts";

/**
 * The longest prefix every key of the range starts with. Besides the start and end's
 * common prefix, this sees that a page continuing a prefix list, [/registry/pods/x\0,
 * /registry/pods0), stays within /registry/pods/.
 */
export function rangePrefix(r: KeyRange): string {
  if (r.end === undefined) return "";
  const s = r.start, e = r.end;
  let c = 0;
  while (c < s.length && c < e.length && s[c] === e[c]) c++;
  // a longer prefix P of the start covers the range when the end is P's own range end:
  // the common part, then the start's next byte plus one
  if (c < s.length && e.length === c + 1 && e[c] === s[c]! + 1) {
    let n = c + 1;
    while (n < s.length && s[n] === 0xff) n++;
    return keyString(s.subarray(0, n));
  }
  return keyString(s.subarray(0, c));
}

