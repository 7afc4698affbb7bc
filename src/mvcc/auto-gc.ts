// Storage-side garbage collection (HariKube's "Auto GC", --auto-gc): Kubernetes' garbage
// collector carried out inside the write transaction that starts it, for owners labelled
// skip-controller-manager-metadata-caching=true (the controller manager does not cache
// them, so its collector does not see them go). Dependents are found through the
// ownership entries of the selector index (OwnerLookup); every change is a write of the
// same database transaction, at a revision of its own after the change that started it
// (as the controller manager's collector would write it: a key may change twice), with its
// watch event. The client's answer carries the last revision.
//
// The rules are the garbage collector's (kubernetes.io/docs/concepts/architecture/garbage-collection):
// - background: once an owner's key is gone, each dependent with no other owner is deleted
//   as the apiserver deletes it (an object with finalizers only begins its deletion), and
//   its own dependents in turn;
// - orphan: an owner being deleted with the "orphan" finalizer has its reference removed
//   from every dependent, then the finalizer from itself (the last finalizer gone, it goes);
// - foreground: an owner being deleted with "foregroundDeletion" has its dependents deleted
//   (foreground again for a dependent that has dependents), and goes once no dependent
//   whose reference has blockOwnerDeletion is left — also in a later transaction, when
//   such a dependent's key goes;
// - a dependent with another owner that exists keeps that owner: only the reference to
//   the owner going is removed.
import type { OwnerLookup } from "./backend.ts";
import { keyString } from "./keyrange.ts";
import type { Apply } from "./kv.ts";
import { DELETE, type KeyValue } from "./types.ts";
import { decodeObject, editMeta, type MetaEdit, type ObjectView } from "../selectors/index.ts";
import { log } from "../util/log.ts";

/** the label (HariKube's) that puts an owner's dependents in strata's care, with the value "true" */
export const GC_LABEL = "skip-controller-manager-metadata-caching";
const ORPHAN = "orphan", FOREGROUND = "foregroundDeletion";
/**
 * Most changes one transaction's collection makes: a larger cascade would make one
 * transaction of unbounded size. What is left stays for the controller manager's collector
 * (the dependents, unlabelled, are in its cache).
 */
export const MAX_GC_CHANGES = 10_000;

/** what the collector did, for the metric */
export interface GcCounts {
  /** keys deleted */
  deleted: number;
  /** owner references removed from dependents (orphaned, or another owner remains) */
  referencesStripped: number;
  /** objects whose deletion began (deletionTimestamp set) but whose key stays: finalizers wait */
  deletionsStarted: number;
}

export class AutoGc {
  readonly counts: GcCounts = { deleted: 0, referencesStripped: 0, deletionsStarted: 0 };

  constructor(private readonly maxChanges = MAX_GC_CHANGES) {}

  /** Carries out the collection the transaction's changes so far start, as writes of the same transaction. */
  async collect(a: Apply): Promise<void> {
    const owners = a.tx.owners;
    if (!owners || a.events.length === 0) return;
    await new Collection(a, owners, this.counts, this.maxChanges).run();
  }
}

const LABEL_BYTES = Buffer.from(GC_LABEL);

/** whether the bytes hold the needle (a labelled object's value holds the label's key, in either encoding) */
function holds(value: Uint8Array, needle: Buffer): boolean {
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength).includes(needle);
}

function view(value: Uint8Array): ObjectView | undefined {
  const o = decodeObject(value);
  return o === "absent" ? undefined : o;
}

type Policy = "background" | "foreground" | "orphan";

/** thrown when a collection reached its most changes */
const FULL = Symbol("auto-gc: full");

/** One transaction's collection. */
class Collection {
  /** keys whose deletion this collection began or made: their dependents are its to handle too */
  private readonly cascade = new Set<string>();
  /** uids of objects whose key went in this transaction */
  private readonly gone = new Set<string>();
  /** uids of owners that may be waiting in foreground deletion for a dependent that went */
  private readonly waiting = new Set<string>();
  private changes = 0;
  private readonly now = new Date();

  constructor(
    private readonly a: Apply,
    private readonly owners: OwnerLookup,
    private readonly counts: GcCounts,
    private readonly maxChanges: number,
  ) {}

  async run(): Promise<void> {
    try {
      await this.steps();
    } catch (err) {
      if (err !== FULL) throw err;
      // every change made is a whole step of the collector's: what is left is consistent
      log("warn", "auto-gc: a transaction reached the most changes one collection makes; the rest is left to the controller manager's garbage collector", { changes: this.changes });
    }
  }

  /**
   * The client's changes, then the collection's own as they are appended; owners in
   * foreground deletion are looked at once the changes so far are handled (one look,
   * not one per dependent that went).
   */
  private async steps(): Promise<void> {
    for (let i = 0; ; i++) {
      if (i === this.a.events.length) {
        const owners = [...this.waiting];
        this.waiting.clear();
        for (const uid of owners) await this.waitingOwner(uid);
        if (i === this.a.events.length) return;
      }
      const e = this.a.events[i]!;
      if (e.type === DELETE) {
        if (e.prevKv) await this.deleted(e.prevKv);
      } else await this.written(e.kv);
    }
  }

  /** Counts a change made; at the bound, the collection ends. */
  private changed(counted?: keyof GcCounts): void {
    this.changes++;
    if (counted) this.counts[counted]++;
    if (this.changes >= this.maxChanges) throw FULL;
  }

  private ours(key: Uint8Array, o: ObjectView): boolean {
    return o.labels.get(GC_LABEL) === "true" || this.cascade.has(keyString(key));
  }

  /** A key went: its dependents lost that owner, and an owner in foreground deletion may go. */
  private async deleted(prev: KeyValue): Promise<void> {
    const o = view(prev.value);
    if (!o) return;
    const { uid, owners } = o.ownership;
    if (uid !== "") this.gone.add(uid);
    if (uid !== "" && this.ours(prev.key, o)) {
      for (const dep of await this.owners.dependents(uid)) await this.ownerGone(dep, uid);
    }
    for (const ref of owners) if (ref.blockOwnerDeletion) this.waiting.add(ref.uid);
  }

  /** An object was written: an owner being deleted with the orphan or foreground finalizer is handled. */
  private async written(kv: KeyValue): Promise<void> {
    // most writes are neither: a search of the bytes spares decoding them
    if (!holds(kv.value, LABEL_BYTES) && !this.cascade.has(keyString(kv.key))) return;
    const o = view(kv.value);
    if (!o || !o.ownership.deleting || o.ownership.uid === "" || !this.ours(kv.key, o)) return;
    const { uid, finalizers } = o.ownership;
    if (finalizers.includes(ORPHAN)) {
      for (const dep of await this.owners.dependents(uid)) await this.edit(dep, { dropOwners: new Set([uid]) }, "referencesStripped");
      await this.finalize(kv.key, ORPHAN);
    } else if (finalizers.includes(FOREGROUND)) {
      for (const dep of await this.owners.dependents(uid)) await this.dependentOfWaiting(dep, uid);
      this.waiting.add(uid);
    }
  }

  /** A dependent whose owner `uid` is gone. */
  private async ownerGone(dep: KeyValue, uid: string): Promise<void> {
    const d = view(dep.value);
    if (!d || d.ownership.deleting) return;
    const others = await this.otherOwners(d, uid);
    if (others === "unknown") return;
    if (others === "some") await this.edit(dep, { dropOwners: new Set([uid]) }, "referencesStripped");
    else await this.deleteObject(dep, d, "background");
  }

  /** A dependent of owner `uid`, which waits in foreground deletion. */
  private async dependentOfWaiting(dep: KeyValue, uid: string): Promise<void> {
    const d = view(dep.value);
    if (!d || d.ownership.deleting) return;
    const others = await this.otherOwners(d, uid);
    if (others === "unknown") return;
    if (others === "some") return void (await this.edit(dep, { dropOwners: new Set([uid]) }, "referencesStripped"));
    // a dependent with dependents of its own is deleted in the foreground too
    const hasDependents = d.ownership.uid !== "" && (await this.owners.dependents(d.ownership.uid)).length > 0;
    await this.deleteObject(dep, d, hasDependents ? "foreground" : "background");
  }

  /**
   * Whether the object's other owners exist: "some" do, "none" (it has no other), or
   * "unknown" when none is found here — it may live in another database: the object is
   * left to the controller manager's collector.
   */
  private async otherOwners(d: ObjectView, uid: string): Promise<"some" | "none" | "unknown"> {
    const others = [...new Set(d.ownership.owners.map((r) => r.uid).filter((u) => u !== uid))];
    if (others.length === 0) return "none";
    for (const u of others) if (!this.gone.has(u) && (await this.owners.withUid(u)).length > 0) return "some";
    return "unknown";
  }

  /** The apiserver's delete with a propagation policy; the object's own orphan or foreground finalizer decides it instead. */
  private async deleteObject(kv: KeyValue, d: ObjectView, policy: Policy): Promise<void> {
    // a pod's deletion is graceful (the kubelet stops its containers first): the
    // apiserver's, left to the controller manager's collector
    if (d.apiVersion === "v1" && d.kind === "Pod") return;
    const { finalizers } = d.ownership;
    if (finalizers.includes(ORPHAN)) policy = "orphan";
    else if (finalizers.includes(FOREGROUND)) policy = "foreground";
    this.cascade.add(keyString(kv.key));
    if (policy === "background" && finalizers.length === 0) {
      this.a.nextRevision();
      await this.a.deleteKvs([kv]);
      return this.changed("deleted");
    }
    const finalizer = policy === "orphan" ? ORPHAN : policy === "foreground" ? FOREGROUND : undefined;
    await this.edit(kv, { beginDeletion: { at: this.now, finalizer } }, "deletionsStarted");
  }

  /** An owner waiting in foreground deletion for a dependent that went: it may go now. */
  private async waitingOwner(uid: string): Promise<void> {
    if (this.gone.has(uid)) return;
    for (const owner of await this.owners.withUid(uid)) {
      const o = view(owner.value);
      if (o && this.ours(owner.key, o)) await this.foregroundDone(owner.key);
    }
  }

  /** An owner in foreground deletion goes once no dependent blocks it. */
  private async foregroundDone(key: Uint8Array): Promise<void> {
    const kv = await this.a.get(key);
    const o = kv && view(kv.value);
    if (!o || !o.ownership.deleting || !o.ownership.finalizers.includes(FOREGROUND)) return;
    const uid = o.ownership.uid;
    for (const dep of await this.owners.dependents(uid)) {
      if (view(dep.value)?.ownership.owners.some((r) => r.uid === uid && r.blockOwnerDeletion)) return;
    }
    await this.finalize(key, FOREGROUND);
  }

  /** Removes the collector's finalizer from an owner; without finalizers left, the apiserver deletes it. */
  private async finalize(key: Uint8Array, finalizer: string): Promise<void> {
    const kv = await this.a.get(key);
    const o = kv && view(kv.value);
    if (!kv || !o || !o.ownership.finalizers.includes(finalizer)) return;
    if (o.ownership.finalizers.every((f) => f === finalizer)) {
      this.a.nextRevision();
      await this.a.deleteKvs([kv]);
      this.changed("deleted");
    } else await this.edit(kv, { dropFinalizer: finalizer });
  }

  private async edit(kv: KeyValue, edit: MetaEdit, counted?: keyof GcCounts): Promise<void> {
    const value = editMeta(kv.value, edit);
    if (!value) {
      log("warn", "auto-gc: a stored object could not be edited; left to the controller manager's garbage collector", { key: keyString(kv.key) });
      return;
    }
    this.a.nextRevision();
    await this.a.replace(kv, value);
    this.changed(counted);
  }
}
