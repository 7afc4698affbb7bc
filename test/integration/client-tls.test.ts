// The command-line tools dial a strata that demands client certificates: `strata migrate
// --endpoint https://...` and `strata import --from https://...` with etcdctl's --cacert,
// --cert and --key. Without a client certificate the server refuses them; a file that
// cannot be read, or TLS flags on an http:// URL, are named before anything is sent.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeCa, makeCert, type Pem, read } from "../support/certs.ts";
import { strataCli as cli, writeConfig } from "../support/cli.ts";
import { type ClientTls, etcdClient, freshDatabase, startStrata, type StrataProcess } from "../support/strata.ts";

const dir = mkdtempSync(join(tmpdir(), "strata-client-tls-"));
let ca: Pem, client: Pem;
let tls: ClientTls;
let strata: StrataProcess;
let one: string, two: string;

const config = (name: string, lines: string[]) => writeConfig(dir, name, lines);

beforeAll(async () => {
  ca = makeCa(dir, "ca");
  const server = makeCert(dir, "server", ca, "server");
  client = makeCert(dir, "client", ca, "client");
  tls = { ca: read(ca.cert), cert: read(client.cert), key: read(client.key) };
  one = await freshDatabase("sqlite", dir);
  two = await freshDatabase("sqlite", dir);
  const rules = config("running.yaml", ["backends:", `  main: ${one}`, `  side: ${two}`, "default: main"]);
  strata = await startStrata(
    ["--config", rules, "--cert-file", server.cert, "--key-file", server.key, "--trusted-ca-file", ca.cert, "--client-cert-auth"],
    undefined, "bun", tls,
  );
  const c = etcdClient(strata.endpoint, tls);
  try {
    for (let i = 0; i < 10; i++) await c.put(`/registry/pods/team-a/p${i}`).value(`v${i}`);
  } finally {
    c.close();
  }
}, 60_000);

afterAll(async () => {
  await strata?.stop();
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe("command-line tools over TLS", () => {
  test("migrate --endpoint https:// moves keys with a client certificate and is refused without one", async () => {
    const endpoint = `https://${strata.endpoint}`;
    const next = config("next.yaml", ["backends:", `  main: ${one}`, `  side: ${two}`, "default: main", "routes:", "  - match: { namespace: \"team-*\" }", "    backend: side"]);
    const noCert = await cli("migrate", "--to-config", next, "--endpoint", endpoint, "--cacert", ca.cert);
    expect(noCert.stderr).toContain("CERTIFICATE_REQUIRED");
    expect(noCert.status).toBe(1);
    expect(noCert.stderr).not.toContain("keys moved");
    const plain = await cli("migrate", "--to-config", next, "--endpoint", `http://${strata.endpoint}`, "--cacert", ca.cert);
    expect(plain.stderr).toContain("--cacert given for http://");
    expect(plain.status).toBe(2);
    const missing = await cli("migrate", "--to-config", next, "--endpoint", endpoint, "--cacert", ca.cert, "--cert", join(dir, "absent.pem"), "--key", client.key);
    expect(missing.stderr).toContain(`--cert ${join(dir, "absent.pem")}: cannot read the file`);
    expect(missing.status).toBe(2);
    const moved = await cli("migrate", "--to-config", next, "--endpoint", endpoint, "--cacert", ca.cert, "--cert", client.cert, "--key", client.key);
    expect(moved.stderr).toContain("done: 10 keys moved");
    expect(moved.status).toBe(0);
  }, 60_000);

  test("import --from https:// copies a TLS server's keyspace with a client certificate", async () => {
    const target = await freshDatabase("sqlite", dir);
    const from = `https://${strata.endpoint}`;
    const refused = await cli("import", "--from", from, "--cacert", ca.cert, "--backend", target);
    expect(refused.stderr).toContain("CERTIFICATE_REQUIRED");
    expect(refused.status).toBe(1);
    const done = await cli("import", "--from", from, "--cacert", ca.cert, "--cert", client.cert, "--key", client.key, "--backend", target);
    expect(done.stderr).toContain("10 keys");
    expect(done.status).toBe(0);
    // the copy serves the same values
    const copy = await startStrata([], target);
    const c = etcdClient(copy.endpoint);
    try {
      expect(await c.get("/registry/pods/team-a/p7").string()).toBe("v7");
      expect(await c.getAll().prefix("/registry/pods/").count()).toBe(10);
    } finally {
      c.close();
      await copy.stop();
    }
  }, 60_000);
});
