// Maintenance.HashKV (`etcdctl endpoint hashkv`), differential: the same writes against a
// real etcd and strata give the same hash — over overwrites, a txn's several puts (sub
// revisions), deletes and re-creates, a keyspace emptied, compactions (with keys live and
// with none), and at an older revision. No leases: their IDs are each server's own, and
// etcd hashes them with the keys.
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import type { Etcd3 } from "etcd3";
import { BACKEND } from "../support/strata.ts";
import { type Side, useServers } from "../support/differential.ts";

const sides = useServers();

/** `etcdctl endpoint hashkv` of the side c talks to: its hash and compact revision, or its error */
function etcdctlHashKV(endpoint: string, revision = "0"): { hash: number; compact: number } | { error: string } {
  const r = spawnSync("etcdctl", [`--endpoints=${endpoint}`, "endpoint", "hashkv", `--rev=${revision}`, "-w", "json"], { encoding: "utf8", env: { ...process.env, ETCDCTL_API: "3" } });
  // etcdctl's last line: "Error: " and the server's message
  if (r.status !== 0) return { error: r.stderr.trim().split("\n").at(-1)!.replace(/^Error: /, "") };
  const [out] = JSON.parse(r.stdout) as Array<{ HashKV: { hash: number; compact_revision?: number } }>;
  return { hash: out!.HashKV.hash, compact: out!.HashKV.compact_revision ?? 0 };
}

// strata in front of an upstream etcd relays that etcd's hash
describe.skipIf(BACKEND === "etcd")("HashKV as etcd's", () => {
  test("the same writes give etcd's hash at every step", async () => {
    const [, strata] = sides();
    // etcd's readiness probe wrote and deleted a key: the same history on strata
    await strata!.client.put("ready-probe").value("1").exec();
    await strata!.client.delete().key("ready-probe").exec();
    const revisions = await Promise.all(sides().map(async (s) => (await s.client.maintenance.status()).header.revision));
    expect(revisions[1]).toBe(revisions[0]);

    const seen: Array<{ step: string; etcd: unknown; strata: unknown }> = [];
    const step = async (what: string, write: (c: Etcd3) => Promise<unknown>, revision?: (c: Etcd3) => Promise<string>) => {
      const [e, s] = await Promise.all(sides().map(async (side: Side) => {
        await write(side.client);
        return etcdctlHashKV(side.endpoint, revision ? await revision(side.client) : "0");
      }));
      seen.push({ step: what, etcd: e, strata: s });
      if ("error" in e!) throw new Error(`${what}: etcd answered ${e.error}`);
      return e!.hash;
    };
    const rev = async (c: Etcd3) => (await c.maintenance.status()).header.revision;

    await step("probe's history", async () => {});
    await step("puts and an overwrite", async (c) => {
      await c.put("a").value("1").exec();
      await c.put("b").value("2").exec();
      await c.put("a").value("3").exec();
    });
    await step("a txn with three puts and a delete", (c) =>
      c.if("b", "Value", "==", "2").then(c.put("c").value("x"), c.put("d").value(""), c.delete().key("b"), c.put("e").value("y")).commit());
    const beforeDelete = await step("", async () => {});
    const deleted = await step("a deleted", (c) => c.delete().key("a").exec());
    const recreated = await step("a re-created with its old value", (c) => c.put("a").value("3").exec());
    await step("compacted below a newer version of a", async (c) => {
      const at = await rev(c);
      await c.put("a").value("4").exec();
      await c.kv.compact({ revision: at, physical: true });
    });
    await step("writes after the compaction", async (c) => {
      await c.put("f").value("after").exec();
      await c.delete().key("c").exec();
    });
    await step("at an older revision above the compaction", async () => {}, async (c) => String(BigInt(await rev(c)) - 1n));
    const emptied = await step("every key deleted", (c) => c.delete().all().exec());
    await step("compacted with no key live", async (c) => c.kv.compact({ revision: await rev(c), physical: true }));
    await step("a key after that", (c) => c.put("g").value("1").exec());

    expect(seen.filter((s) => JSON.stringify(s.etcd) !== JSON.stringify(s.strata))).toEqual([]);
    // what issue 24 saw strata do: a delete undone by a re-create restored the old hash,
    // an emptied keyspace hashed to 0
    expect(new Set([beforeDelete, deleted, recreated]).size).toBe(3);
    expect(emptied).not.toBe(0);
  }, 120_000);

  test("at or below the compaction, and above the current revision: etcd's errors", async () => {
    const answers = await Promise.all(sides().map(async (s) => {
      const { header } = await s.client.maintenance.status();
      const now = etcdctlHashKV(s.endpoint);
      if ("error" in now) throw new Error(now.error);
      return [etcdctlHashKV(s.endpoint, String(now.compact)), etcdctlHashKV(s.endpoint, String(BigInt(header.revision) + 5n))];
    }));
    expect(answers[1]).toEqual(answers[0]!);
    expect(answers[0]).toEqual([{ error: "etcdserver: mvcc: required revision has been compacted" }, { error: "etcdserver: mvcc: required revision is a future revision" }]);
  }, 60_000);
});
