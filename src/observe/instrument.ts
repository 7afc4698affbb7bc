// Times every call strata makes to a backend, for strata_backend_request_duration_seconds.
import type { Backend } from "../mvcc/backend.ts";

export type BackendCallObserver = (backend: string, operation: string, seconds: number) => void;

/** The backend with each method that returns a promise timed from call to settlement. */
export function instrumentBackend(name: string, backend: Backend, observe: BackendCallObserver): Backend {
  const timed = new Map<string, (...args: unknown[]) => unknown>();
  return new Proxy(backend, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (typeof value !== "function" || typeof prop !== "string") return value;
      let fn = timed.get(prop);
      if (!fn) {
        fn = (...args: unknown[]) => {
          const start = performance.now();
          const out = value.apply(target, args);
          if (!(out instanceof Promise)) return out;
          const done = () => observe(name, prop, (performance.now() - start) / 1000);
          out.then(done, done);
          return out;
        };
        timed.set(prop, fn);
      }
      return fn;
    },
  });
}
