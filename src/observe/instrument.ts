// Times every call strata makes to a backend, for strata_backend_request_duration_seconds.
import type { Backend } from "../mvcc/backend.ts";

/** the observer of one backend's calls of one operation: told each call's seconds */
export type BackendCallObserver = (backend: string, operation: string) => (seconds: number) => void;

/**
 * The backend with each method that returns a promise timed from call to settlement. The
 * timed methods are made once, on an object whose prototype is the backend (its other
 * properties read through): a Proxy's trap ran on every property read, and reads of one
 * key call the backend once each.
 */
export function instrumentBackend(name: string, backend: Backend, observe: BackendCallObserver): Backend {
  const timed = Object.create(backend) as Backend;
  for (const prop of methodNames(backend)) {
    const method = (backend as unknown as Record<string, (...args: unknown[]) => unknown>)[prop]!;
    const record = observe(name, prop);
    const fn = (...args: unknown[]) => {
      const start = performance.now();
      const out = method.apply(backend, args);
      if (!(out instanceof Promise)) return out;
      const done = () => record((performance.now() - start) / 1000);
      out.then(done, done);
      return out;
    };
    Object.defineProperty(timed, prop, { value: fn, enumerable: false });
  }
  return timed;
}

/** the names of the methods `o` has, its own and its classes' */
function methodNames(o: object): Set<string> {
  const names = new Set<string>();
  for (let p: object | null = o; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const prop of Object.getOwnPropertyNames(p)) {
      if (prop === "constructor") continue;
      const d = Object.getOwnPropertyDescriptor(p, prop)!;
      if (typeof d.value === "function") names.add(prop);
    }
  }
  return names;
}
