// strata's log: one JSON object per line on stderr, {time, level, msg, ...fields}, as
// etcd's zap logger writes them. Lines below the level set by --log-level are dropped.

export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
/** what every part of strata logs through: a LogLevel, or "fatal", which is always written */
export type Log = (level: string, msg: string, fields?: Record<string, unknown>) => void;

const RANK: Record<string, number> = { debug: 0, info: 1, warn: 2, error: 3, fatal: 4 };
let threshold = RANK.info!;

export function setLogLevel(level: LogLevel): void {
  threshold = RANK[level]!;
}

/** whether lines of this level are written (to skip work for lines that would be dropped) */
export function logs(level: LogLevel): boolean {
  return RANK[level]! >= threshold;
}

// revisions and lease IDs are bigints, which JSON.stringify refuses
const bigintsAsText = (_: string, v: unknown) => (typeof v === "bigint" ? v.toString() : v);

export const log: Log = (level, msg, fields = {}) => {
  if ((RANK[level] ?? RANK.error!) < threshold) return;
  console.error(JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }, bigintsAsText));
};
