// Which backend URLs name an upstream etcd: a file of its own, so that a config check or a
// route listing needs no etcd client (upstream.ts and its gRPC transport load only when
// an upstream is configured).
export const UPSTREAM_SCHEMES = ["etcd://", "etcds://"];

export function isUpstreamUrl(url: string): boolean {
  return UPSTREAM_SCHEMES.some((s) => url.startsWith(s));
}
