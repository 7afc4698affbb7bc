// --auto-tls's certificate (src/api/self-signed.ts), read back by node:crypto's X.509
// parser: signed by its own key, the hosts as subject alternative names, serverAuth, a year.
import { describe, expect, test } from "bun:test";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { createSecureContext } from "node:tls";
import { selfSignedCertificate } from "../../src/api/self-signed.ts";

describe("self-signed certificate", () => {
  test("parses, verifies with its own key and names the hosts", () => {
    const now = new Date("2026-12-07T10:00:00Z");
    const s = selfSignedCertificate(["localhost", "127.0.0.1", "::1", "strata.example"], now);
    const x = new X509Certificate(s.cert);
    expect(x.verify(x.publicKey)).toBe(true);
    expect(x.checkPrivateKey(createPrivateKey(s.key))).toBe(true);
    expect(x.subjectAltName).toBe("DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, DNS:strata.example");
    expect(x.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1"]);
    expect(new Date(x.validFrom).getTime()).toBe(now.getTime());
    expect(new Date(x.validTo).getTime()).toBe(now.getTime() + 365 * 86_400_000);
    expect(() => createSecureContext({ cert: s.cert, key: s.key })).not.toThrow();
  });
  test("every certificate has its own key and serial", () => {
    const a = new X509Certificate(selfSignedCertificate(["localhost"]).cert);
    const b = new X509Certificate(selfSignedCertificate(["localhost"]).cert);
    expect(a.serialNumber).not.toBe(b.serialNumber);
    expect(a.fingerprint256).not.toBe(b.fingerprint256);
  });
});
