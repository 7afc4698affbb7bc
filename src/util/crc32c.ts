// CRC-32C (Castagnoli) for etcd's HashKV (crc32.MakeTable(crc32.Castagnoli)), table-driven.
// The IEEE CRC-32 is node:zlib's crc32 (Bun and Deno have it too); zlib has no CRC-32C.
const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32C (Castagnoli) of data, continuing from seed (the CRC of what came before) */
export function crc32c(data: Uint8Array, seed = 0): number {
  let c = ~seed >>> 0;
  for (let i = 0; i < data.length; i++) c = TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}
