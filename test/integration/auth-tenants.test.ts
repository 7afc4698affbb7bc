// Two tenants on one server, told apart by their client certificates (etcd's
// --client-cert-auth: a verified certificate's CN is the user when no token is given),
// each with a role on its own prefix, and a root certificate that sees both: the same
// etcdctl session against a real etcd and against strata must print the same.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeCa, makeCert, type Pem, read } from "../support/certs.ts";
import { type EtcdProcess, startEtcd } from "../support/etcd.ts";
import { startStrata, type StrataProcess } from "../support/strata.ts";

const dir = mkdtempSync(join(tmpdir(), "strata-auth-tenants-"));
let ca: Pem, server: Pem;
const certs: Record<string, Pem> = {};
let etcd: EtcdProcess, strata: StrataProcess;

beforeAll(async () => {
  ca = makeCa(dir, "ca");
  server = makeCert(dir, "server", ca, "server");
  for (const name of ["root", "tenant-a", "tenant-b"]) certs[name] = makeCert(dir, name, ca, "client");
  const tlsArgs = ["--cert-file", server.cert, "--key-file", server.key, "--trusted-ca-file", ca.cert, "--client-cert-auth"];
  [etcd, strata] = await Promise.all([
    startEtcd(["--bcrypt-cost", "4"], { ca: ca.cert, cert: server.cert, key: server.key, client: certs.root! }),
    startStrata([...tlsArgs, "--bcrypt-cost", "4"], undefined, "bun", { ca: read(ca.cert), cert: read(certs.root!.cert), key: read(certs.root!.key) }),
  ]);
}, 60_000);

afterAll(async () => {
  await Promise.all([etcd?.stop(), strata?.stop()]);
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

/** etcdctl as the holder of `cert`, over TLS; what it printed and how it exited */
function ctl(endpoint: string, cert: Pem, args: string[], input?: string): string {
  const r = spawnSync("etcdctl", [
    `--endpoints=https://${endpoint}`, "--cacert", ca.cert, "--cert", cert.cert, "--key", cert.key, "--dial-timeout=5s", ...args,
  ], { input, encoding: "utf8" });
  const err = r.stderr.split("\n").filter((l) => l !== "" && !l.startsWith('{"level"')).join("\n");
  return `$ ${args.join(" ")}\n${r.stdout}${err}${err ? "\n" : ""}exit ${r.status}`.replaceAll(endpoint, "ENDPOINT");
}

function session(endpoint: string): string[] {
  const as = (who: string, ...args: string[]) => ctl(endpoint, certs[who]!, args);
  const out: string[] = [];
  // set up before auth is on: root keeps a password, the tenants have none (certificates only)
  for (const args of [["user", "add", "root:rootpw"], ["role", "add", "root"], ["user", "grant-role", "root", "root"]]) out.push(as("root", ...args));
  for (const t of ["tenant-a", "tenant-b"]) {
    out.push(as("root", "user", "add", t, "--no-password"));
    out.push(as("root", "role", "add", t));
    out.push(as("root", "role", "grant-permission", t, "readwrite", `/${t}/registry/`, "--prefix=true"));
    out.push(as("root", "user", "grant-role", t, t));
  }
  out.push(as("root", "auth", "enable"));
  for (const [me, other] of [["tenant-a", "tenant-b"], ["tenant-b", "tenant-a"]] as const) {
    out.push(as(me, "put", `/${me}/registry/pods/default/p1`, `${me} pod`));
    out.push(as(me, "get", `/${me}/registry/`, "--prefix"));
    out.push(as(me, "get", `/${other}/registry/`, "--prefix"));
    out.push(as(me, "put", `/${other}/registry/pods/default/p1`, "intruder"));
    out.push(as(me, "del", `/${other}/registry/`, "--prefix"));
    out.push(as(me, "get", "/", "--prefix", "--keys-only"));
    out.push(ctl(endpoint, certs[me]!, ["txn"], `value("/${other}/registry/pods/default/p1") = "x"\n\nput /${me}/registry/x 1\n\n\n`));
    out.push(as(me, "user", "list"));
    // a tenant's certificate is not a password: authenticating with one is refused
    out.push(as(me, "--user", `${me}:anything`, "get", `/${me}/registry/`, "--prefix"));
  }
  out.push(as("root", "get", "/", "--prefix"));
  out.push(as("root", "user", "list"));
  out.push(as("root", "auth", "disable"));
  return out;
}

describe("two tenants with client certificates", () => {
  test("each reads and writes only its prefix; root sees both; the same as etcd", () => {
    const theirs = session(etcd.endpoint);
    const ours = session(strata.endpoint);
    if (process.env.AUTH_DEBUG) console.log(ours.join("\n"));
    expect(ours).toEqual(theirs);
    // the session is what it claims: tenants were refused the other's keys
    expect(ours.filter((o) => o.includes("permission denied")).length).toBeGreaterThanOrEqual(8);
  }, 60_000);

  test("a certificate from another CA is refused at the handshake", () => {
    const other = makeCa(dir, "other-ca");
    const stranger = makeCert(dir, "stranger", other, "client");
    const out = ctl(strata.endpoint, stranger, ["get", "/", "--prefix", "--command-timeout=5s"]);
    expect(out).toEndWith("exit 1");
    expect(out).not.toContain("tenant");
  }, 30_000);
});
