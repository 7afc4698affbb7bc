// strata started with an etcd command line, as kubeadm's static pod manifest for etcd
// writes it (TLS with client certificates, two client URLs, a data dir, a metrics URL,
// peer and raft flags), with only the binary changed; etcdctl then talks to it as to etcd.
// Bad data dirs are refused with one line naming the path.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { makeCa, makeCert, type Pem } from "../support/certs.ts";
import { FrameType, H2TestClient } from "../support/h2-client.ts";
import { freePort, startStrata } from "../support/strata.ts";

const MAIN = resolve(import.meta.dir, "../../src/main.ts");
const dir = mkdtempSync(join(tmpdir(), "strata-etcd-flags-"));
let ca: Pem, server: Pem, client: Pem;
let child: ChildProcess | undefined;
let stderr = "";
let endpoints: string[] = [];
let metrics = "";
const dataDir = join(dir, "var", "lib", "etcd");

function etcdctl(endpoint: string, ...args: string[]) {
  const tls = [`--cacert=${ca.cert}`, `--cert=${client.cert}`, `--key=${client.key}`];
  return spawnSync("etcdctl", [`--endpoints=${endpoint}`, ...tls, "--command-timeout=10s", ...args], { encoding: "utf8", env: { ...process.env, ETCDCTL_API: "3" } });
}

/** strata with these arguments until it exits; its exit code and what it wrote */
function runToExit(args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: "utf8", timeout: 60_000 });
  return { status: r.status, stderr: r.stderr };
}

beforeAll(async () => {
  ca = makeCa(dir, "ca");
  server = makeCert(dir, "server", ca, "server");
  client = makeCert(dir, "client", ca, "client");
  const [a, b, m, peer] = [await freePort(), await freePort(), await freePort(), await freePort()];
  endpoints = [`https://127.0.0.1:${a}`, `https://localhost:${b}`];
  metrics = `http://127.0.0.1:${m}`;
  // kubeadm's manifest, its paths and addresses made local
  const args = [
    `--advertise-client-urls=https://127.0.0.1:${a}`,
    `--cert-file=${server.cert}`,
    "--client-cert-auth=true",
    `--data-dir=${dataDir}`,
    "--experimental-initial-corrupt-check=true",
    "--experimental-watch-progress-notify-interval=5s",
    `--initial-advertise-peer-urls=https://127.0.0.1:${peer}`,
    `--initial-cluster=node-1=https://127.0.0.1:${peer}`,
    `--key-file=${server.key}`,
    `--listen-client-urls=${endpoints.join(",")}`,
    `--listen-metrics-urls=${metrics}`,
    `--listen-peer-urls=https://127.0.0.1:${peer}`,
    "--name=node-1",
    `--peer-cert-file=${server.cert}`,
    "--peer-client-cert-auth=true",
    `--peer-key-file=${server.key}`,
    `--peer-trusted-ca-file=${ca.cert}`,
    "--snapshot-count=10000",
    `--trusted-ca-file=${ca.cert}`,
  ];
  child = spawn(process.execPath, [MAIN, ...args], { stdio: ["ignore", "ignore", "pipe"] });
  child.stderr!.on("data", (d) => (stderr = (stderr + d).slice(-20_000)));
  // ready once it says so (it logs after every listener is up), or it exited
  const deadline = Date.now() + 60_000;
  while (!stderr.includes("serving etcd v3 API")) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`strata did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}, 90_000);

afterAll(async () => {
  if (child && child.exitCode === null) {
    child.kill("SIGTERM");
    await new Promise((r) => child!.once("exit", r));
  }
  rmSync(dir, { recursive: true, force: true });
});

describe("an etcd command line (kubeadm's static pod)", () => {
  test("etcdctl puts through one client URL and reads through the other", () => {
    const put = etcdctl(endpoints[0]!, "put", "/registry/flags", "kubeadm");
    expect(`${put.stdout}${put.stderr}`).toBe("OK\n");
    const get = etcdctl(endpoints[1]!, "get", "/registry/flags", "--print-value-only");
    expect(`${get.stdout}${get.stderr}`).toBe("kubeadm\n");
    const members = etcdctl(endpoints[1]!, "member", "list");
    expect(members.stdout).toMatch(new RegExp(`, started, node-1, , ${endpoints[0]}, false\n$`));
  });

  test("without a client certificate the TLS handshake is refused", () => {
    const r = spawnSync("etcdctl", [`--endpoints=${endpoints[0]}`, `--cacert=${ca.cert}`, "--dial-timeout=2s", "--command-timeout=3s", "get", "x"], { encoding: "utf8", env: { ...process.env, ETCDCTL_API: "3" } });
    expect(r.status).not.toBe(0);
  });

  test("the data dir is made (mode 0700) and holds strata's SQLite database", () => {
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    expect(existsSync(join(dataDir, "strata.db"))).toBe(true);
  });

  test("the metrics URL serves etcd's /health and /metrics", async () => {
    const health = await fetch(`${metrics}/health`);
    expect([health.status, await health.json()]).toEqual([200, { health: "true", reason: "" }]);
    expect(await (await fetch(`${metrics}/metrics`)).text()).toContain("etcd_mvcc_db_total_size_in_bytes");
  });

  test("the raft and peer flags are named in one warning", () => {
    const warnings = stderr.split("\n").filter((l) => l.includes("ignoring etcd flags"));
    expect(warnings).toHaveLength(1);
    expect(JSON.parse(warnings[0]!).flags).toBe(
      "--experimental-initial-corrupt-check --initial-advertise-peer-urls --initial-cluster --listen-peer-urls --peer-cert-file --peer-client-cert-auth --peer-key-file --peer-trusted-ca-file --snapshot-count",
    );
  });
});

describe("data dirs strata cannot use", () => {
  const listen = async () => `--listen-client-urls=http://127.0.0.1:${await freePort()}`;
  test("a data dir that cannot be made is named, and strata exits 2", async () => {
    const file = join(dir, "a-file");
    writeFileSync(file, "");
    const r = runToExit([`--data-dir=${join(file, "etcd")}`, await listen(), "--listen-metrics-urls="]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`strata: configuration error: --data-dir ${join(file, "etcd")}: cannot create the directory:`);
  }, 60_000);

  test("an etcd's own data dir is refused, with the import that brings its keys over", async () => {
    const etcdDir = join(dir, "etcd-data");
    mkdirSync(join(etcdDir, "member", "snap"), { recursive: true });
    const r = runToExit([`--data-dir=${etcdDir}`, await listen(), "--listen-metrics-urls="]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`--data-dir ${etcdDir} holds an etcd's data (member/) and no strata database`);
    expect(r.stderr).toContain(`strata import --from-snapshot ${join(etcdDir, "member", "snap", "db")} --data-dir ${etcdDir}`);
    expect(existsSync(join(etcdDir, "strata.db"))).toBe(false);
  }, 60_000);
});

describe("--max-concurrent-streams", () => {
  /** SETTINGS_MAX_CONCURRENT_STREAMS in strata's first SETTINGS frame */
  const advertised = async (value: string) => {
    const s = await startStrata(["--max-concurrent-streams", value]);
    const c = await H2TestClient.connect(Number(s.endpoint.split(":")[1]));
    try {
      const settings = () => c.frames.find((f) => f.type === FrameType.SETTINGS && f.payload.length > 0);
      await c.until(() => settings() !== undefined, 10_000, "strata's SETTINGS");
      const p = settings()!.payload;
      for (let o = 0; o + 6 <= p.length; o += 6) if (p.readUInt16BE(o) === 0x3) return p.readUInt32BE(o + 2);
      return undefined;
    } finally {
      c.close();
      await s.stop();
    }
  };
  test("lowers the streams a connection may open, as etcd's flag; etcd's default (no limit) keeps strata's bound", async () => {
    expect(await advertised("100")).toBe(100);
    expect(await advertised("4294967295")).toBe(10_000);
  }, 120_000);
});
