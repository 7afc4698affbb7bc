// A client that puts one small key every 50 ms and prints each put's latency in ms, one a
// line: run as its own process, so what it measures is the server's latency, not the
// test process's event loop busy decoding lists. Stops when its stdin closes.
import { Etcd3 } from "etcd3";

const endpoint = process.argv[2]!;
const c = new Etcd3({ hosts: endpoint });
let stop = false;
process.stdin.on("close", () => (stop = true));
process.stdin.resume();
for (let i = 0; !stop; i++) {
  const t = performance.now();
  await c.put("storm-beat").value(String(i)).exec();
  const ms = performance.now() - t;
  process.stdout.write(`${ms.toFixed(1)}\n`);
  await new Promise((r) => setTimeout(r, Math.max(0, 50 - ms)));
}
c.close();
process.exit(0);
