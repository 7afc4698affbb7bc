// A self-signed server certificate for --auto-tls (etcd's flag: TLS without certificate
// files, for clients that skip verification). node:crypto makes the key and the signature;
// what it cannot do is lay out an X.509 certificate, so the few DER structures RFC 5280
// asks for are written here: a v3 certificate with an ECDSA P-256 key, the hosts strata
// serves as subject alternative names, serverAuth, valid for a year.
import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { isIP } from "node:net";

export interface SelfSigned {
  cert: string;
  key: string;
}

/** A certificate and its key (PEM) for these host names and IP addresses. */
export function selfSignedCertificate(hosts: string[], now = new Date()): SelfSigned {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const ecdsaWithSha256 = seq(oid("1.2.840.10045.4.3.2"));
  const name = seq(set(seq(oid("2.5.4.10"), utf8("strata"))));
  const serial = randomBytes(16);
  serial[0]! &= 0x7f; // positive
  const tbs = seq(
    explicit(0, integer(Buffer.from([2]))), // v3
    integer(serial),
    ecdsaWithSha256,
    name,
    seq(time(now), time(new Date(now.getTime() + 365 * 86_400_000))),
    name,
    publicKey.export({ type: "spki", format: "der" }),
    explicit(3, seq(
      extension("2.5.29.15", true, bitString(Buffer.from([0x80]), 7)), // keyUsage: digitalSignature
      extension("2.5.29.37", false, seq(oid("1.3.6.1.5.5.7.3.1"))), // extKeyUsage: serverAuth
      extension("2.5.29.17", false, seq(...hosts.map(generalName))), // subjectAltName
    )),
  );
  const signature = sign("sha256", tbs, privateKey);
  const der = seq(tbs, ecdsaWithSha256, bitString(signature));
  const base64 = der.toString("base64").replace(/.{1,64}/g, "$&\n");
  return {
    cert: `-----BEGIN CERTIFICATE-----\n${base64}-----END CERTIFICATE-----\n`,
    key: privateKey.export({ type: "pkcs8", format: "pem" }) as string,
  };
}

/** a DER TLV */
function tlv(tag: number, ...contents: Buffer[]): Buffer {
  const body = Buffer.concat(contents);
  let length: number[];
  if (body.length < 0x80) {
    length = [body.length];
  } else {
    const octets: number[] = [];
    for (let n = body.length; n > 0; n = Math.floor(n / 256)) octets.unshift(n % 256);
    length = [0x80 | octets.length, ...octets];
  }
  return Buffer.concat([Buffer.from([tag, ...length]), body]);
}

const seq = (...parts: Buffer[]) => tlv(0x30, ...parts);
const set = (...parts: Buffer[]) => tlv(0x31, ...parts);
const explicit = (n: number, inner: Buffer) => tlv(0xa0 + n, inner);
const utf8 = (s: string) => tlv(0x0c, Buffer.from(s, "utf8"));
const integer = (unsigned: Buffer) => tlv(0x02, unsigned[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), unsigned]) : unsigned);
const bitString = (bits: Buffer, unusedBits = 0) => tlv(0x03, Buffer.from([unusedBits]), bits);
const extension = (id: string, critical: boolean, value: Buffer) =>
  seq(oid(id), ...(critical ? [tlv(0x01, Buffer.from([0xff]))] : []), tlv(0x04, value));

function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split(".").map(Number);
  const bytes = [a! * 40 + b!];
  for (const n of rest) {
    const groups = [n & 0x7f];
    for (let v = Math.floor(n / 128); v > 0; v = Math.floor(v / 128)) groups.unshift(0x80 | (v & 0x7f));
    bytes.push(...groups);
  }
  return tlv(0x06, Buffer.from(bytes));
}

/** UTCTime until 2049, GeneralizedTime after, as RFC 5280 says */
function time(d: Date): Buffer {
  const digits = d.toISOString().replace(/[-:T]/g, "").slice(0, 14) + "Z";
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(digits.slice(2))) : tlv(0x18, Buffer.from(digits));
}

/** dNSName [2] or iPAddress [7], implicitly tagged */
function generalName(host: string): Buffer {
  const h = host.replace(/^\[|\]$/g, "");
  if (isIP(h) === 4) return tlv(0x87, Buffer.from(h.split(".").map(Number)));
  if (isIP(h) === 6) return tlv(0x87, ipv6Bytes(h));
  return tlv(0x82, Buffer.from(h, "ascii"));
}

function ipv6Bytes(ip: string): Buffer {
  const [head, tail = ""] = ip.split("::");
  const groups = (s: string) => (s ? s.split(":") : []);
  const h = groups(head!), t = ip.includes("::") ? groups(tail) : [];
  const all = [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  return Buffer.from(all.flatMap((g) => {
    const n = parseInt(g, 16);
    return [n >> 8, n & 0xff];
  }));
}
