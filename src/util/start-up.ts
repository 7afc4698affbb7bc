// Whether this process is a server still starting: until it listens, nobody waits on its
// event loop, so the ranges it reads for itself then (the topology and the CRDs it follows)
// are read there rather than on a read thread. A thread started for them held its
// JavaScript VM (about 6 MiB) for the 30 s it takes to retire, and its start delayed the
// server's. Outside a starting server (tests, other commands) this is never on.

let starting = false;

/** the server has started starting: reads run on the event loop until servingBegins() */
export function startingUp(): void {
  starting = true;
}

/** the server listens: reads whose cost a client controls go to read threads again */
export function servingBegins(): void {
  starting = false;
}

/** whether the server has yet to listen */
export function stillStarting(): boolean {
  return starting;
}
