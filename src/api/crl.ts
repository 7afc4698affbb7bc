// The serial numbers a certificate revocation list revokes, for --client-crl-file. etcd
// checks a client's certificates against them by serial number alone, after the handshake
// and before any request (its transport's checkCRL): neither the CRL's dates nor its
// signature count, so an operator's CRL that has passed its next-update date keeps
// refusing what it lists and accepting the rest. node:tls's own `crl` option would refuse
// every client once that date passes, and every client whose CA has no CRL in the file.
// The file is PEM (any number of X509 CRL blocks) or DER; only the DER structure of RFC
// 5280's CertificateList is read here (a handful of TLVs), no cryptography.

/** Serial numbers as lowercase hex without leading zeros (see `serialKey`). */
export type RevokedSerials = ReadonlySet<string>;

/** a certificate's serial number (hex, as X509Certificate.serialNumber gives it) as the set holds it */
export function serialKey(hex: string): string {
  return BigInt(`0x${hex}`).toString(16);
}

/** The serials a CRL file lists; throws an Error saying what is wrong with the file. */
export function revokedSerials(file: Buffer): RevokedSerials {
  const text = file.toString("latin1");
  const blocks = [...text.matchAll(/-----BEGIN X509 CRL-----([^-]+)-----END X509 CRL-----/g)];
  if (blocks.length === 0 && text.includes("-----BEGIN")) throw new Error("no X509 CRL block in the PEM file");
  const ders = blocks.length ? blocks.map((m) => Buffer.from(m[1]!.replace(/\s+/g, ""), "base64")) : [file];
  const serials = new Set<string>();
  for (const der of ders) for (const s of crlSerials(der)) serials.add(s);
  return serials;
}

const SEQUENCE = 0x30, INTEGER = 0x02, UTC_TIME = 0x17, GENERALIZED_TIME = 0x18;

interface Tlv {
  tag: number;
  /** the contents */
  start: number;
  end: number;
}

/** the TLV at `at`, within `limit` */
function tlv(der: Buffer, at: number, limit: number): Tlv {
  if (at + 2 > limit) throw new Error("not a DER CRL: truncated");
  const tag = der[at]!;
  let length = der[at + 1]!;
  let start = at + 2;
  if (length & 0x80) {
    const octets = length & 0x7f;
    if (octets === 0 || octets > 4 || start + octets > limit) throw new Error("not a DER CRL: bad length");
    length = 0;
    for (let i = 0; i < octets; i++) length = length * 256 + der[start + i]!;
    start += octets;
  }
  if (start + length > limit) throw new Error("not a DER CRL: truncated");
  return { tag, start, end: start + length };
}

/** the elements of a constructed TLV */
function children(der: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.start; at < parent.end; at = out.at(-1)!.end) out.push(tlv(der, at, parent.end));
  return out;
}

/**
 * CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signature }
 * TBSCertList ::= SEQUENCE { version INTEGER OPTIONAL, signature SEQUENCE, issuer SEQUENCE,
 *   thisUpdate Time, nextUpdate Time OPTIONAL,
 *   revokedCertificates SEQUENCE OF SEQUENCE { userCertificate INTEGER, ... } OPTIONAL,
 *   crlExtensions [0] OPTIONAL }
 */
function crlSerials(der: Buffer): string[] {
  const list = tlv(der, 0, der.length);
  const tbs = list.tag === SEQUENCE ? children(der, list)[0] : undefined;
  if (!tbs || tbs.tag !== SEQUENCE) throw new Error("not a DER CRL: no TBSCertList");
  const fields = children(der, tbs);
  let i = fields[0]?.tag === INTEGER ? 1 : 0;
  if (fields[i]?.tag !== SEQUENCE || fields[i + 1]?.tag !== SEQUENCE) throw new Error("not a DER CRL: no signature algorithm and issuer");
  i += 2;
  const isTime = (f: Tlv | undefined) => f?.tag === UTC_TIME || f?.tag === GENERALIZED_TIME;
  if (!isTime(fields[i])) throw new Error("not a DER CRL: no thisUpdate");
  i += isTime(fields[i + 1]) ? 2 : 1;
  const revoked = fields[i];
  if (revoked?.tag !== SEQUENCE) return [];
  return children(der, revoked).map((entry) => {
    const serial = entry.tag === SEQUENCE ? children(der, entry)[0] : undefined;
    if (serial?.tag !== INTEGER || serial.end === serial.start) throw new Error("not a DER CRL: a revoked entry without a serial number");
    return serialKey(der.subarray(serial.start, serial.end).toString("hex"));
  });
}
