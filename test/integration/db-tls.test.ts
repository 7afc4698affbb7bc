// TLS to the database from the backend URL: against a server that accepts TLS clients
// only, strata works with the URL's TLS parameter and is refused without it.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Etcd3 } from "etcd3";
import { type DatabaseServer, freePort, startMariadb, startNats, startPostgres } from "../../scripts/databases.ts";
import { BACKEND, startStrata } from "../support/strata.ts";

if (BACKEND === "sqlite") throw new Error("the TLS test needs STRATA_TEST_BACKEND=postgres, mariadb or nats");

let db: DatabaseServer;
beforeAll(async () => {
  db = await ({ postgres: startPostgres, mariadb: startMariadb, nats: startNats }[BACKEND]!)({ tls: true });
}, 60_000);
afterAll(async () => {
  await db?.destroy();
}, 30_000);

test(`${BACKEND} over TLS: served with the URL's TLS parameter, refused without it`, async () => {
  const url = db.createDatabase("strata_tls");
  expect(url).toMatch(/[?&](sslmode=require|ssl=skip-verify|ca=[^&]+)$/);
  const strata = await startStrata([], url);
  const c = new Etcd3({ hosts: strata.endpoint });
  await c.put("tls/a").value("1").exec();
  expect(await c.get("tls/a").string()).toBe("1");
  c.close();
  await strata.stop();

  const plain = url.replace(/\?.*$/, "");
  const refused = spawnSync(process.execPath, [
    resolve(import.meta.dir, "../../src/main.ts"), "serve", "--listen", `http://127.0.0.1:${await freePort()}`, "--backend", plain,
  ], { encoding: "utf8", timeout: 30_000 });
  expect(refused.status).toBe(1);
  expect(refused.stderr).toContain(`strata: cannot start: backend ${{ mariadb: "mysql", postgres: "postgres", nats: "nats" }[BACKEND]}://`);
}, 60_000);

test(`${BACKEND}: HariKube's backendTLS verifies the server against its caFile, and a wrong CA is refused`, async () => {
  const url = db.createDatabase("strata_tls_harikube").replace(/[?&](sslmode=require|ssl=skip-verify|ca=[^&]+)$/, "");
  const dir = mkdtempSync(join(tmpdir(), "strata-backend-tls-"));
  const config = (caFile: string) => {
    const path = join(dir, `topology-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(path, `backends:\n  - name: main\n    endpoint: ${url}\n    backendTLS: { caFile: ${caFile} }\n`);
    return path;
  };
  const strata = await startStrata(["--config", config(db.certFile!)]);
  const c = new Etcd3({ hosts: strata.endpoint });
  await c.put("tls/harikube").value("1").exec();
  expect(await c.get("tls/harikube").string()).toBe("1");
  c.close();
  await strata.stop();

  // a certificate for the same address that did not sign the server's
  const other = join(dir, "other.crt");
  spawnSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", join(dir, "other.key"), "-out", other, "-days", "2",
    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]);
  const refused = spawnSync(process.execPath, [
    resolve(import.meta.dir, "../../src/main.ts"), "serve", "--listen", `http://127.0.0.1:${await freePort()}`, "--metrics-listen", "", "--config", config(other),
  ], { encoding: "utf8", timeout: 30_000, env: { ...process.env, STRATA_CONFIG: "" } });
  expect(refused.status).toBe(1);
  expect(refused.stderr).toContain("strata: cannot start: backend");
  expect(refused.stderr).toMatch(/certificate|self.signed/i);
}, 60_000);
