// One revision order over several databases (DESIGN.md, "Revisions across processes and
// backends"). Each database numbers its commits in its own residue; the merger releases a
// revision to watchers once every database is closed at it, and a database behind the
// newest revision is advanced (its next commit numbered above it) so the order moves on.
// A merged read first raises every database it reads to one revision, so none commits at
// or below what the read saw.
import type { Committed } from "../mvcc/store.ts";
import type { Rev } from "../mvcc/types.ts";
import { CommitMerger } from "./merger.ts";
import { callPart, type Part } from "./part.ts";

type Log = (level: string, msg: string, fields?: Record<string, unknown>) => void;

export class RevisionOrder {
  private readonly merger: CommitMerger;
  /** per database: the revision it is being advanced to, and whether that runs */
  private readonly advancing: Array<{ target: Rev; running: boolean }>;

  constructor(
    private readonly parts: Part[],
    private readonly log: Log,
  ) {
    this.advancing = parts.map(() => ({ target: 0n, running: false }));
    this.merger = new CommitMerger(parts.map((p) => p.store.revision), (i, t) => this.requestAdvance(i, t));
  }

  /** a database's commit, in its own order */
  commit(i: number, c: Committed): void {
    this.merger.commit(i, c);
  }

  /** Called with every commit once released, in the merged order. */
  onRelease(fn: (c: Committed) => void): void {
    this.merger.onRelease(fn);
  }

  /** the merged revision watchers have been given everything up to */
  get revision(): Rev {
    return this.merger.revision;
  }

  /** the newest revision any database has published */
  get newest(): Rev {
    return this.merger.newest;
  }

  /**
   * The newest revision acknowledged to any client: what response headers report, and
   * where a watch without a start revision begins. With several databases it runs ahead
   * of `revision` until the others are raised to it (milliseconds).
   */
  get latestRevision(): Rev {
    return this.merger.newest > this.merger.revision ? this.merger.newest : this.merger.revision;
  }

  /**
   * What a write is numbered above: with several databases, every revision already
   * published anywhere, so revisions grow in the order clients see writes acknowledged.
   */
  get floor(): Rev {
    return this.parts.length > 1 ? this.merger.newest : 0n;
  }

  /** Reads every database's revision, raises the lagging ones to the newest; returns it. */
  async closeAll(parts: Part[]): Promise<Rev> {
    const revs = await Promise.all(parts.map((p) => callPart(p, () => p.backend.revisions())));
    const at = revs.reduce((a, r) => (r.revision > a ? r.revision : a), this.merger.newest);
    await Promise.all(parts.map((p, i) => (revs[i]!.revision < at ? this.closeAt(p, at) : undefined)));
    return at;
  }

  /** Makes sure database p will number every later commit above rev. */
  async closeAt(p: Part, rev: Rev): Promise<void> {
    if (this.merger.knownOf(p.index) >= rev) return;
    await p.store.advance(rev);
  }

  private requestAdvance(i: number, target: Rev): void {
    const a = this.advancing[i]!;
    if (target > a.target) a.target = target;
    if (a.running) return;
    a.running = true;
    void (async () => {
      try {
        while (this.merger.knownOf(i) < a.target) {
          const before = this.merger.knownOf(i);
          await this.parts[i]!.store.advance(a.target);
          // another process got there first: read its commits instead of writing again
          if (this.merger.knownOf(i) === before) await this.parts[i]!.store.syncExternal();
        }
        a.running = false;
      } catch (err) {
        this.log("warn", "advancing a backend's revision failed; watchers wait for it", { backend: this.parts[i]!.name, error: String(err) });
        setTimeout(() => {
          a.running = false;
          this.requestAdvance(i, a.target);
        }, 1000).unref?.();
      }
    })();
  }
}
