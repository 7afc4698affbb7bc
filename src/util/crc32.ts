// CRC-32 for Maintenance.Hash and HashKV: IEEE (strata's Hash over the live keys) and
// Castagnoli (etcd's HashKV: crc32.MakeTable(crc32.Castagnoli)), table-driven.
function table(poly: number): Uint32Array {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? poly ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
}
const IEEE = table(0xedb88320);
const CASTAGNOLI = table(0x82f63b78);

function update(t: Uint32Array, data: Uint8Array, seed: number): number {
  let c = ~seed >>> 0;
  for (let i = 0; i < data.length; i++) c = t[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** CRC-32 (IEEE) of data, continuing from seed (the CRC of what came before) */
export function crc32(data: Uint8Array, seed = 0): number {
  return update(IEEE, data, seed);
}

/** CRC-32C (Castagnoli) of data, continuing from seed */
export function crc32c(data: Uint8Array, seed = 0): number {
  return update(CASTAGNOLI, data, seed);
}
