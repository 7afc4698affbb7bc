// The thread that hashes and checks passwords with bcrypt (see passwords.ts): one at a
// time, off the event loop.
import bcrypt from "bcryptjs";

export type PasswordRequest = { id: number; hash: string; cost: number } | { id: number; check: string; against: string };
export type PasswordReply = { id: number; hashed: string } | { id: number; matches: boolean } | { id: number; error: string };

declare const self: { onmessage: ((e: MessageEvent<PasswordRequest>) => void) | null; postMessage(m: PasswordReply): void };

self.onmessage = (e) => {
  const req = e.data;
  try {
    if ("hash" in req) self.postMessage({ id: req.id, hashed: bcrypt.hashSync(req.hash, req.cost) });
    else self.postMessage({ id: req.id, matches: bcrypt.compareSync(req.check, req.against) });
  } catch (err) {
    self.postMessage({ id: req.id, error: String(err) });
  }
};
