// Backend URLs as written in config, flags and environment, in the one form the rest of
// strata reads.

/**
 * Accepts kine-style endpoints as well: mysql://user:pass@tcp(host:3306)/db becomes
 * mysql://user:pass@host:3306/db.
 */
export function normaliseEndpoint(url: string): string {
  return url.trim().replace(/^([a-z]+:\/\/(?:[^@/]*@)?)tcp\(([^)]*)\)/, "$1$2");
}
