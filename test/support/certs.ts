// Certificates for TLS tests, made with openssl in a directory: CAs, and certificates
// they sign for servers (SAN 127.0.0.1 and localhost) and clients.
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
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

export const read = (path: string): Buffer => readFileSync(path);
