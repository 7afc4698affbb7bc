// Starts a real etcd (Debian's etcd-server) on free loopback ports in a temp dir.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { freePort } from "../../scripts/databases.ts";

export interface EtcdProcess {
  endpoint: string;
  /** the process ID (its memory can be read from /proc) */
  pid(): number;
  /** the data directory */
  dataDir: string;
  /** SIGTERM, then waits for the exit; the data stays, for restart */
  terminate(): Promise<void>;
  /** starts etcd again on the same data and ports (a read-only readiness probe) */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** PEM files for an etcd that serves TLS only and asks clients for a certificate the CA signed */
export interface EtcdTls {
  ca: string;
  cert: string;
  key: string;
  /** a client certificate and key for the readiness probe */
  client: { cert: string; key: string };
}

/**
 * `restore`: fills the data dir before etcd starts on it (`etcdctl snapshot restore`); the
 * readiness probe then only reads, so the restored revision stays as it was.
 */
export async function startEtcd(extraArgs: string[] = [], tls?: EtcdTls, restore?: (dataDir: string, peerUrl: string) => void): Promise<EtcdProcess> {
  const dir = mkdtempSync(join(tmpdir(), "etcd-test-"));
  const client = await freePort();
  const peer = await freePort();
  restore?.(join(dir, "data"), `http://127.0.0.1:${peer}`);
  const endpoint = `127.0.0.1:${client}`;
  const scheme = tls ? "https" : "http";
  const tlsArgs = tls ? ["--cert-file", tls.cert, "--key-file", tls.key, "--client-cert-auth", "--trusted-ca-file", tls.ca] : [];
  let err = "";
  let child: ChildProcess;
  const launch = async (readOnlyProbe: boolean) => {
    child = spawn("etcd", [
      "--name", "default",
      "--data-dir", join(dir, "data"),
      "--listen-client-urls", `${scheme}://${endpoint}`,
      "--advertise-client-urls", `${scheme}://${endpoint}`,
      ...tlsArgs,
      "--listen-peer-urls", `http://127.0.0.1:${peer}`,
      "--initial-advertise-peer-urls", `http://127.0.0.1:${peer}`,
      "--initial-cluster", `default=http://127.0.0.1:${peer}`,
      ...extraArgs,
    ], { stdio: ["ignore", "ignore", "pipe"] });
    child.stderr!.on("data", (d) => (err = (err + d).slice(-4000)));
    const deadline = Date.now() + 20_000;
    for (;;) {
      const c = new Etcd3({
        hosts: `${scheme}://${endpoint}`,
        dialTimeout: 500,
        ...(tls && {
          credentials: { rootCertificate: readFileSync(tls.ca), certChain: readFileSync(tls.client.cert), privateKey: readFileSync(tls.client.key) },
          // grpc-js would name the IP address as the TLS server name, which Bun refuses
          grpcOptions: { "grpc.ssl_target_name_override": "localhost" },
        }),
      } as never);
      try {
        if (readOnlyProbe) await c.get("ready-probe").exec();
        else {
          await c.put("ready-probe").value("1").exec();
          await c.delete().key("ready-probe").exec();
        }
        break;
      } catch (e) {
        // with auth on (a restored snapshot's), an anonymous read is refused: etcd answers, so it is ready
        if (/user name is empty|permission denied/.test((e as Error).message)) break;
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`etcd did not start on ${endpoint}: ${err}`);
        await new Promise((r) => setTimeout(r, 100));
      } finally {
        c.close();
      }
    }
  };
  await launch(restore !== undefined);
  const terminate = async () => {
    // stopping twice is stopping once
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    }
  };
  return {
    endpoint,
    pid: () => child.pid!,
    dataDir: join(dir, "data"),
    terminate,
    restart: () => launch(true),
    stop: async () => {
      await terminate();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** the version of the etcd binary the tests start, as [major, minor, patch] */
export function etcdVersion(): [number, number, number] {
  const out = spawnSync("etcd", ["--version"], { encoding: "utf8" }).stdout ?? "";
  const m = /etcd Version: (\d+)\.(\d+)\.(\d+)/.exec(out);
  if (!m) throw new Error(`cannot tell the etcd version from: ${out}`);
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}
