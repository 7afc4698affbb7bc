// The auth view on SQL: etcd's auth store as one row of its own table, changed by
// compare-and-swap on its revision.
import type { AuthRecord, AuthView } from "../../mvcc/backend.ts";
import type { Rev } from "../../mvcc/types.ts";
import type { SqlDb } from "./sql-db.ts";

export class SqlAuth implements AuthView {
  constructor(private readonly db: SqlDb) {}

  async readAuth(): Promise<AuthRecord | undefined> {
    const [row] = await this.db.driver.query("SELECT revision, data FROM auth WHERE id = 1");
    return row && { revision: BigInt(row.revision as bigint), data: new Uint8Array(row.data as Uint8Array) };
  }

  async authRevision(): Promise<Rev> {
    const [row] = await this.db.driver.query("SELECT revision FROM auth WHERE id = 1");
    return row ? BigInt(row.revision as bigint) : 0n;
  }

  async writeAuth(expected: Rev, next: AuthRecord): Promise<boolean> {
    return this.db.driver.write(async (c) => {
      if (expected === 0n) {
        // the first record: a second process writing it at once finds the row there
        const [start, end] = this.db.dialect.insertIgnoring;
        return (await c.run(`${start} auth (id, revision, data) VALUES (1, ?, ?)${end}`, [next.revision, next.data])) === 1;
      }
      return (await c.run("UPDATE auth SET revision = ?, data = ? WHERE id = 1 AND revision = ?", [next.revision, next.data, expected])) === 1;
    });
  }
}
