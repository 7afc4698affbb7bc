// Which strata this is: the package version, and the git commit it was built from.
// `npm run build` (build/build.ts) defines STRATA_COMMIT in the executable; from
// source the commit is asked of git when first needed.
import { spawnSync } from "node:child_process";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import pkg from "../../package.json" with { type: "json" };

declare const STRATA_COMMIT: string;

export const version: string = pkg.version;

let known: string | undefined;

/** the commit's short hash, or "unknown" when neither the build nor git can tell */
export function commit(): string {
  if (typeof STRATA_COMMIT === "string") return STRATA_COMMIT;
  known ??= gitCommit();
  return known;
}

function gitCommit(): string {
  try {
    const r = spawnSync("git", ["rev-parse", "--short=12", "HEAD"], {
      cwd: dirname(fileURLToPath(import.meta.url)),
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
    const hash = r.status === 0 ? r.stdout.trim() : "";
    return /^[0-9a-f]+$/.test(hash) ? hash : "unknown";
  } catch {
    return "unknown";
  }
}
