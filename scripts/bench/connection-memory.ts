// What an idle client connection costs strata, and etcd beside it (docs/http2-limits.md,
// --max-connections): opens N connections over h2c, then over TLS, each sending the
// HTTP/2 preface and SETTINGS and nothing else, and prints each server's RSS growth per
// connection. Usage: bun scripts/bench/connection-memory.ts [N]   (default 2000)
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeCa, makeCert, read } from "../../test/support/certs.ts";
import { startEtcd } from "../../test/support/etcd.ts";
import { FrameType, H2TestClient } from "../../test/support/h2-client.ts";
import { startStrata } from "../../test/support/strata.ts";

const N = Number(process.argv[2] ?? 2000);
const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;
const dir = mkdtempSync(join(tmpdir(), "strata-connection-memory-"));
const ca = makeCa(dir, "ca");
const files = { ca: ca.cert, server: makeCert(dir, "server", ca, "server"), client: makeCert(dir, "client", ca, "client") };

for (const secure of [false, true]) {
  const clientTls = secure ? { ca: read(files.ca), cert: read(files.client.cert), key: read(files.client.key) } : undefined;
  const tlsArgs = secure ? ["--cert-file", files.server.cert, "--key-file", files.server.key, "--trusted-ca-file", files.ca, "--client-cert-auth"] : [];
  const strata = await startStrata(["--max-connections", "0", ...tlsArgs], undefined, "bun", clientTls);
  const etcd = await startEtcd([], secure ? { ca: files.ca, cert: files.server.cert, key: files.server.key, client: files.client } : undefined);
  for (const [name, endpoint, pid] of [["strata", strata.endpoint, strata.pid()], ["etcd", etcd.endpoint, etcd.pid()]] as const) {
    await new Promise((r) => setTimeout(r, 1000));
    const before = rssMiB(pid);
    const clients: H2TestClient[] = [];
    // fifty at a time, each until the server's SETTINGS arrived
    for (let i = 0; i < N; i += 50) {
      clients.push(...await Promise.all(Array.from({ length: Math.min(50, N - i) }, async () => {
        const c = await H2TestClient.connect(Number(endpoint.split(":")[1]), [], clientTls);
        await c.until(() => c.frames.some((f) => f.type === FrameType.SETTINGS), 10_000, "the server's SETTINGS");
        return c;
      })));
    }
    await new Promise((r) => setTimeout(r, 2000));
    const after = rssMiB(pid);
    console.log(JSON.stringify({ transport: secure ? "TLS" : "h2c", target: name, connections: N, rssMiB: [Math.round(before), Math.round(after)], perConnectionKiB: Math.round(((after - before) * 1024) / N) }));
    for (const c of clients) c.close();
  }
  await Promise.all([strata.stop(), etcd.stop()]);
}
rmSync(dir, { recursive: true, force: true });
process.exit(0);
