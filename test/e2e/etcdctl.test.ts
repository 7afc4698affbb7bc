// Differential through etcdctl (Debian's etcd-client): the same commands against a real
// etcd and against strata, outputs compared after normalising what names the server
// (endpoints, ids, timings) and making revisions relative.
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { b, differential, normalise, useServers } from "../support/differential.ts";

// same member name on both, so MemberList output can be compared
const sides = useServers({ strataArgs: ["--name", "default"] });

interface Run {
  exit: number | null;
  out: unknown;
  err: string;
}

function etcdctl(endpoint: string, base: bigint, args: string[], input?: string): Run {
  const r = spawnSync("etcdctl", [`--endpoints=${endpoint}`, "--command-timeout=5s", ...args], {
    input,
    encoding: "utf8",
    timeout: 15_000,
    env: { ...process.env, ETCDCTL_API: "3" },
  });
  let out: unknown = r.stdout;
  if (args.includes("json") && r.status === 0) {
    // ids above 2^53 would lose digits in JSON.parse: read them as strings
    out = normalise(JSON.parse(r.stdout.replace(/:(\d{16,})/g, ':"$1"')), base, new Map());
  } else {
    out = r.stdout
      .replaceAll(endpoint, "ENDPOINT")
      .replace(/took = [\d.]+[µm]?s/g, "took = T")
      .replace(/\b[0-9a-f]{12,16}\b/g, "ID")
      .replace(/compacted revision (\d+)/, (_, n) => `compacted revision base+${BigInt(n) - base}`);
  }
  // etcdctl's own log lines carry timestamps and endpoints; the error text is what counts
  const err = r.stderr.split("\n").filter((l) => l.startsWith("Error:")).join("\n").replaceAll(endpoint, "ENDPOINT");
  return { exit: r.status, out, err };
}

describe("etcdctl", () => {
  test("put, get, del with --prefix, --rev, --prev-kv and json output", () =>
    differential(sides(), async (_c, ctx) => {
      const run = (...args: string[]) => etcdctl(ctx.side.endpoint, ctx.base, args);
      return [
        run("put", "e1/a", "1"),
        run("put", "e1/b", "2"),
        run("put", "e1/a", "3", "--prev-kv"),
        run("get", "e1/", "--prefix"),
        run("get", "e1/", "--prefix", "-w", "json"),
        run("get", "e1/a", `--rev=${ctx.base + 1n}`),
        run("get", "e1/", "--prefix", "--keys-only", "--limit=1", "-w", "json"),
        run("get", "e1/", "--prefix", "--count-only", "-w", "json"),
        run("get", "e1/", "--prefix", "--sort-by=VALUE", "--order=DESCEND"),
        run("get", "e1/a", "--rev=999999"),
        run("del", "e1/a", "--prev-kv"),
        run("del", "e1/", "--prefix"),
        run("get", "e1/", "--from-key", "-w", "json"),
        run("get", "e1/", "--prefix", "--from-key"),
      ];
    }));

  test("txn from standard input", () =>
    differential(sides(), async (_c, ctx) => {
      const run = (input: string) => etcdctl(ctx.side.endpoint, ctx.base, ["txn", "-w", "json"], input);
      etcdctl(ctx.side.endpoint, ctx.base, ["put", "e2/k", "v1"]);
      return [
        run('value("e2/k") = "v1"\n\nput e2/k v2\nget e2/k\n\nget e2/k\n\n'),
        run('value("e2/k") = "v1"\n\nput e2/k v3\n\nget e2/k\n\n'),
        run('mod("e2/none") = "0"\n\nput e2/none created\n\n\n'),
      ];
    }));

  test("watch replays history and exits on its timeout", () =>
    differential(sides(), async (c, ctx) => {
      await c.kv.put({ key: b("e3/a"), value: b("1") } as never);
      await c.kv.put({ key: b("e3/b"), value: b("2") } as never);
      await c.kv.deleteRange({ key: b("e3/a") } as never);
      const r = spawnSync("etcdctl", [`--endpoints=${ctx.side.endpoint}`, "watch", "e3/", "--prefix", `--rev=${ctx.base + 1n}`, "--prev-kv"], {
        encoding: "utf8",
        timeout: 2000,
      });
      return r.stdout;
    }));

  test("lease grant, put with the lease, timetolive with keys, list, revoke", () =>
    differential(sides(), async (_c, ctx) => {
      const run = (...args: string[]) => etcdctl(ctx.side.endpoint, ctx.base, args);
      const granted = run("lease", "grant", "100");
      const id = String(spawnSync("etcdctl", [`--endpoints=${ctx.side.endpoint}`, "lease", "list"], { encoding: "utf8" }).stdout)
        .split("\n").filter((l) => /^[0-9a-f]+$/.test(l)).at(-1)!;
      return [
        granted,
        run("put", "e4/a", "1", `--lease=${id}`),
        run("lease", "timetolive", id, "--keys"),
        run("lease", "revoke", id),
        run("lease", "timetolive", id),
        run("get", "e4/a"),
        run("lease", "revoke", id),
      ];
    }));

  test("compaction, defrag, alarm list, endpoint health", () =>
    differential(sides(), async (c, ctx) => {
      await c.kv.put({ key: b("e5/a"), value: b("1") } as never);
      await c.kv.put({ key: b("e5/a"), value: b("2") } as never);
      const run = (...args: string[]) => etcdctl(ctx.side.endpoint, ctx.base, args);
      return [
        run("compaction", String(ctx.base + 1n)),
        run("compaction", String(ctx.base + 1n)),
        run("get", "e5/a", `--rev=${ctx.base}`),
        run("defrag"),
        run("alarm", "list"),
        run("endpoint", "health"),
      ];
    }));

  test("member list and endpoint status have etcd's shape", async () => {
    const [etcd, strata] = sides();
    for (const args of [["member", "list", "-w", "json"], ["endpoint", "status", "-w", "json"]]) {
      const shape = (endpoint: string) => {
        const r = spawnSync("etcdctl", [`--endpoints=${endpoint}`, ...args], { encoding: "utf8" });
        expect(r.status).toBe(0);
        return keysOf(JSON.parse(r.stdout.replace(/:(\d{16,})/g, ':"$1"')));
      };
      // values differ by nature (ids, sizes, versions); the fields clients read must be there
      const want = shape(etcd!.endpoint);
      const got = shape(strata!.endpoint);
      // strata has no raft peers, so a member lists no peer URLs (omitted when empty)
      expect(got).toEqual(want.filter((k) => !k.includes("peerURLs")));
    }
  });
});

/** every field path in a JSON document, e.g. "members.0.clientURLs" */
function keysOf(x: unknown, path = ""): string[] {
  if (Array.isArray(x)) return x.flatMap((v, i) => keysOf(v, `${path}${i}.`));
  if (typeof x !== "object" || x === null) return [path.slice(0, -1)];
  return Object.entries(x).flatMap(([k, v]) => keysOf(v, `${path}${k}.`)).sort();
}
