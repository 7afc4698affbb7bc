// The defect in Bun's node:http2 server (1.4.5) that stopped kube-apiserver's watches on
// strata, reproduced with node:http2 and a raw socket alone, for Bun's tracker:
//   bun scripts/bun-http2-window-repro.mjs    -> "stalled: 3211186 of 8388608 bytes"
//   node scripts/bun-http2-window-repro.mjs   -> "complete: 8388608 bytes" (Deno too)
// The peer reads a long response, crediting it the way grpc-go does (a stream WINDOW_UPDATE
// once a quarter of the window is read), then raises SETTINGS_INITIAL_WINDOW_SIZE from
// 65,535 to 1 MiB, as grpc-go's BDP estimation does after large responses on the same
// connection. RFC 9113 §6.9.2: the stream's window grows by the difference, so the server
// may send ~1 MiB more, and the peer sends its next WINDOW_UPDATE only after 256 KiB. Bun
// applies the new value only where it exceeds the stream's window counted with all the
// credit granted so far (here 3 MiB), and then replaces rather than adds: the increase is
// lost, the server stops 64 KiB later, and the peer, believing the window open, waits.
import http2 from "node:http2";
import net from "node:net";

const TOTAL = 8 * 1024 * 1024;
const server = http2.createServer((req, res) => {
  let left = TOTAL;
  const chunk = Buffer.alloc(16384, 97);
  const more = () => { while (left > 0) { left -= chunk.length; if (!res.write(chunk)) return res.once("drain", more); } res.end(); };
  more();
});
server.listen(0, "127.0.0.1", () => {
  const sock = net.connect(server.address().port, "127.0.0.1");
  const frame = (type, flags, id, payload) => {
    const h = Buffer.alloc(9);
    h.writeUIntBE(payload.length, 0, 3); h[3] = type; h[4] = flags; h.writeUInt32BE(id, 5);
    return Buffer.concat([h, payload]);
  };
  const u32 = (n) => { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b; };
  const settings = (id, v) => { const b = Buffer.alloc(6); b.writeUInt16BE(id); b.writeUInt32BE(v, 2); return b; };
  // HPACK: :method GET (0x82), :scheme http (0x86), :path / (0x84), :authority "x" (literal, indexed name 1)
  const headers = Buffer.from([0x82, 0x86, 0x84, 0x41, 0x01, 0x78]);
  sock.write(Buffer.concat([
    Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    frame(4, 0, 0, Buffer.alloc(0)),                 // SETTINGS: defaults (65,535-byte windows)
    frame(1, 0x5, 1, headers),                       // HEADERS stream 1, END_STREAM|END_HEADERS
  ]));
  let window = 65535, pending = 0, got = 0, raised = false, buf = Buffer.alloc(0);
  sock.on("data", (d) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
      const len = buf.readUIntBE(0, 3), type = buf[3], flags = buf[4];
      buf = buf.subarray(9 + len);
      if (type === 4 && !(flags & 1)) sock.write(frame(4, 1, 0, Buffer.alloc(0)));   // SETTINGS ACK
      if (type !== 0) continue;
      got += len; pending += len;
      if (flags & 1) { console.log(`complete: ${got} bytes`); process.exit(0); }
      sock.write(frame(8, 0, 0, u32(len)));          // connection window: credited at once
      if (pending >= window / 4) { sock.write(frame(8, 0, 1, u32(pending))); pending = 0; }
      if (!raised && got >= 3 * 1024 * 1024) {
        // grpc-go's BDP estimate grew: connection window first, then the streams' initial window
        raised = true;
        sock.write(Buffer.concat([frame(8, 0, 0, u32(4 * 1024 * 1024)), frame(4, 0, 0, settings(4, 1024 * 1024))]));
        window = 1024 * 1024;
      }
    }
  });
  setTimeout(() => { console.log(`stalled: ${got} of ${TOTAL} bytes`); process.exit(1); }, 3000);
});
