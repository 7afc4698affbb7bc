// The TLS settings taken together: which combinations make sense, checked before any
// file is read (src/api/tls.ts reads them), each refusal naming where the setting came from.
import { opensslCiphers } from "./cipher-suites.ts";
import { ConfigError } from "../util/config-error.ts";
import type { TlsSettings } from "../api/tls.ts";

interface Values {
  listen: string;
  "cert-file": string;
  "key-file": string;
  "trusted-ca-file": string;
  "client-cert-auth": boolean;
  "client-crl-file": string;
  "cipher-suites": string;
  "auto-tls": boolean;
  "advertise-client-urls": string;
}

/** The TLS settings, or undefined for cleartext; `source` says where a setting came from. */
export function tlsSettings(c: Values, source: (name: keyof Values) => string): TlsSettings | undefined {
  const https = c.listen.startsWith("https://");
  const cert = c["cert-file"], key = c["key-file"], ca = c["trusted-ca-file"], crl = c["client-crl-file"];
  if (cert && !key) throw new ConfigError(`${source("cert-file")}: --key-file is needed too`);
  if (key && !cert) throw new ConfigError(`${source("key-file")}: --cert-file is needed too`);
  if (c["client-cert-auth"] && !ca) {
    throw new ConfigError(`${source("client-cert-auth")}: --client-cert-auth needs --trusted-ca-file, the CA that signs client certificates`);
  }
  // without --client-cert-auth no client is asked for a certificate the CRL could revoke
  if (crl && !c["client-cert-auth"]) {
    throw new ConfigError(`${source("client-crl-file")}: --client-crl-file needs --client-cert-auth, or no client presents a certificate to check`);
  }
  const ciphers = opensslCiphers(c["cipher-suites"], source("cipher-suites"));
  // as in etcd, certificate files win over --auto-tls
  const selfSigned = c["auto-tls"] && !cert ? { hosts: hostsOf([c.listen, ...c["advertise-client-urls"].split(",")]) } : undefined;
  if (selfSigned && !https) throw new ConfigError(`${source("auto-tls")}: --auto-tls needs an https:// listen URL (listen is ${c.listen})`);
  if (!cert && !selfSigned) {
    const needs = "--cert-file and --key-file (or --auto-tls)";
    if (ciphers) throw new ConfigError(`${source("cipher-suites")}: TLS needs ${needs}`);
    if (https) throw new ConfigError(`${source("listen")}: an https:// listen URL needs ${needs}`);
    if (ca) throw new ConfigError(`${source("trusted-ca-file")}: TLS needs ${needs}`);
    if (c["client-cert-auth"]) throw new ConfigError(`${source("client-cert-auth")}: TLS needs ${needs}`);
    return undefined;
  }
  if (cert && !https) {
    const where = source("listen") === "default" ? source("cert-file") : source("listen");
    throw new ConfigError(`${where}: with --cert-file the listen URL must start with https:// (listen is ${c.listen})`);
  }
  return { certFile: cert, keyFile: key, trustedCaFile: ca || undefined, clientCertAuth: c["client-cert-auth"], crlFile: crl || undefined, ciphers, selfSigned };
}

/** the host names and addresses in these URLs, once each */
function hostsOf(urls: string[]): string[] {
  const hosts = new Set<string>();
  for (const u of urls.flatMap((list) => list.split(","))) {
    try {
      if (u.trim()) hosts.add(new URL(u.trim()).hostname.replace(/^\[|\]$/g, ""));
    } catch {}
  }
  return [...hosts];
}
