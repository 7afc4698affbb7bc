// TLS for the etcd API, as etcd's --cert-file, --key-file, --trusted-ca-file,
// --client-cert-auth, --client-crl-file, --cipher-suites and --auto-tls. The files are read
// at start, where any problem stops strata with a line naming the flag and the file, and
// read again whenever they change, so certificates and the CRL rotate without a restart; a
// broken new file keeps the old ones in use. --auto-tls's certificate is made once at start.
import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import {
  createSecureContext, type PeerCertificate, type SecureContextOptions, type Server as TlsServer, type TLSSocket, type TlsOptions,
} from "node:tls";
import { ConfigError } from "../util/config-error.ts";
import { type RevokedSerials, revokedSerials, serialKey } from "./crl.ts";
import { type SelfSigned, selfSignedCertificate } from "./self-signed.ts";

type Log = (level: string, msg: string, fields?: Record<string, unknown>) => void;

/** The TLS settings the listener is served with (config/tls-settings.ts checks and builds them). */
export interface TlsSettings {
  certFile: string;
  keyFile: string;
  /** CA bundle client certificates are checked against */
  trustedCaFile: string | undefined;
  /** refuse clients without a certificate signed by trustedCaFile */
  clientCertAuth: boolean;
  /** CRL whose serial numbers are refused among client certificates, as etcd's --client-crl-file */
  crlFile: string | undefined;
  /** the TLS 1.2 cipher suites offered, in OpenSSL's spelling (etcd's --cipher-suites); undefined: the defaults */
  ciphers: string | undefined;
  /** etcd's --auto-tls: no certificate files; one is made at start for these hosts */
  selfSigned: { hosts: string[] } | undefined;
}

/** Options for the TLS listener; throws ConfigError naming the flag and file at fault. */
export function tlsServerOptions(s: TlsSettings): TlsOptions {
  const certificates = readCertificates(s);
  // the CRL is read now too, so that a broken one stops strata before it serves
  readRevoked(s);
  return {
    ...certificates,
    ALPNProtocols: ["h2"],
    // with --client-cert-auth the handshake fails without a certificate signed by the CA
    requestCert: s.clientCertAuth,
    rejectUnauthorized: s.clientCertAuth,
  };
}

/** --auto-tls's certificate, made once per set of settings (so once per process) */
const selfSignedFor = new WeakMap<TlsSettings, SelfSigned>();

/** Reads and checks the files, one at a time so that a broken one is named. */
function readCertificates(s: TlsSettings): SecureContextOptions {
  if (s.selfSigned && !selfSignedFor.has(s)) selfSignedFor.set(s, selfSignedCertificate(s.selfSigned.hosts));
  const made = selfSignedFor.get(s);
  const cert = made ? Buffer.from(made.cert) : read("cert-file", s.certFile);
  const key = made ? Buffer.from(made.key) : read("key-file", s.keyFile);
  const ca = s.trustedCaFile ? read("trusted-ca-file", s.trustedCaFile) : undefined;
  parse("cert-file", s.certFile, "a PEM certificate", () => new X509Certificate(cert));
  parse("key-file", s.keyFile, "a PEM private key", () => createPrivateKey(key));
  if (ca && s.trustedCaFile) {
    parse("trusted-ca-file", s.trustedCaFile, "PEM CA certificates", () => {
      new X509Certificate(ca);
      createSecureContext({ ca });
    });
  }
  const options = { cert, key, ca, ...(s.ciphers && { ciphers: s.ciphers }) };
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

/** The serial numbers --client-crl-file revokes (none without the flag). */
function readRevoked(s: TlsSettings): RevokedSerials {
  if (!s.crlFile) return new Set();
  const file = read("client-crl-file", s.crlFile);
  try {
    return revokedSerials(file);
  } catch (err) {
    throw new ConfigError(`--client-crl-file ${s.crlFile}: not a certificate revocation list: ${(err as Error).message}`);
  }
}

/** the serial number of the first certificate the client presented that the CRL lists */
function revokedIn(socket: TLSSocket, revoked: RevokedSerials): string | undefined {
  // the client's certificate and its issuers up to the self-signed root
  for (let c: PeerCertificate | undefined = socket.getPeerCertificate(true); c?.serialNumber; ) {
    if (revoked.has(serialKey(c.serialNumber))) return c.serialNumber;
    const issuer: PeerCertificate | undefined = (c as { issuerCertificate?: PeerCertificate }).issuerCertificate;
    c = issuer === c ? undefined : issuer;
  }
  return undefined;
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
 * without an acceptable certificate), closes connections whose client certificate the
 * CRL revokes before they are served, and reloads the certificates and the CRL when their
 * files change. Returns a function that stops the reloading.
 */
export function superviseTls(server: TlsServer, s: TlsSettings, log: Log): () => void {
  const refused = (socket: { remoteAddress?: string; remotePort?: number }, error: string) =>
    log("warn", "TLS handshake refused", { remote: `${socket.remoteAddress}:${socket.remotePort}`, error });
  server.on("tlsClientError", (err: Error, socket: TLSSocket) => refused(socket, err.message));
  const crl = { revoked: readRevoked(s) };
  if (s.crlFile) {
    // before the HTTP/2 server's listener: a revoked client's connection never reaches it
    server.prependListener("secureConnection", (socket: TLSSocket) => {
      const serial = revokedIn(socket, crl.revoked);
      if (serial === undefined) return;
      refused(socket, `certificate serial ${serial} is revoked by --client-crl-file`);
      socket.destroy();
    });
  }
  return reloadOnChange(server, s, crl, log);
}

/**
 * Polls the files every second and hands changed certificates to the server for new
 * connections (open ones keep theirs). A file caught half-written, or a key that does
 * not match yet, is logged and the old certificates stay until the next change.
 * Returns a function that stops polling.
 */
function reloadOnChange(server: TlsServer, s: TlsSettings, crl: { revoked: RevokedSerials }, log: Log, everyMs = 1000): () => void {
  const files = [s.certFile, s.keyFile, s.trustedCaFile, s.crlFile].filter((f): f is string => !!f);
  let seen = signature(files);
  const timer = setInterval(() => {
    const now = signature(files);
    if (now === seen) return;
    seen = now;
    try {
      const revoked = readRevoked(s);
      server.setSecureContext(readCertificates(s));
      crl.revoked = revoked;
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
