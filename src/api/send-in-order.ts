// Response bodies handed to the HTTP/2 layer a few at a time per connection, in the order
// they became ready. Bun's HTTP/2 server (1.4) sends queued DATA frames in the order of its
// stream table, not the order they were written: once the client's connection-level
// flow-control window is used up (65,535 bytes unless the client raises it; grpc-js does
// not), a response can wait behind later ones for seconds. With only a few bodies queued
// natively, each leaves within a few frames of its turn.
import type { Http2Session } from "node:http2";

/** response bodies per connection queued in the HTTP/2 layer at once */
const IN_FLIGHT = 4;

interface Gate {
  inFlight: number;
  waiting: Array<() => void>;
}

const gates = new WeakMap<Http2Session, Gate>();

/**
 * Calls `send` when it is this response's turn on the connection; `send` calls `done`
 * once its body has left (or the stream closed). `done` may be called more than once.
 */
export function sendInOrder(session: Http2Session | undefined, send: (done: () => void) => void): void {
  if (!session) return send(() => {});
  let gate = gates.get(session);
  if (!gate) gates.set(session, (gate = { inFlight: 0, waiting: [] }));
  const g = gate;
  const start = () => {
    g.inFlight++;
    let finished = false;
    send(() => {
      if (finished) return;
      finished = true;
      g.inFlight--;
      g.waiting.shift()?.();
    });
  };
  if (g.inFlight < IN_FLIGHT && g.waiting.length === 0) start();
  else g.waiting.push(start);
}
