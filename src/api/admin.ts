// strata.admin.v1.Admin: operations on the running router that etcd's API has no words
// for. Migrate moves keys to the backends new rules name while strata serves.
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { Admin, type MigrateProgress, MigrateProgressSchema } from "../gen/strata/admin/v1/admin_pb.ts";
import type { MoveProgress, Rerouting, Topology } from "../keyspace/contract.ts";
import { ConfigError } from "../util/config-error.ts";
import type { AuthStore } from "./auth-store.ts";
import { caller } from "./caller.ts";
import { toConnectError } from "./errors.ts";

type Log = (level: string, msg: string, fields?: Record<string, unknown>) => void;

/** A config's text (named `source`) as the topology it routes by; a ConfigError says what is wrong. */
export type ReadTopology = (text: string, source: string) => Topology;

export function adminService(rerouting: Rerouting, readTopology: ReadTopology, log: Log, auth: AuthStore): ServiceImpl<typeof Admin> {
  return {
    async *migrate(req, ctx) {
      const source = req.source || "the new config";
      let next;
      try {
        // moving keys between databases is for users of the root role once auth is on
        auth.checkAdmin(auth.identify(caller(ctx)));
        next = readTopology(req.config, source);
        rerouting.check(next);
      } catch (err) {
        if (err instanceof ConfigError) throw new ConnectError(err.message, Code.InvalidArgument);
        throw toConnectError(err);
      }
      // progress reports queue up here and leave as stream messages
      const queue: MoveProgress[] = [];
      let wake = () => {};
      let finished = false, failure: unknown;
      log("info", "migration started", { source, routes: next.rules.length });
      const started = Date.now();
      void rerouting.reroute(next, (p) => {
        queue.push(p);
        wake();
      }).then((last) => {
        queue.push(last);
        log("info", "migration done", { source, moved: last.moved, ms: Date.now() - started, message: last.message });
      }, (err) => {
        failure = err;
        log("error", "migration failed", { source, error: (err as Error).message });
      }).finally(() => {
        finished = true;
        wake();
      });
      for (;;) {
        while (queue.length > 0) yield toMessage(queue.shift()!);
        if (finished) break;
        await new Promise<void>((r) => (wake = r));
      }
      if (failure) throw toConnectError(failure);
    },
  };
}

function toMessage(p: MoveProgress): MigrateProgress {
  return create(MigrateProgressSchema, { phase: p.phase, moved: BigInt(p.moved), total: BigInt(p.total), message: p.message ?? "" });
}
