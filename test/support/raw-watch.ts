// A Watch stream over raw HTTP/2 with gRPC framing, so a test controls exactly what is
// sent and when the responses are read.
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import * as http2 from "node:http2";
import {
  type WatchResponse,
  WatchRequestSchema,
  WatchResponseSchema,
} from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";

export interface RawWatch {
  responses: WatchResponse[];
  send(req: MessageInitShape<typeof WatchRequestSchema>): void;
  pause(): void;
  resume(): void;
  close(): void;
}

export function rawWatch(endpoint: string): RawWatch {
  const session = http2.connect(`http://${endpoint}`);
  const req = session.request({
    ":method": "POST",
    ":path": "/etcdserverpb.Watch/Watch",
    "content-type": "application/grpc",
    te: "trailers",
  });
  const responses: WatchResponse[] = [];
  // chunks are joined only once a whole message is there: a megabyte message arrives in
  // dozens of chunks, and joining at each one would copy it dozens of times
  let chunks: Buffer[] = [];
  let buffered = 0;
  let need = 5;
  req.on("data", (d: Buffer) => {
    chunks.push(d);
    buffered += d.length;
    while (buffered >= need) {
      let buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      const len = buf.readUInt32BE(1);
      need = 5 + len;
      if (buf.length < need) {
        chunks = [buf];
        break;
      }
      responses.push(fromBinary(WatchResponseSchema, buf.subarray(5, need)));
      buf = buf.subarray(need);
      chunks = buf.length > 0 ? [buf] : [];
      buffered = buf.length;
      need = 5;
    }
  });
  req.on("error", () => {});
  return {
    responses,
    send(r) {
      const msg = toBinary(WatchRequestSchema, create(WatchRequestSchema, r));
      const frame = Buffer.alloc(5 + msg.length);
      frame.writeUInt32BE(msg.length, 1);
      frame.set(msg, 5);
      req.write(frame);
    },
    pause: () => req.pause(),
    resume: () => req.resume(),
    // the stream is cancelled first: a session closes only once its streams did
    close: () => {
      req.close(http2.constants.NGHTTP2_CANCEL);
      session.close();
    },
  };
}

/** the range_end that makes [prefix, end) every key with the prefix */
export function prefixEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix);
  b[b.length - 1]!++;
  return b;
}
