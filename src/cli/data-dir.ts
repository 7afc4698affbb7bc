// etcd's --data-dir for strata: the directory holds the embedded SQLite database
// (strata.db). Created as etcd creates its own (mode 0700, only the owner may read the
// data), and checked before any database is opened, so a wrong path is one clear line.
import { accessSync, constants, existsSync, mkdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { ConfigError } from "../config/config.ts";

/** Creates the directory if missing; throws ConfigError naming it when it cannot be used. */
export function prepareDataDir(dir: string): void {
  const path = resolve(dir);
  try {
    mkdirSync(path, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new ConfigError(`--data-dir ${path}: cannot create the directory: ${(err as Error).message}`);
  }
  if (!statSync(path).isDirectory()) throw new ConfigError(`--data-dir ${path}: not a directory`);
  try {
    accessSync(path, constants.W_OK | constants.X_OK);
  } catch {
    throw new ConfigError(`--data-dir ${path}: this user (uid ${process.getuid?.() ?? "?"}) cannot write in the directory`);
  }
}

/**
 * An etcd's own data in the directory (member/) and no strata database beside it: the
 * binary was swapped on an etcd's data dir. Serving would answer with an empty keyspace,
 * so strata refuses and says how to bring etcd's keys over.
 */
export function refuseEtcdData(dir: string): void {
  const path = resolve(dir);
  if (existsSync(join(path, "member")) && !existsSync(join(path, "strata.db"))) {
    throw new ConfigError(
      `--data-dir ${path} holds an etcd's data (member/) and no strata database; strata would start empty beside it. ` +
        `Copy etcd's keys first: strata import --from-snapshot ${join(path, "member", "snap", "db")} --data-dir ${path}`,
    );
  }
}
