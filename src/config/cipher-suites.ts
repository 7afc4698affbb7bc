// etcd's --cipher-suites: TLS 1.2 cipher suites by their IANA names, as Go's crypto/tls
// (and etcd 3.4's tlsutil) spell them, translated to the OpenSSL names node:tls takes.
// As in Go, the list restricts TLS 1.2 only; TLS 1.3's suites are not configurable.
import { ConfigError } from "../util/config-error.ts";

/** Go's name → OpenSSL's, for the suites OpenSSL serves */
const SUITES: Record<string, string> = {
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: "ECDHE-ECDSA-AES128-GCM-SHA256",
  TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: "ECDHE-ECDSA-AES256-GCM-SHA384",
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: "ECDHE-RSA-AES128-GCM-SHA256",
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: "ECDHE-RSA-AES256-GCM-SHA384",
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: "ECDHE-ECDSA-CHACHA20-POLY1305",
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256: "ECDHE-RSA-CHACHA20-POLY1305",
  // etcd's own short spellings of the two above
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305: "ECDHE-ECDSA-CHACHA20-POLY1305",
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305: "ECDHE-RSA-CHACHA20-POLY1305",
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA: "ECDHE-ECDSA-AES128-SHA",
  TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA: "ECDHE-ECDSA-AES256-SHA",
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA: "ECDHE-RSA-AES128-SHA",
  TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA: "ECDHE-RSA-AES256-SHA",
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256: "ECDHE-ECDSA-AES128-SHA256",
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256: "ECDHE-RSA-AES128-SHA256",
  TLS_RSA_WITH_AES_128_GCM_SHA256: "AES128-GCM-SHA256",
  TLS_RSA_WITH_AES_256_GCM_SHA384: "AES256-GCM-SHA384",
  TLS_RSA_WITH_AES_128_CBC_SHA: "AES128-SHA",
  TLS_RSA_WITH_AES_256_CBC_SHA: "AES256-SHA",
  TLS_RSA_WITH_AES_128_CBC_SHA256: "AES128-SHA256",
};

/**
 * The OpenSSL cipher list for a comma-separated list of Go names, or undefined for an
 * empty one (the TLS library's defaults); throws ConfigError naming an unknown suite.
 */
export function opensslCiphers(list: string, source: string): string | undefined {
  const names = list.split(",").map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) return undefined;
  return names.map((name) => {
    const openssl = SUITES[name];
    if (!openssl) {
      throw new ConfigError(`${source}: unknown or unsupported TLS cipher suite "${name}"; known: ${Object.keys(SUITES).join(", ")}`);
    }
    return openssl;
  }).join(":");
}
