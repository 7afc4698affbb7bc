// etcd's auth tokens (auth/simple_token.go, auth/jwt.go). A simple token is a random
// name this process remembers for its user, valid for --auth-token-ttl since its last
// use; it says nothing itself, so another strata process does not know it (the client
// authenticates there again, as etcd clients do on "invalid auth token"). A JWT carries
// the user and the auth revision it was issued at, signed: any process with the key
// verifies it, and one issued before a change of the auth store is refused as old.
import {
  constants,
  createHmac,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  type KeyObject,
  randomInt,
  sign,
  timingSafeEqual,
  verify,
} from "node:crypto";
import { readFileSync } from "node:fs";
import { ConfigError } from "../util/config-error.ts";
import { parseDuration } from "../util/duration.ts";
import { EtcdError } from "../mvcc/errors.ts";
import type { Rev } from "../mvcc/types.ts";

/** who a token speaks for, and at which auth revision (etcd's AuthInfo) */
export interface AuthInfo {
  user: string;
  revision: Rev;
}

export interface TokenProvider {
  /** A token for `user`, issued at auth revision `revision`. */
  assign(user: string, revision: Rev): string;
  /** Who the token speaks for (simple tokens: at `current`, the store's revision now); undefined when it is not valid. */
  info(token: string, current: Rev): AuthInfo | undefined;
  /** the user's password changed or the user is gone: its tokens end */
  invalidateUser(user: string): void;
  /** auth was turned off: every token ends */
  disable(): void;
}

const LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const SIMPLE_TOKEN_LENGTH = 16;

export class SimpleTokens implements TokenProvider {
  private readonly tokens = new Map<string, { user: string; expires: number }>();
  private issued = 0;
  private sweptAt = 0;

  constructor(private readonly ttlMs: number, private readonly now = () => Date.now()) {}

  assign(user: string): string {
    this.sweep();
    let name = "";
    for (let i = 0; i < SIMPLE_TOKEN_LENGTH; i++) name += LETTERS[randomInt(LETTERS.length)];
    // etcd appends the raft index of the Authenticate request
    const token = `${name}.${++this.issued}`;
    this.tokens.set(token, { user, expires: this.now() + this.ttlMs });
    return token;
  }

  info(token: string, current: Rev): AuthInfo | undefined {
    const t = this.tokens.get(token);
    if (!t) return undefined;
    const now = this.now();
    if (now > t.expires) {
      this.tokens.delete(token);
      return undefined;
    }
    // every use keeps the token alive for another TTL
    t.expires = now + this.ttlMs;
    return { user: t.user, revision: current };
  }

  invalidateUser(user: string): void {
    for (const [token, t] of this.tokens) if (t.user === user) this.tokens.delete(token);
  }

  disable(): void {
    this.tokens.clear();
  }

  /** drops expired tokens, at most once a second (etcd's keeper ticks every second) */
  private sweep(): void {
    const now = this.now();
    if (now - this.sweptAt < 1000) return;
    this.sweptAt = now;
    for (const [token, t] of this.tokens) if (now > t.expires) this.tokens.delete(token);
  }

  get size(): number {
    return this.tokens.size;
  }
}

/** etcd's JWT signing methods (jwt-go's names): the digest, and how the key signs */
const JWT_METHODS: Record<string, { digest: string; kind: "hmac" | "rsa" | "pss" | "ec" }> = {
  HS256: { digest: "sha256", kind: "hmac" }, HS384: { digest: "sha384", kind: "hmac" }, HS512: { digest: "sha512", kind: "hmac" },
  RS256: { digest: "sha256", kind: "rsa" }, RS384: { digest: "sha384", kind: "rsa" }, RS512: { digest: "sha512", kind: "rsa" },
  PS256: { digest: "sha256", kind: "pss" }, PS384: { digest: "sha384", kind: "pss" }, PS512: { digest: "sha512", kind: "pss" },
  ES256: { digest: "sha256", kind: "ec" }, ES384: { digest: "sha384", kind: "ec" }, ES512: { digest: "sha512", kind: "ec" },
};

const b64url = (b: Uint8Array | string) => Buffer.from(b).toString("base64url");

/**
 * etcd's JWT tokens: header and claims as jwt-go writes them ({"alg","typ"}; {"exp",
 * "revision","username"}), signed with node:crypto. Valid until "exp"; the revision in
 * them is the auth revision they were issued at, so a change of the auth store since
 * makes them old (etcd answers "revision of auth store is old" and clients authenticate again).
 */
export class JwtTokens implements TokenProvider {
  private readonly method: { digest: string; kind: "hmac" | "rsa" | "pss" | "ec" };

  constructor(
    private readonly alg: string,
    /** HMAC: the secret; otherwise the private key, or undefined when only the public key was given (verify only) */
    private readonly signKey: KeyObject | undefined,
    private readonly verifyKey: KeyObject,
    private readonly ttlMs: number,
    private readonly now = () => Date.now(),
  ) {
    this.method = JWT_METHODS[alg]!;
  }

  assign(user: string, revision: Rev): string {
    if (!this.signKey) throw new EtcdError("Unknown", "auth: token signing attempted with verify-only key");
    const head = b64url(JSON.stringify({ alg: this.alg, typ: "JWT" }));
    const claims = b64url(`{"exp":${Math.floor((this.now() + this.ttlMs) / 1000)},"revision":${revision},"username":${JSON.stringify(user)}}`);
    const signed = `${head}.${claims}`;
    return `${signed}.${b64url(this.sign(Buffer.from(signed)))}`;
  }

  info(token: string): AuthInfo | undefined {
    const parts = token.split(".");
    if (parts.length !== 3) return undefined;
    try {
      const head = JSON.parse(Buffer.from(parts[0]!, "base64url").toString()) as { alg?: string };
      if (head.alg !== this.alg) return undefined;
      if (!this.verify(Buffer.from(`${parts[0]}.${parts[1]}`), Buffer.from(parts[2]!, "base64url"))) return undefined;
      const claims = JSON.parse(Buffer.from(parts[1]!, "base64url").toString()) as { exp?: number; revision?: number; username?: string };
      if (typeof claims.exp === "number" && this.now() / 1000 > claims.exp) return undefined;
      if (typeof claims.username !== "string" || typeof claims.revision !== "number") return undefined;
      return { user: claims.username, revision: BigInt(claims.revision) };
    } catch {
      return undefined;
    }
  }

  // a JWT stays valid until it expires: nothing to forget
  invalidateUser(): void {}
  disable(): void {}

  private sign(data: Buffer): Buffer {
    const m = this.method, key = this.signKey!;
    if (m.kind === "hmac") return createHmac(m.digest, key).update(data).digest();
    if (m.kind === "ec") return sign(m.digest, data, { key, dsaEncoding: "ieee-p1363" });
    if (m.kind === "pss") return sign(m.digest, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST });
    return sign(m.digest, data, key);
  }

  private verify(data: Buffer, signature: Buffer): boolean {
    const m = this.method, key = this.verifyKey;
    if (m.kind === "hmac") {
      const want = createHmac(m.digest, key).update(data).digest();
      return want.length === signature.length && timingSafeEqual(want, signature);
    }
    if (m.kind === "ec") return verify(m.digest, data, { key, dsaEncoding: "ieee-p1363" }, signature);
    if (m.kind === "pss") return verify(m.digest, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO }, signature);
    return verify(m.digest, data, key, signature);
  }
}

/**
 * The token provider etcd's --auth-token names: "simple" (with --auth-token-ttl), or
 * "jwt,pub-key=FILE,priv-key=FILE,sign-method=RS256,ttl=5m" (a public key alone verifies
 * tokens another process signed). Throws ConfigError naming what is wrong.
 */
export function tokenProvider(spec: string, simpleTtlSeconds: number): TokenProvider {
  const [type = "", ...rest] = spec.split(",");
  const opts = new Map<string, string>();
  for (const o of rest) {
    const [k, v, extra] = o.split("=");
    if (k === undefined || v === undefined || extra !== undefined || opts.has(k)) {
      throw new ConfigError(`auth-token: invalid option "${o}" in "${spec}" (etcd's "auth: invalid auth options")`);
    }
    opts.set(k, v);
  }
  if (type === "simple") return new SimpleTokens(simpleTtlSeconds * 1000);
  if (type !== "jwt") throw new ConfigError(`auth-token: unknown token type "${type}": simple or jwt`);
  const alg = opts.get("sign-method") ?? "";
  const method = JWT_METHODS[alg];
  if (!method) throw new ConfigError(`auth-token: sign-method must be one of ${Object.keys(JWT_METHODS).join(", ")} (got "${alg}")`);
  const ttl = opts.has("ttl") ? parseDuration(opts.get("ttl")!) : 5 * 60_000;
  if (ttl === undefined) throw new ConfigError(`auth-token: ttl must be a duration such as 5m (got "${opts.get("ttl")}")`);
  const file = (name: string) => {
    const path = opts.get(name);
    if (!path) return undefined;
    try {
      return readFileSync(path);
    } catch (err) {
      throw new ConfigError(`auth-token: ${name} ${path}: cannot read the file: ${(err as Error).message}`);
    }
  };
  const priv = file("priv-key"), pub = file("pub-key");
  try {
    if (method.kind === "hmac") {
      if (!priv) throw new ConfigError("auth-token: sign-method " + alg + " needs priv-key, the shared secret");
      const secret = createSecretKey(priv);
      return new JwtTokens(alg, secret, secret, ttl);
    }
    const signKey = priv ? createPrivateKey(priv) : undefined;
    if (!signKey && !pub) throw new ConfigError(`auth-token: sign-method ${alg} needs priv-key or pub-key (etcd's "auth: missing key data")`);
    const verifyKey = pub ? createPublicKey(pub) : createPublicKey(signKey!);
    const wanted = method.kind === "ec" ? "ec" : "rsa";
    if (verifyKey.asymmetricKeyType !== wanted && !(wanted === "rsa" && verifyKey.asymmetricKeyType === "rsa-pss")) {
      throw new ConfigError(`auth-token: sign-method ${alg} needs an ${wanted.toUpperCase()} key (the key is ${verifyKey.asymmetricKeyType})`);
    }
    if (signKey && pub && !createPublicKey(signKey).equals(verifyKey)) {
      throw new ConfigError(`auth-token: pub-key is not the public key of priv-key (etcd's "auth: public and private keys don't match")`);
    }
    return new JwtTokens(alg, signKey, verifyKey, ttl);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`auth-token: cannot read the keys: ${(err as Error).message}`);
  }
}
