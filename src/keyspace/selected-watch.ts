// Watchers with label/field selectors (HariKube's storage-side filtering), over any
// Keyspace: the watcher is placed without its selectors but with previous values, and its
// events are filtered on the way to the client. An event is delivered when its new object
// or its previous one is kept by the selection (so the apiserver can turn "left the
// selection" into DELETED), once and in order, as the keyspace delivers them; the previous
// value it was placed with for this reaches the client only if the client asked for it.
import type { WatchCreateRequest } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { DELETE, type Event, PUT } from "../mvcc/types.ts";
import { type CustomFieldLookup, type Selection, selects } from "../selectors/index.ts";
import type { WatchResponseOut } from "./contract.ts";
import { withoutPrevKv } from "./watch-hub.ts";

export interface SelectedWatcher {
  selection: Selection;
  /** what the client asked for */
  prevKv: boolean;
  fragment: boolean;
  /** custom resources' fields from their CRDs, while known; without them they are unknown (kept) */
  custom?: () => CustomFieldLookup | undefined;
}

/**
 * The request a keyspace gets for a selector watcher: the selectors stay here; every event
 * carries its previous value; fragments are made by the client's stream after filtering
 * (an upstream's fragments could be filtered to nothing).
 */
export function placedRequest(c: WatchCreateRequest): WatchCreateRequest {
  return { ...c, prevKv: true, fragment: false, labelSelector: "", fieldSelector: "" };
}

/** The response as the client gets it, or undefined when nothing in it is selected. */
export function selectedResponse(w: SelectedWatcher, resp: WatchResponseOut): WatchResponseOut | undefined {
  if (resp.events.length === 0) return resp;
  const events: Event[] = [];
  const custom = w.custom?.();
  for (const ev of resp.events) {
    const now = ev.type === PUT && selects(w.selection, ev.kv.value, custom);
    const before = ev.prevKv !== undefined && selects(w.selection, ev.prevKv.value, custom);
    // a delete whose previous value is gone (compacted) cannot be told: kept
    const unknown = ev.type === DELETE && ev.prevKv === undefined;
    if (now || before || unknown) events.push(w.prevKv || !ev.prevKv ? ev : withoutPrevKv(ev));
  }
  // a response that was only events, none selected, says nothing to this watcher
  if (events.length === 0 && !resp.created && !resp.canceled) return undefined;
  return { ...resp, events };
}
