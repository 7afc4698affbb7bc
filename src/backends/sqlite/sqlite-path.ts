// Before SQLite opens a file: its directory is made when missing (mode 0700, as etcd makes
// its data directory), and a path this user cannot use is named with the operating
// system's reason — SQLite itself says only "unable to open database file".
import { accessSync, constants, existsSync, mkdirSync, statSync } from "node:fs";
import { dirname } from "node:path";

/** Throws an Error naming the path and why when the database file at `path` cannot be opened for writing. */
export function prepareSqlitePath(path: string, name: string): void {
  const dir = dirname(path);
  const file = fileOnTheWay(dir);
  if (file) throw new Error(`${name}: cannot create the directory ${dir}: ${file} is a file, not a directory`);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new Error(`${name}: cannot create the directory ${dir}: ${osReason(err)}`);
  }
  if (existsSync(path) && statSync(path).isDirectory()) throw new Error(`${name}: ${path} is a directory, not a database file`);
  // the write-ahead log and the lock file are made beside the database, so the directory must be writable too
  for (const [target, what, mode] of [[dir, "create files in the directory", constants.W_OK | constants.X_OK], [path, "read and write the file", constants.R_OK | constants.W_OK]] as const) {
    if (target === path && !existsSync(path)) continue;
    try {
      accessSync(target, mode);
    } catch (err) {
      throw new Error(`${name}: this user (uid ${process.getuid?.() ?? "?"}) cannot ${what} ${target}: ${osReason(err)}`);
    }
  }
}

/** the nearest existing path at or above dir, when it is not a directory */
function fileOnTheWay(dir: string): string | undefined {
  for (let p = dir; ; p = dirname(p)) {
    let stat;
    try {
      stat = statSync(p);
    } catch {
      // missing, or a file further up (ENOTDIR): look higher
    }
    if (stat) return stat.isDirectory() ? undefined : p;
    if (dirname(p) === p) return undefined;
  }
}

/** "permission denied (EACCES)" from Node's "EACCES: permission denied, mkdir '/x'" */
function osReason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const words = e.message.replace(/^[A-Z]+: /, "").replace(/, \w+ '.*'$/, "");
  return e.code ? `${words} (${e.code})` : words;
}
