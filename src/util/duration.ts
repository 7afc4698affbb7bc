// Durations as operators write them: "500ms", "30s", "10m", "1h", "1h30m".
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** milliseconds, or undefined when the text is not a duration */
export function parseDuration(text: string): number | undefined {
  const parts = text.trim().match(/^(\d+(?:\.\d+)?(?:ms|s|m|h))+$/);
  if (!parts) return undefined;
  let total = 0;
  for (const [, n, unit] of text.trim().matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) total += Number(n) * UNITS[unit!]!;
  return total;
}
