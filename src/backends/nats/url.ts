// The NATS backend URL:
//   nats://[USER:PASS@ | TOKEN@]HOST:PORT[,HOST:PORT...][?bucket=NAME&replicas=N&snapshot-count=N&tls=true&ca=FILE&cert=FILE&key=FILE]
// The bucket names the JetStream stream (and snapshot store) holding one keyspace, so
// several strata installations can share one NATS; replicas is how many servers of a
// NATS cluster keep it when strata creates it; snapshot-count is how many log entries
// a compaction lets pass before it stores a snapshot and purges the log. tls=true asks
// for TLS verified against the system's CAs, ca= against that CA; cert= and key= are a
// client certificate (each of them implies TLS).
import { existsSync } from "node:fs";

export interface NatsUrl {
  servers: string[];
  user?: string;
  pass?: string;
  token?: string;
  bucket: string;
  replicas: number;
  snapshotCount: number;
  /** undefined: TLS only if the server demands it */
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
}

export const DEFAULT_BUCKET = "strata";
/** etcd's default --snapshot-count */
const DEFAULT_SNAPSHOT_COUNT = 10_000;
/** JetStream names may not hold dots, wildcards or spaces; this keeps them to one safe set */
const BUCKET = /^[A-Za-z0-9_-]{1,64}$/;

/** Parses the URL; throws an error naming what is wrong (`name` is the URL without password). */
export function parseNatsUrl(url: string, name: string): NatsUrl {
  const m = /^nats:\/\/(?:([^@/]*)@)?([^/?]+)\/?(?:\?(.*))?$/.exec(url);
  if (!m) throw new Error(`backend ${name}: expected nats://HOST:PORT?bucket=NAME`);
  const [, auth, hosts = "", query] = m;
  const out: NatsUrl = { servers: hosts.split(",").map((h) => h.trim()), bucket: DEFAULT_BUCKET, replicas: 1, snapshotCount: DEFAULT_SNAPSHOT_COUNT };
  for (const s of out.servers) {
    if (!/^[^:\s]+(:\d{1,5})?$/.test(s)) throw new Error(`backend ${name}: server "${s}" is not HOST or HOST:PORT`);
  }
  if (auth !== undefined) {
    const colon = auth.indexOf(":");
    if (colon < 0) out.token = decodeURIComponent(auth);
    else {
      out.user = decodeURIComponent(auth.slice(0, colon));
      out.pass = decodeURIComponent(auth.slice(colon + 1));
    }
  }
  for (const [k, v] of new URLSearchParams(query ?? "")) {
    if (k === "bucket") {
      if (!BUCKET.test(v)) throw new Error(`backend ${name}: bucket "${v}" must be 1 to 64 letters, digits, - or _`);
      out.bucket = v;
    } else if (k === "replicas") {
      // JetStream keeps at most 5 copies of a stream
      if (!/^[1-5]$/.test(v)) throw new Error(`backend ${name}: replicas "${v}" must be a whole number from 1 to 5`);
      out.replicas = Number(v);
    } else if (k === "snapshot-count") {
      if (!/^[1-9]\d{0,9}$/.test(v)) throw new Error(`backend ${name}: snapshot-count "${v}" must be a positive whole number`);
      out.snapshotCount = Number(v);
    } else if (k === "tls") {
      if (v !== "true") throw new Error(`backend ${name}: tls "${v}" must be true (or leave it out)`);
      out.tls ??= {};
    } else if (k === "ca" || k === "cert" || k === "key") {
      if (!existsSync(v)) throw new Error(`backend ${name}: ${k} file ${v} does not exist`);
      out.tls = { ...out.tls, [`${k}File`]: v };
    } else throw new Error(`backend ${name}: unknown parameter "${k}"; known: bucket, replicas, snapshot-count, tls, ca, cert, key`);
  }
  if (!out.tls?.certFile !== !out.tls?.keyFile) throw new Error(`backend ${name}: cert and key go together`);
  return out;
}
