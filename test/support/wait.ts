// Waiting in tests: for a while, or until a condition holds (then the test's own checks
// say what went wrong, so a timeout here does not throw).
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves once `cond` holds, or after `ms` whatever it says. */
export async function until(cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await sleep(50);
}
