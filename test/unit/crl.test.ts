// The serial numbers read from a CRL for --client-crl-file (src/api/crl.ts): PEM and DER,
// serials compared as numbers (a leading zero byte or case does not matter), and a file
// that is not a CRL refused with a reason.
import { describe, expect, test } from "bun:test";
import { revokedSerials, serialKey } from "../../src/api/crl.ts";

// made with `openssl ca -revoke` twice and `openssl ca -gencrl` (an EC CA named "ca")
const PEM = `-----BEGIN X509 CRL-----
MIH2MIGcAgEBMAoGCCqGSM49BAMCMA0xCzAJBgNVBAMMAmNhFw0yNjEyMDcxNTMw
MzNaFw0yNjEyMDgxNTMwMzNaME4wJQIUfvGHjutTRmpZRtwUpTYB+0aHXIQXDTI2
MTIwNzE1MzAzM1owJQIUfvGHjutTRmpZRtwUpTYB+0aHXIUXDTI2MTIwNzE1MTQ1
MVqgDjAMMAoGA1UdFAQDAgECMAoGCCqGSM49BAMCA0kAMEYCIQCDmbcAOB8vvF2R
xsFesYflECNZ7bnFOpLuwE+JdsTgRwIhAIwr2Qs+EzZjk48xA+OTPC/GjgRTfXTZ
qbmTR67Akpfp
-----END X509 CRL-----
`;
const REVOKED = ["7EF1878EEB53466A5946DC14A53601FB46875C84", "7EF1878EEB53466A5946DC14A53601FB46875C85"];

describe("CRL serial numbers", () => {
  test("PEM and the same CRL as DER list the revoked serials", () => {
    const fromPem = revokedSerials(Buffer.from(PEM));
    expect([...fromPem].sort()).toEqual(REVOKED.map(serialKey).sort());
    const der = Buffer.from(PEM.replace(/-----[^-]+-----|\s/g, ""), "base64");
    expect([...revokedSerials(der)].sort()).toEqual([...fromPem].sort());
    expect(fromPem.has(serialKey("7EF1878EEB53466A5946DC14A53601FB46875C86"))).toBe(false);
  });
  test("a serial's leading zeros and case do not matter", () => {
    expect(serialKey("00ABCD")).toBe(serialKey("abcd"));
  });
  test("what is not a CRL is refused with a reason", () => {
    expect(() => revokedSerials(Buffer.from("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"))).toThrow("no X509 CRL block");
    const der = Buffer.from(PEM.replace(/-----[^-]+-----|\s/g, ""), "base64");
    expect(() => revokedSerials(der.subarray(0, 60))).toThrow("not a DER CRL");
    expect(() => revokedSerials(Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01]))).toThrow("not a DER CRL");
  });
});
