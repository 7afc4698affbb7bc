// Certificates for TLS tests, made with openssl in a directory: CAs, certificates they
// sign for servers (SAN 127.0.0.1 and localhost) and clients, and CRLs revoking some.
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface Pem {
  cert: string;
  key: string;
}

function openssl(dir: string, args: string[]): void {
  const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${r.error?.message ?? r.stderr}`);
}

const files = (dir: string, name: string): Pem => ({ cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) });

/** A self-signed CA: NAME.crt and NAME.key in dir. */
export function makeCa(dir: string, name: string): Pem {
  openssl(dir, [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", `${name}.key`, "-out", `${name}.crt`, "-days", "2", "-subj", `/CN=${name}`,
  ]);
  return files(dir, name);
}

/** A certificate signed by `ca`, for a server (SAN 127.0.0.1, localhost) or a client. */
export function makeCert(dir: string, name: string, ca: Pem, use: "server" | "client"): Pem {
  openssl(dir, [
    "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`,
  ]);
  const ext = use === "server"
    ? "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    : "extendedKeyUsage=clientAuth\n";
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(dir, [
    "x509", "-req", "-in", `${name}.csr`, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial",
    "-out", `${name}.crt`, "-days", "2", "-extfile", `${name}.ext`,
  ]);
  return files(dir, name);
}

/**
 * NAME.crl in dir: `ca`'s revocation list naming `revoked` (PEM, or DER), valid from now
 * for a day unless `expired` (its next update a year ago, as an operator's stale CRL).
 */
export function makeCrl(dir: string, name: string, ca: Pem, revoked: Pem[], o: { der?: boolean; expired?: boolean } = {}): string {
  // openssl ca keeps its state in a small database of its own
  const db = join(dir, `${name}.ca`);
  rmSync(db, { recursive: true, force: true });
  mkdirSync(db);
  writeFileSync(join(db, "index.txt"), "");
  writeFileSync(join(db, "crlnumber"), "01\n");
  writeFileSync(join(db, "ca.cnf"), `[ca]\ndefault_ca = d\n[d]\ndatabase = ${db}/index.txt\ncrlnumber = ${db}/crlnumber\ndefault_md = sha256\ndefault_crl_days = 1\n`);
  const ca_ = ["-config", join(db, "ca.cnf"), "-keyfile", ca.key, "-cert", ca.cert];
  for (const r of revoked) openssl(dir, ["ca", ...ca_, "-revoke", r.cert]);
  const yearAgo = (days: number) => new Date(Date.now() - days * 86_400_000).toISOString().replace(/[-:T]/g, "").slice(0, 14) + "Z";
  const dates = o.expired ? ["-crl_lastupdate", yearAgo(366), "-crl_nextupdate", yearAgo(365)] : [];
  const pem = join(dir, `${name}.crl.pem`);
  openssl(dir, ["ca", ...ca_, "-gencrl", ...dates, "-out", pem]);
  const out = join(dir, `${name}.crl`);
  openssl(dir, ["crl", "-in", pem, "-outform", o.der ? "DER" : "PEM", "-out", out]);
  return out;
}

export const read = (path: string): Buffer => readFileSync(path);
