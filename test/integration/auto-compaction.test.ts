// Automatic compaction: history older than the retention window goes by itself, so the
// database does not grow without bound, while recent history stays readable.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Etcd3 } from "etcd3";
import { startStrata, type StrataProcess } from "../support/strata.ts";

let strata: StrataProcess;
beforeAll(async () => {
  strata = await startStrata(["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1s"]);
});
afterAll(async () => {
  await strata?.stop();
});

test("periodic retention compacts what is older than the window, and only that", async () => {
  const c = new Etcd3({ hosts: strata.endpoint });
  const first = Number((await c.put("auto/a").value("1").exec()).header.revision);
  for (let i = 2; i <= 20; i++) await c.put("auto/a").value(String(i)).exec();
  // the old revision goes once the window has passed (waited for, not slept: a second or two)
  const readOld = () => c.kv.range({ key: Buffer.from("auto/a"), revision: String(first) } as never).then(
    () => "still readable",
    (err: Error) => err.message,
  );
  const deadline = Date.now() + 10_000;
  let old = await readOld();
  while (old === "still readable" && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    old = await readOld();
  }
  expect(old).toContain("required revision has been compacted");
  const recent = Number((await c.put("auto/a").value("21").exec()).header.revision);
  // the newest revision and the current state are intact
  const atRecent = await c.kv.range({ key: Buffer.from("auto/a"), revision: String(recent) } as never);
  expect(atRecent.kvs[0]!.value.toString()).toBe("21");
  expect(await c.get("auto/a").string()).toBe("21");
  c.close();
}, 20_000);
