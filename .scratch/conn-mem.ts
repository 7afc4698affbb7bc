import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeCa, makeCert, read } from "../test/support/certs.ts";
import { startEtcd } from "../test/support/etcd.ts";
import { H2TestClient, FrameType } from "../test/support/h2-client.ts";
import { startStrata } from "../test/support/strata.ts";
const rss = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;
const N = 2000;
const dir = mkdtempSync(join(tmpdir(), "connmem-"));
const ca = makeCa(dir, "ca");
const files = { ca: ca.cert, server: makeCert(dir, "server", ca, "server"), client: makeCert(dir, "client", ca, "client") };
for (const secure of [false, true]) {
  const clientTls = secure ? { ca: read(files.ca), cert: read(files.client.cert), key: read(files.client.key) } : undefined;
  const s = await startStrata(secure ? ["--cert-file", files.server.cert, "--key-file", files.server.key, "--trusted-ca-file", files.ca, "--client-cert-auth"] : [], undefined, "bun", clientTls);
  const e = await startEtcd([], secure ? { ca: files.ca, cert: files.server.cert, key: files.server.key, client: files.client } : undefined);
  for (const [name, endpoint, pid] of [["strata", s.endpoint, s.pid()], ["etcd", e.endpoint, e.pid()]] as const) {
    await new Promise((r) => setTimeout(r, 1000));
    const before = rss(pid);
    const cs: H2TestClient[] = [];
    for (let i = 0; i < N; i += 50) {
      cs.push(...await Promise.all(Array.from({ length: 50 }, async () => {
        const c = await H2TestClient.connect(Number(endpoint.split(":")[1]), [], clientTls);
        await c.until(() => c.frames.some((f) => f.type === FrameType.SETTINGS), 10000);
        return c;
      })));
    }
    await new Promise((r) => setTimeout(r, 2000));
    const after = rss(pid);
    console.log(JSON.stringify({ transport: secure ? "TLS" : "h2c", target: name, connections: N, rssBefore: Math.round(before), rssAfter: Math.round(after), perConnectionKiB: Math.round((after - before) * 1024 / N) }));
    for (const c of cs) c.close();
  }
  await s.stop(); await e.stop();
}
process.exit(0);
