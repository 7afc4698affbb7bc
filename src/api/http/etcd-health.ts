// etcd's /health, shared by the client port and --metrics-listen: {"health":"true","reason":""},
// or "false" with the reason and status 503 when a backend does not answer, reported
// damaged data, or an alarm is raised. ?exclude=NOSPACE leaves that alarm out (so a full
// database does not get its server restarted); ?serializable=true is accepted as etcd
// 3.5 accepts it: strata has no raft leader to skip, every check is of this process.
import { AlarmType } from "../../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { checkBackends } from "../../observe/health.ts";
import { HEALTH_TIMEOUT_MS, type Observer } from "../../observe/observer.ts";

export interface Failing {
  /** one line per failing backend and raised alarm, naming it and why */
  lines: string[];
  /** the raised alarms' names, those excluded left out */
  alarms: string[];
}

export async function failing(o: Observer, excluded: Set<string>): Promise<Failing> {
  const { keyspace } = o.state;
  const probes = o.state.probes();
  const down = (await checkBackends(probes, HEALTH_TIMEOUT_MS))
    .filter((h) => !h.ok)
    .map((h) => `backend ${h.name} (${probes.find((p) => p.name === h.name)!.url}): ${h.error}`);
  const damaged = keyspace.damaged.map((d) => `backend ${d.name} (${d.url}): damaged data: ${d.error}`);
  const alarms = [...new Set(keyspace.alarms().map((a) => AlarmType[a]))].filter((name) => !excluded.has(name));
  const why = (name: string) => (name === "NOSPACE" && keyspace.noSpace ? `: ${keyspace.noSpace}` : "");
  return { lines: [...down, ...damaged, ...alarms.map((name) => `alarm ${name}${why(name)}`)], alarms };
}

/** etcd's answer for `url` (its ?exclude= alarms). */
export async function etcdHealth(o: Observer, url: URL): Promise<Response> {
  const { lines, alarms } = await failing(o, new Set(url.searchParams.getAll("exclude")));
  // etcd names a raised alarm "ALARM NOSPACE"
  const reason = alarms.length > 0 && alarms.length === lines.length ? alarms.map((a) => `ALARM ${a}`).join("; ") : lines.join("; ");
  const body = JSON.stringify({ health: String(lines.length === 0), reason });
  // etcd answers both with Go's text/plain (a healthy one unsniffed, a failing one through http.Error)
  return lines.length === 0
    ? new Response(body, { headers: { "content-type": "text/plain; charset=utf-8" } })
    : new Response(`${body}\n`, { status: 503, headers: { "content-type": "text/plain; charset=utf-8", "x-content-type-options": "nosniff" } });
}
