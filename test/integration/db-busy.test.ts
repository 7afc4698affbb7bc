// A database server that is busy is not away (docs/overload.md). Another session holds the
// revision row's lock for several seconds — as a long transaction of another strata
// process on the same database would — so strata's writes wait on it. The server answers
// strata's health probe meanwhile, so the writes wait their turn and succeed once the lock
// is released: never "unavailable … the write may have been applied", though they wait
// far longer than --request-timeout. (Before, a write was answered so after 2 s.)
import { afterAll, beforeAll, expect, test } from "bun:test";
import { create, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import mysql from "mysql2/promise";
import postgres from "postgres";
import { PutRequestSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { BACKEND, startStrata, type StrataProcess } from "../support/strata.ts";

if (BACKEND !== "postgres" && BACKEND !== "mariadb") throw new Error("the busy-database test needs STRATA_TEST_BACKEND=postgres or mariadb");

/** shorter than the lock is held: the writes outlive it because the database answers its probe */
const REQUEST_TIMEOUT = "1s";
/** how long the other session holds the lock */
const HOLD_MS = 4000;
const WRITES = 20;

let strata: StrataProcess;
beforeAll(async () => {
  strata = await startStrata(["--request-timeout", REQUEST_TIMEOUT]);
}, 60_000);
afterAll(async () => {
  await strata?.stop();
}, 30_000);

/** Runs fn while another session of the database holds the meta rows strata's writes lock. */
async function whileLocked(url: string, fn: () => Promise<void>): Promise<void> {
  if (BACKEND === "postgres") {
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      await sql.begin(async (tx) => {
        await tx`SELECT name, num FROM meta FOR UPDATE`;
        await fn();
      });
    } finally {
      await sql.end({ timeout: 5 });
    }
    return;
  }
  const u = new URL(url);
  const c = await mysql.createConnection({ host: u.hostname, port: Number(u.port), user: u.username, password: u.password, database: u.pathname.slice(1) });
  try {
    await c.beginTransaction();
    await c.query("SELECT name, num FROM meta FOR UPDATE");
    await fn();
    await c.commit();
  } finally {
    await c.end();
  }
}

test(`${BACKEND} holding strata's write lock for ${HOLD_MS / 1000} s: writes wait and succeed, none is answered as an outage`, async () => {
  const client = new grpc.Client(strata.endpoint, grpc.credentials.createInsecure());
  const put = (key: string) =>
    new Promise<{ end: number; outcome: string }>((resolve) => {
      const body = toBinary(PutRequestSchema, create(PutRequestSchema, { key: new TextEncoder().encode(key), value: new TextEncoder().encode("v") }));
      client.makeUnaryRequest("/etcdserverpb.KV/Put", (x: Buffer) => x, (x: Buffer) => x, Buffer.from(body), { deadline: Date.now() + 60_000 }, (err) =>
        resolve({ end: Date.now(), outcome: err ? `${err.code} ${err.details}` : "ok" })
      );
    });
  expect((await put("busy/before")).outcome).toBe("ok");
  let released = 0;
  let writes: Promise<{ end: number; outcome: string }>[] = [];
  await whileLocked(strata.backendUrl, async () => {
    writes = Array.from({ length: WRITES }, (_, i) => put(`busy/k${i}`));
    await new Promise((r) => setTimeout(r, HOLD_MS));
    released = Date.now();
  });
  const outcomes = await Promise.all(writes);
  client.close();
  console.log(JSON.stringify({ backend: BACKEND, outcomes: [...new Set(outcomes.map((o) => o.outcome))], lastAfterRelease: Math.max(...outcomes.map((o) => o.end)) - released }));
  expect(outcomes.map((o) => o.outcome)).toEqual(Array(WRITES).fill("ok"));
  // they really waited on the lock, for longer than the request timeout
  for (const o of outcomes) expect(o.end).toBeGreaterThanOrEqual(released);
  expect(strata.stderr()).not.toContain("may have been applied");
}, 60_000);
