// The watched key ranges, indexed so that finding the ranges holding a key costs
// O(log n + matches) rather than a look at every range, as etcd's watcher groups do: ranges
// of a single key in a map, the others in an interval tree (a treap ordered by start,
// each node knowing the largest end below it). Keys are held as latin1 strings, one
// character per byte, so string order is byte order.
import { isSingleKey, keyString, rangeString } from "../mvcc/keyrange.ts";
import type { KeyRange } from "../mvcc/types.ts";

/** greater than every key: the end of a range open to the end of the keyspace */
const END_OF_KEYSPACE = "\uffff";

interface Node<T> {
  start: string;
  end: string;
  /** orders ranges with equal starts */
  seq: number;
  /** heap order of the treap, random so that it stays balanced whatever the order of adds */
  priority: number;
  /** the largest end in this subtree */
  maxEnd: string;
  left: Node<T> | undefined;
  right: Node<T> | undefined;
  value: T;
}

export class WatchedRanges<T> {
  private readonly singles = new Map<string, T>();
  private readonly nodes = new Map<string, Node<T>>();
  private root: Node<T> | undefined;
  private seq = 0;

  get size(): number {
    return this.singles.size + this.nodes.size;
  }

  /** Adds a range, or replaces the value of one already here. */
  set(range: KeyRange, value: T): void {
    if (isSingleKey(range)) {
      this.singles.set(keyString(range.start), value);
      return;
    }
    const id = rangeString(range);
    const held = this.nodes.get(id);
    if (held) {
      held.value = value;
      return;
    }
    const end = range.end === undefined ? END_OF_KEYSPACE : keyString(range.end);
    const node: Node<T> = { start: keyString(range.start), end, seq: this.seq++, priority: Math.random(), maxEnd: end, left: undefined, right: undefined, value };
    this.nodes.set(id, node);
    this.root = insert(this.root, node);
  }

  delete(range: KeyRange): void {
    if (isSingleKey(range)) {
      this.singles.delete(keyString(range.start));
      return;
    }
    const id = rangeString(range);
    const node = this.nodes.get(id);
    if (!node) return;
    this.nodes.delete(id);
    this.root = remove(this.root, node);
  }

  /** Calls visit with the value of every range holding key (given as keyString gives it). */
  holding(key: string, visit: (value: T) => void): void {
    const single = this.singles.get(key);
    if (single !== undefined) visit(single);
    stab(this.root, key, visit);
  }
}

function before<T>(a: Node<T>, b: Node<T>): boolean {
  return a.start < b.start || (a.start === b.start && a.seq < b.seq);
}

function update<T>(n: Node<T>): Node<T> {
  let max = n.end;
  if (n.left && n.left.maxEnd > max) max = n.left.maxEnd;
  if (n.right && n.right.maxEnd > max) max = n.right.maxEnd;
  n.maxEnd = max;
  return n;
}

function insert<T>(t: Node<T> | undefined, n: Node<T>): Node<T> {
  if (!t) return n;
  if (n.priority > t.priority) {
    const [l, r] = split(t, n);
    n.left = l;
    n.right = r;
    return update(n);
  }
  if (before(n, t)) t.left = insert(t.left, n);
  else t.right = insert(t.right, n);
  return update(t);
}

/** the nodes of t before n, and the others */
function split<T>(t: Node<T> | undefined, n: Node<T>): [Node<T> | undefined, Node<T> | undefined] {
  if (!t) return [undefined, undefined];
  if (before(t, n)) {
    const [l, r] = split(t.right, n);
    t.right = l;
    return [update(t), r];
  }
  const [l, r] = split(t.left, n);
  t.left = r;
  return [l, update(t)];
}

/** joins a and b, every node of a before every node of b */
function merge<T>(a: Node<T> | undefined, b: Node<T> | undefined): Node<T> | undefined {
  if (!a) return b;
  if (!b) return a;
  if (a.priority > b.priority) {
    a.right = merge(a.right, b);
    return update(a);
  }
  b.left = merge(a, b.left);
  return update(b);
}

function remove<T>(t: Node<T> | undefined, n: Node<T>): Node<T> | undefined {
  if (!t) return undefined;
  if (t === n) return merge(t.left, t.right);
  if (before(n, t)) t.left = remove(t.left, n);
  else t.right = remove(t.right, n);
  return update(t);
}

function stab<T>(t: Node<T> | undefined, key: string, visit: (value: T) => void): void {
  while (t && key < t.maxEnd) {
    stab(t.left, key, visit);
    // every start to the right is at least this one
    if (t.start > key) return;
    if (key < t.end) visit(t.value);
    t = t.right;
  }
}
