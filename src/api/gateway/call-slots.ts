// How many gateway calls run at once. etcd's gateway reaches its gRPC server over one
// HTTP/2 connection, so --max-concurrent-streams bounds its calls too: one past the bound
// waits until another ends (etcd's e2e suite checks that it waits). Here it also keeps the
// work plain HTTP clients can start within the bound gRPC clients have per connection.
import { Code, ConnectError } from "@connectrpc/connect";

export class CallSlots {
  private readonly waiting: Array<() => void> = [];

  constructor(private free: number) {}

  /** Waits for a slot (or throws Canceled once `signal` aborts); the function returned gives it back. */
  async take(signal: AbortSignal): Promise<() => void> {
    if (this.free > 0) this.free--;
    else {
      await new Promise<void>((resolve, reject) => {
        const turn = () => {
          signal.removeEventListener("abort", gone);
          resolve();
        };
        const gone = () => {
          this.waiting.splice(this.waiting.indexOf(turn), 1);
          reject(new ConnectError("the client went away while its call waited", Code.Canceled));
        };
        if (signal.aborted) return gone();
        this.waiting.push(turn);
        signal.addEventListener("abort", gone, { once: true });
      });
    }
    let given = false;
    return () => {
      if (given) return;
      given = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    };
  }
}

/** `res` with `release` called once its body has been taken whole or dropped. */
export function releasedWithBody(res: Response, release: () => void): Response {
  if (!res.body) {
    release();
    return res;
  }
  const reader = res.body.getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          release();
          return controller.close();
        }
        controller.enqueue(value);
      } catch (err) {
        release();
        controller.error(err);
      }
    },
    cancel(reason) {
      release();
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
  return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
}
