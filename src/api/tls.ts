// TLS for the etcd API, as etcd's --cert-file, --key-file, --trusted-ca-file and
// --client-cert-auth. The files are read at start, where any problem stops strata with a
// line naming the flag and the file, and read again whenever they change, so
// certificates rotate without a restart; a broken new file keeps the old ones in use.
import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { createSecureContext, type SecureContextOptions, type Server as TlsServer, type TlsOptions } from "node:tls";
import { ConfigError } from "../config/config-error.ts";
import type { TlsSettings } from "../config/tls-settings.ts";

type Log = (level: string, msg: string, fields?: Record<string, unknown>) => void;

/** Options for the TLS listener; throws ConfigError naming the flag and file at fault. */
export function tlsServerOptions(s: TlsSettings): TlsOptions {
  return {
    ...readCertificates(s),
    ALPNProtocols: ["h2"],
    // with --client-cert-auth the handshake fails without a certificate signed by the CA
    requestCert: s.clientCertAuth,
    rejectUnauthorized: s.clientCertAuth,
  };
}

/** Reads and checks the files, one at a time so that a broken one is named. */
function readCertificates(s: TlsSettings): SecureContextOptions {
  const cert = read("cert-file", s.certFile);
  const key = read("key-file", s.keyFile);
  const ca = s.trustedCaFile ? read("trusted-ca-file", s.trustedCaFile) : undefined;
  parse("cert-file", s.certFile, "a PEM certificate", () => new X509Certificate(cert));
  parse("key-file", s.keyFile, "a PEM private key", () => createPrivateKey(key));
  if (ca && s.trustedCaFile) {
    parse("trusted-ca-file", s.trustedCaFile, "PEM CA certificates", () => {
      new X509Certificate(ca);
      createSecureContext({ ca });
    });
  }
  const options = { cert, key, ca };
  try {
    createSecureContext(options);
  } catch (err) {
    const msg = (err as Error).message;
    if (/KEY_VALUES_MISMATCH|key values mismatch/i.test(msg)) {
      throw new ConfigError(`--key-file ${s.keyFile} is not the key of --cert-file ${s.certFile}`);
    }
    throw new ConfigError(`--cert-file ${s.certFile} with --key-file ${s.keyFile}: ${msg}`);
  }
  return options;
}

function read(flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`--${flag} ${path}: cannot read the file: ${(err as Error).message}`);
  }
}

function parse(flag: string, path: string, what: string, fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    throw new ConfigError(`--${flag} ${path}: not ${what}: ${(err as Error).message}`);
  }
}

/**
 * Looks after a TLS server while it runs: logs the handshakes it refuses (a client
 * without an acceptable certificate), and reloads the certificates when their files
 * change. Returns a function that stops the reloading.
 */
export function superviseTls(server: TlsServer, s: TlsSettings, log: Log): () => void {
  server.on("tlsClientError", (err: Error, socket: { remoteAddress?: string; remotePort?: number }) => {
    log("warn", "TLS handshake refused", { remote: `${socket.remoteAddress}:${socket.remotePort}`, error: err.message });
  });
  return reloadOnChange(server, s, log);
}

/**
 * Polls the files every second and hands changed certificates to the server for new
 * connections (open ones keep theirs). A file caught half-written, or a key that does
 * not match yet, is logged and the old certificates stay until the next change.
 * Returns a function that stops polling.
 */
function reloadOnChange(server: TlsServer, s: TlsSettings, log: Log, everyMs = 1000): () => void {
  const files = [s.certFile, s.keyFile, s.trustedCaFile].filter((f): f is string => !!f);
  let seen = signature(files);
  const timer = setInterval(() => {
    const now = signature(files);
    if (now === seen) return;
    seen = now;
    try {
      server.setSecureContext(readCertificates(s));
      log("info", "TLS certificates reloaded", { files: files.join(", ") });
    } catch (err) {
      log("error", "TLS certificates not reloaded; the previous ones stay in use", { error: (err as Error).message });
    }
  }, everyMs);
  timer.unref?.();
  return () => clearInterval(timer);
}

/** The files' identity and times; a rename over a file (as Kubernetes secret volumes do) changes it too. */
function signature(files: string[]): string {
  return files.map((f) => {
    try {
      const st = statSync(f);
      return `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      return "missing";
    }
  }).join("|");
}
