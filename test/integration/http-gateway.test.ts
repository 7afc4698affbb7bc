// The client port's plain HTTP against a real etcd 3.4: etcd's JSON gateway (the same
// requests with curl's encoding, the same JSON back: field names, base64, int64 as strings,
// enums by name, errors as {"error","message","code"} with the same HTTP status), streamed
// Watch and LeaseKeepAlive answers, /v3beta/, and the plain answers around them. Revisions
// are compared relative to each server's start, lease IDs by order of appearance.
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeCa, makeCert, read } from "../support/certs.ts";
import { normalise, useServers, type Side } from "../support/differential.ts";
import { BACKEND, startStrata } from "../support/strata.ts";

const sides = useServers();

const url = (side: Side, path: string) => `http://${side.endpoint}${path}`;
const b64 = (s: string) => Buffer.from(s).toString("base64");

interface Answer {
  status: number;
  body: unknown;
}

async function post(side: Side, path: string, body: unknown): Promise<Answer> {
  const res = await fetch(url(side, path), { method: "POST", body: typeof body === "string" ? body : JSON.stringify(body) });
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) };
  } catch {
    return { status: res.status, body: text };
  }
}

/** the current revision, as the gateway reports it */
async function revision(side: Side): Promise<bigint> {
  const r = await post(side, "/v3/kv/range", { key: b64("\0") });
  return BigInt((r.body as { header: { revision: string } }).header.revision);
}

/** Runs `scenario` on etcd and on strata; their normalised answers must be equal. */
async function same(scenario: (side: Side, key: (s: string) => string) => Promise<unknown>): Promise<unknown> {
  const results: unknown[] = [];
  // each scenario gets keys of its own, named alike on both servers
  const prefix = `gw-${Math.random().toString(36).slice(2, 8)}/`;
  for (const side of sides()) {
    const base = await revision(side);
    results.push(normalise(await scenario(side, (s) => b64(prefix + s)), base, new Map()));
  }
  expect(results[1]).toEqual(results[0]);
  return results[0];
}

/** Reads a streamed answer a line at a time; each line is waited for `ms` (15 s) at most. */
function lineReader(res: Response): { next: (ms?: number) => Promise<unknown>; close: () => Promise<void> } {
  const reader = res.body!.getReader();
  let buf = "";
  const close = () => reader.cancel().catch(() => {});
  const next = async (ms = 15_000) => {
    const deadline = Date.now() + ms;
    while (!buf.includes("\n") && Date.now() < deadline) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), deadline - Date.now())));
      const next = await Promise.race([reader.read(), timeout]);
      clearTimeout(timer);
      if (next === "timeout" || next.done) break;
      buf += Buffer.from(next.value).toString("utf8");
    }
    const i = buf.indexOf("\n");
    if (i < 0) return { none: buf };
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    return JSON.parse(line);
  };
  return { next, close };
}

/** The first `n` lines of a streamed answer (fewer if it ends, or after `ms`), parsed. */
async function lines(res: Response, n: number, ms = 15_000): Promise<unknown[]> {
  const { next, close } = lineReader(res);
  const out: unknown[] = [];
  const deadline = Date.now() + ms;
  try {
    while (out.length < n && Date.now() < deadline) {
      const line = await next(deadline - Date.now());
      if (typeof line === "object" && line !== null && "none" in line) break;
      out.push(line);
    }
  } finally {
    await close();
  }
  return out;
}

test("KV: put, range in its forms, delete-range, with etcd's field names and encodings", async () => {
  await same(async (side, k) => [
    await post(side, "/v3/kv/put", { key: k("a"), value: b64("one") }),
    await post(side, "/v3/kv/put", { key: k("a"), value: b64("two"), prev_kv: true }),
    await post(side, "/v3/kv/put", { key: k("b"), value: b64("") }),
    await post(side, "/v3/kv/range", { key: k("a") }),
    await post(side, "/v3/kv/range", { key: k(""), range_end: k("\xff"), sort_order: "DESCEND", sort_target: "MOD" }),
    await post(side, "/v3/kv/range", { key: k(""), range_end: k("\xff"), keysOnly: true, limit: "1" }),
    await post(side, "/v3/kv/range", { key: k(""), range_end: k("\xff"), count_only: true }),
    await post(side, "/v3/kv/range", { key: k("none") }),
    // unknown fields are ignored, numbers may be strings
    await post(side, "/v3/kv/range", { key: k("a"), bogus: 1, revision: "0" }),
    await post(side, "/v3beta/kv/range", { key: k("a") }),
    await post(side, "/v3/kv/deleterange", { key: k(""), range_end: k("\xff"), prev_kv: true }),
    await post(side, "/v3/kv/deleterange", { key: k("a") }),
  ]);
});

test("KV errors: etcd's message, gRPC code and HTTP status", async () => {
  await same(async (side, k) => [
    await post(side, "/v3/kv/range", {}),
    await post(side, "/v3/kv/range", ""),
    await post(side, "/v3/kv/range", { key: k("a"), revision: "100000" }),
    await post(side, "/v3/kv/put", { value: b64("v") }),
    await post(side, "/v3/kv/put", { key: k("a"), lease: "12345" }),
    await post(side, "/v3/kv/txn", { success: [{ request_put: { key: k("a") } }, { request_put: { key: k("a") } }] }),
  ]);
});

test("malformed JSON and base64 are refused with InvalidArgument (400); the wording is JavaScript's, not Go's", async () => {
  await same(async (side, k) => {
    const answers = [
      await post(side, "/v3/kv/range", "notjson"),
      await post(side, "/v3/kv/range", { key: "!!" }),
      await post(side, "/v3/kv/put", { key: k("a"), value: 5 }),
    ];
    return answers.map((a) => ({ status: a.status, code: (a.body as { code: number }).code, keys: Object.keys(a.body as object) }));
  });
});

test("Txn and compaction: oneof fields by their proto names, compacted errors", async () => {
  await same(async (side, k) => {
    const out: unknown[] = [
      await post(side, "/v3/kv/put", { key: k("t"), value: b64("v1") }),
      await post(side, "/v3/kv/txn", {
        compare: [{ target: "VALUE", key: k("t"), value: b64("v1"), result: "EQUAL" }],
        success: [{ request_range: { key: k("t") } }, { request_put: { key: k("t"), value: b64("v2"), prev_kv: true } }],
        failure: [{ request_delete_range: { key: k("t") } }],
      }),
      await post(side, "/v3/kv/txn", {
        compare: [{ target: "CREATE", key: k("t"), create_revision: "0" }],
        failure: [{ request_delete_range: { key: k("t"), prev_kv: true } }, { request_txn: { success: [{ request_range: { key: k("t") } }] } }],
      }),
      await post(side, "/v3/kv/txn", { compare: [{ target: "VERSION", key: k("t"), version: "3", result: "GREATER" }] }),
    ];
    const rev = (await revision(side)).toString();
    out.push(await post(side, "/v3/kv/compaction", { revision: rev, physical: true }));
    out.push(await post(side, "/v3/kv/compaction", { revision: rev }));
    out.push(await post(side, "/v3/kv/range", { key: k("t"), revision: String(BigInt(rev) - 1n) }));
    return out;
  });
});

test("Lease: grant, time-to-live with keys, leases, revoke, and their errors, on both paths etcd serves", async () => {
  await same(async (side, k) => {
    const id = String(1000 + Math.floor(Math.random() * 1e9));
    const out = [
      await post(side, "/v3/lease/grant", { TTL: 60, ID: id }),
      await post(side, "/v3/lease/grant", { TTL: 60, ID: id }),
      await post(side, "/v3/kv/put", { key: k("l"), value: b64("v"), lease: id }),
      await post(side, "/v3/lease/timetolive", { ID: id, keys: true }),
      await post(side, "/v3/kv/lease/timetolive", { ID: "999" }),
      await post(side, "/v3/lease/revoke", { ID: id }),
      await post(side, "/v3/kv/lease/revoke", { ID: id }),
      await post(side, "/v3/kv/range", { key: k("l") }),
    ];
    // TTLs left count down as they will: only whether one was reported
    return JSON.parse(JSON.stringify(out), (key, v) => (key === "TTL" && Number(v) > 50 && Number(v) <= 60 ? "about 60" : v));
  });
});

test("an int64 written as a bare JSON number (as Go's encoding/json does) keeps every digit", async () => {
  await same(async (side) => {
    const id = `70000000${String(Math.floor(Math.random() * 1e11)).padStart(11, "0")}`;
    const granted = await post(side, "/v3/lease/grant", `{"TTL":60,"ID":${id}}`);
    await post(side, "/v3/lease/revoke", `{"ID":${id}}`);
    return { status: granted.status, exact: (granted.body as { ID: string }).ID === id };
  });
});

test("lease list names the leases granted", async () => {
  await same(async (side) => {
    const id = String(2_000_000_000 + Math.floor(Math.random() * 1e6));
    await post(side, "/v3/lease/grant", { TTL: 60, ID: id });
    const listed = [await post(side, "/v3/lease/leases", {}), await post(side, "/v3/kv/lease/leases", {})];
    await post(side, "/v3/lease/revoke", { ID: id });
    return listed.map((a) => ({ status: a.status, has: JSON.stringify(a.body).includes(`"ID":"${id}"`) }));
  });
});

test("Watch streams one {\"result\":…} line per response: created, events with prev_kv, a DELETE by name", async () => {
  await same(async (side, k) => {
    const res = await fetch(url(side, "/v3/watch"), {
      method: "POST",
      body: JSON.stringify({ create_request: { key: k("w"), prev_kv: true } }),
    });
    expect(res.headers.get("content-type")).toBe("application/json");
    const reading = lines(res, 3);
    // the created response comes first; writes after the watch is created: waited for by the read below
    await new Promise((r) => setTimeout(r, 500));
    await post(side, "/v3/kv/put", { key: k("w"), value: b64("1") });
    await post(side, "/v3/kv/deleterange", { key: k("w") });
    return [res.status, await reading];
  });
});

test("Watch from a past revision, a progress request and a cancel in one body", async () => {
  await same(async (side, k) => {
    const start = String((await revision(side)) + 1n);
    await post(side, "/v3/kv/put", { key: k("h"), value: b64("1") });
    await post(side, "/v3/kv/put", { key: k("h"), value: b64("2") });
    const created = await lines(await fetch(url(side, "/v3/watch"), {
      method: "POST",
      body: JSON.stringify({ create_request: { key: k("h"), start_revision: start } }),
    }), 2);
    const rest = await lines(await fetch(url(side, "/v3/watch"), {
      method: "POST",
      body: `${JSON.stringify({ create_request: { key: k("h") } })} {"progress_request":{}}\n{"cancel_request":{"watch_id":"0"}}`,
    }), 3);
    return [created, rest];
  });
});

test("a watch body that is not JSON: etcd's error before any response", async () => {
  await same(async (side) => {
    const a = await post(side, "/v3/watch", "xx");
    return { status: a.status, code: (a.body as { code: number }).code, message: (a.body as { message: string }).message };
  });
});

test("LeaseKeepAlive streams an answer per request; an unknown lease gets TTL 0 (left out)", async () => {
  await same(async (side) => {
    const id = String(3_000_000_000 + Math.floor(Math.random() * 1e6));
    await post(side, "/v3/lease/grant", { TTL: 60, ID: id });
    const res = await fetch(url(side, "/v3/lease/keepalive"), { method: "POST", body: `{"ID":"${id}"}{"ID":"5"}` });
    const out = await lines(res, 2);
    await post(side, "/v3/lease/revoke", { ID: id });
    return out;
  });
});

test("Maintenance and Cluster answer with etcd's fields (values are the server's own)", async () => {
  const shapes = await same(async (side, k) => {
    // a hash of 0 would be left out: hash a store that holds something
    await post(side, "/v3/kv/put", { key: k("m"), value: b64("v") });
    const keysOf = async (path: string) => {
      const a = await post(side, path, {});
      return { status: a.status, keys: Object.keys(a.body as object).sort() };
    };
    // etcd's Alarm and Defragment answers carry no header, over gRPC too; strata's do (not the gateway's doing)
    const headless = async (path: string, body: object) => {
      const { status, body: answer } = await post(side, path, body);
      const { header: _, ...rest } = answer as Record<string, unknown>;
      return { status, rest };
    };
    const members = (await post(side, "/v3/cluster/member/list", {})).body as { members: Array<Record<string, unknown>> };
    return [
      await keysOf("/v3/maintenance/status"),
      await keysOf("/v3/maintenance/hash"),
      await headless("/v3/maintenance/alarm", { action: "GET" }),
      await headless("/v3/maintenance/defragment", {}),
      members.members.map((m) => Object.keys(m).filter((key) => key !== "peerURLs").sort()),
    ];
  });
  expect(JSON.stringify(shapes)).toContain("dbSizeInUse");
});

test("Snapshot streams the database in base64 blobs", async () => {
  for (const side of sides()) {
    const [first] = await lines(await fetch(url(side, "/v3/maintenance/snapshot"), { method: "POST", body: "{}" }), 1);
    const blob = (first as { result: { blob: string; remaining_bytes?: string } }).result.blob;
    expect(Buffer.from(blob, "base64").length).toBeGreaterThan(0);
  }
});

test("Authenticate while auth is off: etcd's error", async () => {
  await same(async (side) => [await post(side, "/v3/auth/authenticate", { name: "root", password: "x" })]);
});

test("paths and methods etcd does not serve: 404 and 405 in Go's words; /v3alpha/ is gone in 3.4", async () => {
  await same(async (side) => {
    const plain = async (path: string, method = "POST") => {
      const res = await fetch(url(side, path), { method, ...(method === "POST" && { body: "{}" }) });
      return { status: res.status, body: await res.text(), type: res.headers.get("content-type") };
    };
    return [await plain("/v3/kv/rangex"), await plain("/v3alpha/kv/range"), await plain("/v3/kv/range", "GET"), await plain("/nothing", "GET")];
  });
});

test("/health and /version: etcd's JSON and CORS headers", async () => {
  await same(async (side) => {
    const health = await fetch(url(side, "/health"));
    const excluded = await fetch(url(side, "/health?exclude=NOSPACE"));
    const version = await fetch(url(side, "/version"));
    const v = await version.json() as Record<string, string>;
    return [
      health.status, (await health.json() as { health: string }).health,
      excluded.status, health.headers.get("access-control-allow-origin"),
      version.status, version.headers.get("content-type"), Object.keys(v).sort(), typeof v.etcdserver,
      (await fetch(url(side, "/version"), { method: "POST" })).status,
    ];
  });
});

test("/metrics on the client port is Prometheus text", async () => {
  for (const side of sides()) {
    const res = await fetch(url(side, "/metrics"));
    expect(res.status).toBe(200);
    expect(await res.text()).toContain("# TYPE grpc_server_handled_total counter");
  }
});

// ---- strata's limits on the HTTP side of the port ----

const strata = () => sides().find((s) => s.name === "strata")!;

/** Sends `request` on a raw connection and returns what came back when the server closed it (or `ms` passed). */
function raw(endpoint: string, request: string | Buffer, ms = 15_000): Promise<{ text: string; closed: boolean }> {
  const [host, port] = endpoint.split(":");
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s: Socket = connect(Number(port), host!, () => s.write(request));
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ text: Buffer.concat(chunks).toString(), closed: false });
    }, ms);
    s.on("data", (d: Buffer) => chunks.push(d));
    s.on("error", () => {});
    s.on("close", () => {
      clearTimeout(timer);
      resolve({ text: Buffer.concat(chunks).toString(), closed: true });
    });
  });
}

test("a request body above the limit is refused without being held: ResourceExhausted (429)", async () => {
  // twice (max-request-bytes + 512 KiB) of JSON: 4 MiB by default
  const big = JSON.stringify({ key: b64("k"), value: "A".repeat(5 * 1024 * 1024) });
  const a = await post(strata(), "/v3/kv/put", big);
  expect(a.status).toBe(429);
  expect((a.body as { code: number }).code).toBe(8);
  // the same put within the limit but above max-request-bytes: etcd's own error
  const tooLarge = await post(strata(), "/v3/kv/put", { key: b64("k"), value: "A".repeat(2 * 1024 * 1024) });
  expect(tooLarge).toEqual({ status: 400, body: { error: "etcdserver: request is too large", message: "etcdserver: request is too large", code: 3 } });
});

test("a header block above 64 KiB is answered 431 and the connection closed", async () => {
  const r = await raw(strata().endpoint, `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(100_000)}\r\n\r\n`);
  expect(r.text).toStartWith("HTTP/1.1 431");
  expect(r.closed).toBe(true);
});

test("keep-alive serves several requests on one connection, gRPC's port still speaks gRPC", async () => {
  const r = await raw(strata().endpoint, "GET /version HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  expect(r.text.match(/HTTP\/1\.1 200/g)?.length).toBe(2);
  expect(r.closed).toBe(true);
  // and the etcd client beside it, on the same port
  await strata().client.put("grpc-beside-http").value("1");
  expect(await strata().client.get("grpc-beside-http").string()).toBe("1");
});

test("a connection that stops halfway through its headers, or through its body, is not held for ever", async () => {
  const start = Date.now();
  const [headers, body] = await Promise.all([
    raw(strata().endpoint, "GET /health HTTP/1.1\r\nHost: x\r\n", 60_000),
    raw(strata().endpoint, "POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"key\":", 60_000),
  ]);
  // no request yet: the connection is idle, and closed after the idle time (30 s)
  expect(headers).toEqual({ text: "", closed: true });
  // a body that stops: DeadlineExceeded after 30 s, and the connection closed (its body is not read on)
  expect(body.closed).toBe(true);
  expect(body.text).toStartWith("HTTP/1.1 504");
  expect(body.text).toContain('"code":4');
  expect(Date.now() - start).toBeGreaterThanOrEqual(29_000);
}, 90_000);

test("HTTP/2 without gRPC (curl --http2-prior-knowledge) gets the same gateway", async () => {
  const p = Bun.spawnSync(["curl", "-s", "--http2-prior-knowledge", "-X", "POST", url(strata(), "/v3/kv/range"), "-d", JSON.stringify({ key: b64("gw-none") }), "-w", "\n%{http_version} %{http_code}"]);
  const [body, status] = p.stdout.toString().split("\n");
  expect(status).toBe("2 200");
  expect(Object.keys(JSON.parse(body!))).toEqual(["header"]);
});

test("over TLS the port offers ALPN h2 and http/1.1: curl gets the gateway with either, gRPC still works", async () => {
  const dir = mkdtempSync(join(tmpdir(), "gateway-tls-"));
  const ca = makeCa(dir, "ca");
  const server = makeCert(dir, "server", ca, "server");
  const client = makeCert(dir, "client", ca, "client");
  const s = await startStrata(["--cert-file", server.cert, "--key-file", server.key], undefined, "bun", {
    ca: read(ca.cert), cert: read(client.cert), key: read(client.key),
  });
  try {
    const curl = (version: string) => spawnSync("curl", [
      "-s", version, "--cacert", ca.cert, "-X", "POST", `https://${s.endpoint}/v3/kv/put`,
      "-d", JSON.stringify({ key: b64("tls"), value: b64("v") }), "-w", "\n%{http_version} %{http_code}",
    ], { encoding: "utf8" }).stdout.split("\n");
    for (const [flag, version] of [["--http1.1", "1.1"], ["--http2", "2"]]) {
      const [body, status] = curl(flag!);
      expect(status).toBe(`${version} 200`);
      expect(Object.keys(JSON.parse(body!))).toEqual(["header"]);
    }
    const get = spawnSync("etcdctl", [`--endpoints=https://${s.endpoint}`, `--cacert=${ca.cert}`, "--dial-timeout=3s", "get", "tls", "--print-value-only"], { encoding: "utf8" });
    expect(get.stdout.trim()).toBe("v");
  } finally {
    await s.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);

// ---- etcd's metric names, on the client port's /metrics ----

/** the value of each unlabelled series named in `names` */
async function metricValues(side: Side, names: string[]): Promise<Record<string, number>> {
  const text = await (await fetch(url(side, "/metrics"))).text();
  const out: Record<string, number> = {};
  for (const name of names) {
    const line = text.split("\n").find((l) => l.startsWith(`${name} `));
    out[name] = line === undefined ? NaN : Number(line.split(" ")[1]);
  }
  return out;
}

test("etcd_mvcc_{range,put,delete,txn}_total count as etcd's do (compares count as ranges)", async () => {
  const names = ["etcd_mvcc_range_total", "etcd_mvcc_put_total", "etcd_mvcc_delete_total", "etcd_mvcc_txn_total"];
  await same(async (side, k) => {
    const before = await metricValues(side, names);
    await post(side, "/v3/kv/put", { key: k("m1"), value: b64("1") });
    await post(side, "/v3/kv/put", { key: k("m2"), value: b64("2") });
    await post(side, "/v3/kv/range", { key: k("m1") });
    await post(side, "/v3/kv/deleterange", { key: k("m2") });
    // 1 compare, 2 puts, a nested txn of 1 range: a txn of 4 ops
    await post(side, "/v3/kv/txn", {
      compare: [{ target: "VERSION", key: k("m1"), version: "1", result: "EQUAL" }],
      success: [{ request_put: { key: k("m3") } }, { request_put: { key: k("m4") } }, { request_txn: { success: [{ request_range: { key: k("m1") } }] } }],
    });
    // the failed branch's ops do not count; a txn of one op is not a txn
    await post(side, "/v3/kv/txn", { failure: [{ request_delete_range: { key: k("m3") } }], compare: [] });
    await post(side, "/v3/kv/txn", { success: [{ request_delete_range: { key: k("m4") } }] });
    const after = await metricValues(side, names);
    return Object.fromEntries(names.map((n) => [n, after[n]! - before[n]!]));
  });
});

test("every metric the etcd mixin's alerts query exists with etcd's type", async () => {
  // the etcd mixin's alert rules (etcd's contrib/mixin): the series each expression reads
  const queried: Array<[string, string]> = [
    ["etcd_server_has_leader", "gauge"],
    ["etcd_server_leader_changes_seen_total", "counter"],
    ["etcd_network_peer_sent_failures_total", "counter"],
    ["etcd_network_peer_round_trip_time_seconds", "histogram"],
    ["grpc_server_handled_total", "counter"],
    ["grpc_server_handling_seconds", "histogram"],
    ["etcd_server_proposals_failed_total", "counter"],
    ["etcd_disk_wal_fsync_duration_seconds", "histogram"],
    ["etcd_disk_backend_commit_duration_seconds", "histogram"],
    ["etcd_mvcc_db_total_size_in_bytes", "gauge"],
    ["etcd_mvcc_db_total_size_in_use_in_bytes", "gauge"],
    ["etcd_server_quota_backend_bytes", "gauge"],
  ];
  const typesOf = async (side: Side) => {
    const text = await (await fetch(url(side, "/metrics"))).text();
    return new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
  };
  const [etcd, ours] = [await typesOf(sides()[0]!), await typesOf(strata())];
  // a database server has no quota unless given one (SQLite has etcd's 2 GiB): then no quota series, and no alert on it
  const expected = BACKEND === "sqlite" ? queried : queried.filter(([name]) => name !== "etcd_server_quota_backend_bytes");
  expect(expected.map(([name]) => [name, ours.get(name)])).toEqual(expected);
  // a single etcd 3.4 leaves out the peer vectors and (without --metrics=extensive) the handling histogram
  for (const [name, type] of etcd) if (expected.some(([q]) => q === name)) expect([name, type]).toEqual([name, ours.get(name)!]);
  expect(etcd.get("etcd_disk_backend_commit_duration_seconds")).toBe("histogram");
  // and the ones etcd's e2e metrics test and dashboards read, with strata's values (after a commit)
  await post(strata(), "/v3/kv/put", { key: b64("gw-metrics"), value: b64("v") });
  const text = await (await fetch(url(strata(), "/metrics"))).text();
  expect(text).toMatch(/^etcd_server_version\{server_version="3\.5\.17"\} 1$/m);
  expect(text).toMatch(/^etcd_cluster_version\{cluster_version="3\.5"\} 1$/m);
  expect(text).toMatch(/^etcd_server_leader_changes_seen_total 0$/m);
  if (BACKEND === "sqlite") expect(text).toMatch(/^etcd_server_quota_backend_bytes 2147483648$/m);
  expect(Number(text.match(/^etcd_disk_backend_commit_duration_seconds_count (\d+)$/m)?.[1])).toBeGreaterThan(0);
  // etcd's raft index, as strata's Status reports it: the revision
  const committed = Number(text.match(/^etcd_server_proposals_committed_total (\d+)$/m)?.[1]);
  expect(committed).toBeGreaterThan(0);
  expect(committed).toBeLessThanOrEqual(Number(await revision(strata())));
});

test("gateway calls are counted in grpc_server_handled_total as etcd counts them (its gateway calls its own gRPC server)", async () => {
  /** handled calls of KV.Range by code, labels in any order */
  const handled = async (side: Side) => {
    const text = await (await fetch(url(side, "/metrics"))).text();
    const out: Record<string, number> = {};
    for (const m of text.matchAll(/^grpc_server_handled_total\{([^}]*)\} (\S+)$/gm)) {
      const labels = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
      if (labels.grpc_service === "etcdserverpb.KV" && labels.grpc_method === "Range") out[labels.grpc_code!] = Number(m[2]);
    }
    return out;
  };
  await same(async (side, k) => {
    const before = await handled(side);
    await post(side, "/v3/kv/range", { key: k("c") });
    await post(side, "/v3/kv/range", { key: k("c") });
    await post(side, "/v3/kv/range", {});
    // not JSON: never a call
    await post(side, "/v3/kv/range", "nope");
    const after = await handled(side);
    return { OK: after.OK! - (before.OK ?? 0), InvalidArgument: after.InvalidArgument! - (before.InvalidArgument ?? 0) };
  });
});

test("a watch whose HTTP client goes away leaves no watcher behind", async () => {
  const gauge = async () => {
    const text = await (await fetch(url(strata(), "/metrics"))).text();
    return Number(text.match(/^etcd_debugging_mvcc_watcher_total (\d+)$/m)?.[1]);
  };
  const idle = await gauge();
  const aborts = Array.from({ length: 3 }, () => new AbortController());
  const streams = await Promise.all(aborts.map((a) => fetch(url(strata(), "/v3/watch"), {
    method: "POST", body: JSON.stringify({ create_request: { key: b64("gw-gone") } }), signal: a.signal,
  })));
  // each created its watcher (its first line says so), and the stream stays open
  for (const s of streams) {
    const reader = s.body!.getReader();
    let text = "";
    for (let i = 0; i < 100 && !text.includes("\n"); i++) text += Buffer.from((await reader.read()).value ?? []).toString();
    expect(JSON.parse(text)).toMatchObject({ result: { created: true } });
    reader.releaseLock();
  }
  expect(await gauge()).toBe(idle + 3);
  for (const a of aborts) a.abort();
  // bounded by progress: the watchers go as the server sees the connections close
  const deadline = Date.now() + 10_000;
  while ((await gauge()) !== idle && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  expect(await gauge()).toBe(idle);
});

test("HTTP/1.1 connections are bounded: past 1,000 open, the next is answered 503 and closed; gRPC is not refused", async () => {
  const [host, port] = strata().endpoint.split(":");
  const open: Socket[] = [];
  // every wait below ends by this deadline, so the connections are closed before the test's own timeout
  const deadline = Date.now() + 60_000;
  try {
    // 1,000 connections that started a request and never finished its headers, each waited for
    for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
      const s = connect(Number(port), host!);
      s.on("error", () => {});
      open.push(s);
      await new Promise<void>((resolve) => {
        s.once("connect", resolve);
        s.once("close", resolve);
      });
      s.write("GET /health HTTP/1.1\r\nHost: x\r\n");
    }
    // one more is one too many, once the server has taken the others in
    let refused = { text: "", closed: false };
    while (!refused.text.startsWith("HTTP/1.1 503") && Date.now() < deadline) {
      refused = await raw(strata().endpoint, "GET /version HTTP/1.1\r\nHost: x\r\n\r\n", Math.max(1, Math.min(5000, deadline - Date.now())));
    }
    expect(refused.text).toStartWith("HTTP/1.1 503");
    expect(refused.closed).toBe(true);
    // gRPC connections are not counted against it
    await strata().client.put("grpc-past-the-bound").value("1");
    expect(await strata().client.get("grpc-past-the-bound").string()).toBe("1");
  } finally {
    for (const s of open) s.destroy();
  }
  // once they closed, HTTP/1.1 is served again
  const again = Date.now() + 30_000;
  let served = { text: "", closed: false };
  while (!served.text.startsWith("HTTP/1.1 200") && Date.now() < again) {
    served = await raw(strata().endpoint, "GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5000);
  }
  expect(served.text).toStartWith("HTTP/1.1 200");
}, 120_000);

// ---- etcd's Election and Lock services, through the gateway ----

/** a recipe's key with its session's lease (hex) named by order of appearance, a leader's rev relative to `base` */
function recipeKeys(x: unknown, base: bigint, names = new Map<string, string>()): unknown {
  return JSON.parse(JSON.stringify(x), (k, v) => {
    if (k === "rev" && typeof v === "string") return `base+${BigInt(v) - base}`;
    if ((k === "key" || k === "lease") && typeof v === "string") {
      const text = k === "key" ? Buffer.from(v, "base64").toString() : BigInt(v).toString(16);
      const hex = k === "key" ? text.slice(text.lastIndexOf("/") + 1) : text;
      if (!names.has(hex)) names.set(hex, `S${names.size + 1}`);
      return k === "key" ? `${text.slice(0, text.lastIndexOf("/") + 1)}${names.get(hex)}` : names.get(hex);
    }
    return v;
  });
}

test("Election: campaign, leader, proclaim, a second campaign that waits for the first to resign, etcd's errors", async () => {
  await same(async (side) => {
    const base = await revision(side);
    const name = b64("/gw-election");
    const out: unknown[] = [];
    const first = await post(side, "/v3/election/campaign", { name, value: b64("one") });
    out.push(first);
    const leader = (first.body as { leader: Record<string, string> }).leader;
    out.push(await post(side, "/v3/election/leader", { name }));
    out.push(await post(side, "/v3/election/proclaim", { leader, value: b64("two") }));
    out.push(await post(side, "/v3/election/leader", { name }));
    // the second waits while the first leads
    let second: Answer | undefined;
    const campaigning = post(side, "/v3/election/campaign", { name, value: b64("next") }).then((a) => (second = a));
    await new Promise((r) => setTimeout(r, 500));
    out.push({ waiting: second === undefined });
    out.push(await post(side, "/v3/election/resign", { leader }));
    await campaigning;
    out.push(second);
    out.push(await post(side, "/v3/election/leader", { name }));
    // the first is not leader any more
    out.push(await post(side, "/v3/election/proclaim", { leader, value: b64("stale") }));
    out.push(await post(side, "/v3/election/proclaim", { value: b64("x") }));
    out.push(await post(side, "/v3/election/resign", {}));
    out.push(await post(side, "/v3/election/leader", { name: b64("/gw-nobody") }));
    await post(side, "/v3/election/resign", { leader: (second!.body as { leader: unknown }).leader });
    return recipeKeys(out, base);
  });
});

test("Lock: the second lock waits for the first's unlock", async () => {
  await same(async (side) => {
    const base = await revision(side);
    const name = b64("/gw-lock");
    const out: unknown[] = [];
    const held = await post(side, "/v3/lock/lock", { name });
    out.push(held);
    let second: Answer | undefined;
    const locking = post(side, "/v3/lock/lock", { name }).then((a) => (second = a));
    await new Promise((r) => setTimeout(r, 500));
    out.push({ waiting: second === undefined });
    out.push(await post(side, "/v3/lock/unlock", { key: (held.body as { key: string }).key }));
    await locking;
    out.push(second);
    out.push(await post(side, "/v3/lock/unlock", { key: (second!.body as { key: string }).key }));
    return recipeKeys(out, base);
  });
});

test("Election observe streams the leader, then each new value and each new leader", async () => {
  await same(async (side) => {
    const base = await revision(side);
    const name = b64("/gw-observed");
    const first = await post(side, "/v3/election/campaign", { name, value: b64("one") });
    const leader = (first.body as { leader: unknown }).leader;
    const res = await fetch(url(side, "/v3/election/observe"), { method: "POST", body: JSON.stringify({ name }) });
    const { next, close } = lineReader(res);
    // the changes come after the observer saw the first leader
    const seen = [await next()];
    await post(side, "/v3/election/proclaim", { leader, value: b64("two") });
    seen.push(await next());
    await post(side, "/v3/election/resign", { leader });
    const again = await post(side, "/v3/election/campaign", { name, value: b64("three") });
    seen.push(await next());
    await close();
    await post(side, "/v3/election/resign", { leader: (again.body as { leader: unknown }).leader });
    return recipeKeys(seen, base);
  });
});

test("the calls Patroni's etcd3 store makes, as it makes them, answer as etcd's", async () => {
  await same(async (side, k) => {
    const out: unknown[] = [];
    // it reads the version to pick the /v3 prefix, then the members' client URLs
    const version = (await (await fetch(url(side, "/version"))).json()) as { etcdserver: string; etcdcluster: string };
    out.push(version.etcdserver.split(".").map(Number).length, Number(version.etcdcluster.split(".")[1]) >= 4);
    const members = (await post(side, "/v3/cluster/member/list", {})).body as { members: Array<{ clientURLs: string[] }> };
    out.push(members.members[0]!.clientURLs.length);
    // a lease kept alive by a request whose whole answer is one {"result":…}
    const grant = (await post(side, "/v3/lease/grant", { TTL: 30 })).body as { ID: string };
    const keepalive = await fetch(url(side, "/v3/lease/keepalive"), { method: "POST", body: JSON.stringify({ ID: grant.ID }) });
    out.push((JSON.parse(await keepalive.text()) as { result: { TTL: string } }).result.TTL);
    // the leader key: created if absent (a compare without "result" is EQUAL), then updated at its mod revision
    const leader = k("leader");
    out.push(await post(side, "/v3/kv/txn", { compare: [{ target: "CREATE", create_revision: "0", key: leader }], success: [{ request_put: { key: leader, value: b64("pg-0"), lease: grant.ID } }] }));
    const read = (await post(side, "/v3/kv/range", { key: k(""), range_end: k("\xff"), serializable: true })).body as { kvs: Array<{ mod_revision: string }> };
    out.push(read);
    out.push(await post(side, "/v3/kv/txn", { compare: [{ target: "MOD", mod_revision: read.kvs[0]!.mod_revision, key: leader }], success: [{ request_put: { key: leader, value: b64("pg-0"), lease: grant.ID } }] }));
    out.push(await post(side, "/v3/kv/txn", { compare: [{ target: "MOD", mod_revision: "1", key: leader }], success: [{ request_delete_range: { key: leader } }] }));
    // a watch with an empty filter list
    const watch = await fetch(url(side, "/v3/watch"), { method: "POST", body: JSON.stringify({ create_request: { key: leader, filters: [] } }) });
    out.push(await lines(watch, 1));
    await post(side, "/v3/lease/revoke", { ID: grant.ID });
    return out;
  });
});

test("Patroni's cluster cache: a prefix watch from its range's revision sees its puts, its leader's lease lost, and deletes with their revisions", async () => {
  await same(async (side, k) => {
    const out: unknown[] = [];
    // its prefix's range_end: the last byte plus one
    const prefix = Buffer.from(k(""), "base64");
    const end = Buffer.from(prefix);
    end[end.length - 1]!++;
    const cluster = { key: k(""), range_end: end.toString("base64") };
    // the cache: a serializable range of the prefix, then a watch from the revision it answered at
    const first = (await post(side, "/v3/kv/range", { ...cluster, serializable: true })).body as { header: { revision: string } };
    const watch = await fetch(url(side, "/v3/watch"), { method: "POST", body: JSON.stringify({ create_request: { ...cluster, start_revision: first.header.revision, filters: [] } }) });
    const stream = lineReader(watch);
    out.push(await stream.next());
    const lease = ((await post(side, "/v3/lease/grant", { TTL: 10 })).body as { ID: string }).ID;
    // touch_member, initialize, take the leader key, write the config and history
    out.push(await post(side, "/v3/kv/put", { key: k("members/pg0"), value: b64('{"role":"master"}'), lease }));
    out.push(await post(side, "/v3/kv/txn", { compare: [{ target: "CREATE", create_revision: 0, key: k("initialize") }], success: [{ request_put: { key: k("initialize"), value: b64("7716") } }] }));
    out.push(await post(side, "/v3/kv/txn", { compare: [{ target: "CREATE", create_revision: 0, key: k("leader") }], success: [{ request_put: { key: k("leader"), value: b64("pg0"), lease } }] }));
    out.push(await post(side, "/v3/kv/txn", { compare: [{ target: "CREATE", create_revision: 0, key: k("leader") }], success: [{ request_put: { key: k("leader"), value: b64("pg1"), lease } }] }));
    out.push(await post(side, "/v3/kv/put", { key: k("history"), value: b64("[]") }));
    // the leader lost: its lease revoked deletes its keys; a keep-alive then answers without TTL, a put with it is LeaseNotFound
    await post(side, "/v3/lease/revoke", { ID: lease });
    out.push(JSON.parse(await (await fetch(url(side, "/v3/lease/keepalive"), { method: "POST", body: JSON.stringify({ ID: lease }) })).text()));
    out.push(await post(side, "/v3/kv/put", { key: k("members/pg0"), value: b64("{}"), lease }));
    out.push(await post(side, "/v3/kv/txn", { compare: [{ target: "CREATE", create_revision: 0, key: k("leader") }], success: [{ request_put: { key: k("leader"), value: b64("pg0"), lease } }] }));
    // delete_cluster
    out.push(await post(side, "/v3/kv/deleterange", cluster));
    // every event the watch delivers, however the server groups them into responses: 4 puts, 2 deletes by the revoke, 2 by delete_cluster
    const events: unknown[] = [];
    for (let i = 0; i < 20 && events.length < 8; i++) {
      const line = (await stream.next()) as { result?: { events?: unknown[] } };
      if (!line.result) break;
      events.push(...(line.result.events ?? []));
    }
    await stream.close();
    out.push(events);
    return out;
  });
});

test("a Patroni that stops cuts its watch stream mid-wait: the watch ends quietly, strata logs no internal error", async () => {
  const logged = () => (strata().stderr!().match(/"internal error"/g) ?? []).length;
  /** Watch calls that ended because their client went away */
  const cancelled = async () => {
    const text = await (await fetch(url(strata(), "/metrics"))).text();
    return Number(text.match(/^grpc_server_handled_total\{grpc_code="Canceled",grpc_method="Watch",[^}]*\} (\d+)$/m)?.[1] ?? 0);
  };
  const before = { logged: logged(), cancelled: await cancelled() };
  const abort = new AbortController();
  const res = await fetch(url(strata(), "/v3/watch"), { method: "POST", body: JSON.stringify({ create_request: { key: b64("gw-cut") } }), signal: abort.signal });
  // the watch is created; the server now waits for the next event
  const reader = res.body!.getReader();
  let text = "";
  for (let i = 0; i < 100 && !text.includes("\n"); i++) text += Buffer.from((await reader.read()).value ?? []).toString();
  expect(JSON.parse(text)).toMatchObject({ result: { created: true } });
  abort.abort();
  // bounded by progress: the call ended as cancelled (what follows its end has run by the next round trip)
  const deadline = Date.now() + 10_000;
  while ((await cancelled()) === before.cancelled && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect(await cancelled()).toBe(before.cancelled + 1);
  expect(logged()).toBe(before.logged);
});
