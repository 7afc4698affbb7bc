// etcd's auth store served by one strata process (etcd's auth/store.go): the state lives
// in the default backend (mvcc's AuthView), shared by every process on that database;
// this process holds a copy, polls the stored revision to adopt other processes'
// changes within POLL_MS, and reads it afresh before a change or a management read. The
// checks every request passes (kv.ts, watch.ts, lease.ts, ...) read only the copy: a
// user's merged permissions are kept until the auth store changes.
import type { Permission } from "../gen/etcd/api/authpb/auth_pb.ts";
import type { RequestOp, TxnRequest } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { AuthView } from "../mvcc/backend.ts";
import { backendUnavailable, EtcdError, errors } from "../mvcc/errors.ts";
import type { Rev } from "../mvcc/types.ts";
import type { SnapshotAuth } from "../snapshot/index.ts";
import { AuthState, ROOT } from "./auth-state.ts";
import type { AuthInfo, TokenProvider } from "./auth-tokens.ts";
import type { Caller } from "./caller.ts";
import { Passwords } from "./passwords.ts";
import { mergePermissions, permits, type UserPermissions } from "./permissions.ts";

/** how often the stored revision is read to notice other processes' changes */
const POLL_MS = 1000;
/** attempts at a change while other processes keep changing the store first */
const CHANGE_ATTEMPTS = 20;

type Log = (level: string, msg: string, fields?: Record<string, unknown>) => void;

export interface AuthSettings {
  tokens: TokenProvider;
  /** bcrypt's cost for new passwords (etcd's --bcrypt-cost, 10 by default) */
  bcryptCost: number;
  /** etcd's --client-cert-auth: a verified certificate's CN is the user of a call without a token */
  clientCertAuth: boolean;
}

export class AuthStore {
  private state = new AuthState();
  /** the revision of the stored record the copy was read from (0: none stored) */
  private stored: Rev = 0n;
  private readonly permissions = new Map<string, UserPermissions>();
  private poller: ReturnType<typeof setInterval> | undefined;
  private polling = false;
  /** the last poll failed (logged once per outage) */
  private unreadable = false;
  private readonly passwords: Passwords;

  constructor(
    /** the default backend's auth record; undefined when the default backend is an upstream etcd */
    private readonly storage: AuthView | undefined,
    /** the default backend's name, for messages */
    private readonly backend: string,
    private readonly settings: AuthSettings,
    private readonly log: Log,
  ) {
    this.passwords = new Passwords(settings.bcryptCost);
  }

  /** Reads the stored state and starts following other processes' changes. */
  async start(): Promise<void> {
    if (!this.storage) return;
    await this.reload();
    this.poller = setInterval(() => void this.poll(), POLL_MS);
    this.poller.unref?.();
  }

  stop(): void {
    clearInterval(this.poller);
    this.passwords.close();
  }

  get enabled(): boolean {
    return this.state.enabled;
  }

  /** etcd's auth revision */
  get revision(): Rev {
    return this.state.revision;
  }

  /** whether this keyspace keeps an auth store at all (not with an upstream etcd as the default backend) */
  get available(): boolean {
    return this.storage !== undefined;
  }

  // ---- who calls (etcd's AuthInfoFromCtx, then AuthInfoFromTLS)

  /** The caller's identity: its token's (an unknown token is refused, as etcd refuses it), else its certificate's. */
  identify(c: Caller): AuthInfo | undefined {
    if (c.token !== undefined) {
      const info = this.settings.tokens.info(c.token, this.state.revision);
      if (!info) throw errors.invalidAuthToken();
      return info;
    }
    if (this.settings.clientCertAuth && c.commonName) return { user: c.commonName, revision: this.state.revision };
    return undefined;
  }

  // ---- etcd's permission checks; each passes at once while auth is off

  checkRange(ai: AuthInfo | undefined, key: Uint8Array, rangeEnd: Uint8Array): void {
    this.check(ai, key, rangeEnd, "read");
  }

  checkPut(ai: AuthInfo | undefined, key: Uint8Array): void {
    this.check(ai, key, new Uint8Array(0), "write");
  }

  checkDelete(ai: AuthInfo | undefined, key: Uint8Array, rangeEnd: Uint8Array): void {
    this.check(ai, key, rangeEnd, "write");
  }

  /**
   * Every compare and every operation of both branches, before anything runs, as etcd's
   * checkTxnAuth; also those of nested txns (etcd 3.4 skipped them, later etcd checks them).
   */
  checkTxn(ai: AuthInfo | undefined, r: TxnRequest): void {
    if (!this.state.enabled) return;
    for (const c of r.compare) this.checkRange(ai, c.key, c.rangeEnd);
    this.checkOps(ai, r.success);
    this.checkOps(ai, r.failure);
  }

  private checkOps(ai: AuthInfo | undefined, ops: RequestOp[]): void {
    for (const op of ops) {
      const u = op.request;
      if (u.case === "requestRange") this.checkRange(ai, u.value.key, u.value.rangeEnd);
      else if (u.case === "requestPut") this.checkPut(ai, u.value.key);
      else if (u.case === "requestDeleteRange") {
        if (u.value.prevKv) this.checkRange(ai, u.value.key, u.value.rangeEnd);
        this.checkDelete(ai, u.value.key, u.value.rangeEnd);
      } else if (u.case === "requestTxn") this.checkTxn(ai, u.value);
    }
  }

  /** etcd's check after a read: the auth store changed while it was served */
  checkUnchanged(ai: AuthInfo | undefined): void {
    if (ai && ai.revision !== 0n && ai.revision !== this.state.revision) throw errors.authOldRevision();
  }

  /** what only a user with the root role may do (etcd's IsAdminPermitted) */
  checkAdmin(ai: AuthInfo | undefined): void {
    if (!this.state.enabled) return;
    if (!ai || ai.user === "") throw errors.userEmpty();
    if (!this.state.users.has(ai.user)) throw errors.userNotFound();
    if (!this.state.isRoot(ai.user)) throw errors.permissionDenied();
  }

  /** whether the user has the role (a user may read its own roles) */
  hasRole(ai: AuthInfo | undefined, role: string): boolean {
    return ai !== undefined && (this.state.users.get(ai.user)?.roles.includes(role) ?? false);
  }

  /** a user of the root role passes every key check */
  isRoot(ai: AuthInfo | undefined): boolean {
    return ai !== undefined && this.state.isRoot(ai.user);
  }

  /** etcd's isOpPermitted */
  private check(ai: AuthInfo | undefined, key: Uint8Array, rangeEnd: Uint8Array, kind: "read" | "write"): void {
    if (!this.state.enabled) return;
    if (!ai || ai.revision === 0n) throw errors.userEmpty();
    if (ai.revision < this.state.revision) throw errors.authOldRevision();
    const user = this.state.users.get(ai.user);
    if (!user) throw errors.permissionDenied();
    if (user.roles.includes(ROOT)) return;
    let merged = this.permissions.get(ai.user);
    if (!merged) {
      merged = mergePermissions(user.roles.flatMap((r) => this.state.roles.get(r) ?? []));
      this.permissions.set(ai.user, merged);
    }
    if (!permits(merged[kind], key, rangeEnd)) throw errors.permissionDenied();
  }

  // ---- the Auth service's operations (the caller's right to them is checked in auth.ts)

  async authStatus(): Promise<{ enabled: boolean; revision: Rev }> {
    await this.reload();
    return { enabled: this.state.enabled, revision: this.state.revision };
  }

  async enable(): Promise<void> {
    await this.change((s) => s.enable());
  }

  async disable(): Promise<void> {
    await this.change((s) => s.disable());
  }

  /** A token for the user once its password matches (etcd's CheckPassword, then Authenticate). */
  async authenticate(name: string, password: string): Promise<string> {
    await this.reload();
    for (;;) {
      if (!this.state.enabled) throw errors.authNotEnabled();
      const checked = this.state.revision;
      const user = this.state.users.get(name);
      if (!user) throw errors.authFailed();
      if (user.options?.noPassword) throw errors.noPasswordUser();
      const hash = new TextDecoder().decode(user.password);
      if (!(await this.passwords.matches(password, hash))) throw errors.authFailed();
      // the store changed while the password was checked: check against the new one
      if (this.state.revision === checked) return this.settings.tokens.assign(name, checked);
    }
  }

  async userAdd(name: string, password: string, noPassword: boolean): Promise<void> {
    if (name === "") throw errors.userEmpty();
    await this.reload();
    if (this.state.users.has(name)) throw errors.userAlreadyExist();
    const hashed = noPassword ? new Uint8Array(0) : await this.hash(password);
    await this.change((s) => s.userAdd(name, hashed, noPassword));
  }

  async userDelete(name: string): Promise<void> {
    await this.change((s) => s.userDelete(name));
  }

  async userChangePassword(name: string, password: string): Promise<void> {
    await this.reload();
    if (!this.state.users.has(name)) throw errors.userNotFound();
    const hashed = await this.hash(password);
    await this.change((s) => s.userChangePassword(name, hashed));
  }

  async userGrantRole(name: string, role: string): Promise<void> {
    await this.change((s) => s.userGrantRole(name, role));
  }

  async userRevokeRole(name: string, role: string): Promise<void> {
    await this.change((s) => s.userRevokeRole(name, role));
  }

  async userGet(name: string): Promise<string[]> {
    await this.reload();
    const user = this.state.users.get(name);
    if (!user) throw errors.userNotFound();
    return [...user.roles];
  }

  async userList(): Promise<string[]> {
    await this.reload();
    return this.state.userNames();
  }

  async roleAdd(name: string): Promise<void> {
    await this.change((s) => s.roleAdd(name));
  }

  async roleDelete(name: string): Promise<void> {
    await this.change((s) => s.roleDelete(name));
  }

  async roleGrantPermission(name: string, perm: Permission): Promise<void> {
    await this.change((s) => s.roleGrantPermission(name, perm));
  }

  async roleRevokePermission(name: string, key: Uint8Array, rangeEnd: Uint8Array): Promise<void> {
    await this.change((s) => s.roleRevokePermission(name, key, rangeEnd));
  }

  async roleGet(name: string): Promise<Permission[]> {
    await this.reload();
    const role = this.state.roles.get(name);
    if (!role) throw errors.roleNotFound();
    return role.keyPermission;
  }

  async roleList(): Promise<string[]> {
    await this.reload();
    return this.state.roleNames();
  }

  /** the store as etcd's snapshot buckets hold it, read afresh; undefined where strata keeps none (an upstream etcd default) */
  async forSnapshot(): Promise<SnapshotAuth | undefined> {
    if (!this.storage) return undefined;
    await this.reload();
    return this.state.toSnapshot();
  }

  // ---- the stored state

  private async hash(password: string): Promise<Uint8Array> {
    return new TextEncoder().encode(await this.passwords.hash(password));
  }

  /** Applies `fn` (etcd's rules, which may refuse) to the stored state and stores the result, retrying when another process got first. */
  private async change(fn: (s: AuthState) => void): Promise<void> {
    const storage = this.requireStorage();
    for (let attempt = 0; attempt < CHANGE_ATTEMPTS; attempt++) {
      const record = await this.stage(() => storage.readAuth());
      const current = record ? AuthState.decode(record.data) : new AuthState();
      const at = record?.revision ?? 0n;
      const next = current.copy();
      fn(next);
      const data = next.encode();
      if (record && Buffer.from(data).equals(Buffer.from(record.data))) return this.adopt(current, at);
      if (await this.stage(() => storage.writeAuth(at, { revision: at + 1n, data }))) return this.adopt(next, at + 1n);
    }
    throw new EtcdError("Unavailable", "strata: the auth store kept changing under this request (other strata processes); try again");
  }

  /** Reads the stored state when its revision moved. */
  private async reload(): Promise<void> {
    const storage = this.requireStorage();
    const at = await this.stage(() => storage.authRevision());
    if (at === this.stored) return;
    const record = await this.stage(() => storage.readAuth());
    if (record) this.adopt(AuthState.decode(record.data), record.revision);
  }

  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      await this.reload();
      if (this.unreadable) this.log("info", "the auth store is readable again", { backend: this.backend });
      this.unreadable = false;
    } catch (err) {
      // once per outage, not once a second
      if (!this.unreadable) this.log("warn", "reading the auth store failed; its last state stays in force", { error: (err as Error).message });
      this.unreadable = true;
    } finally {
      this.polling = false;
    }
  }

  /** Puts a state read or written in force: tokens of users whose password changed or who are gone end. */
  private adopt(next: AuthState, stored: Rev): void {
    if (stored < this.stored) return;
    const before = this.state;
    for (const [name, user] of before.users) {
      const now = next.users.get(name);
      if (!now || !Buffer.from(now.password).equals(Buffer.from(user.password))) this.settings.tokens.invalidateUser(name);
    }
    if (before.enabled && !next.enabled) this.settings.tokens.disable();
    if (stored !== this.stored && (before.enabled !== next.enabled || before.revision !== next.revision)) {
      this.log("info", "auth store changed", { enabled: next.enabled, authRevision: String(next.revision) });
    }
    this.state = next;
    this.stored = stored;
    this.permissions.clear();
  }

  private requireStorage(): AuthView {
    if (this.storage) return this.storage;
    throw new EtcdError(
      "FailedPrecondition",
      `strata: the default backend ${this.backend} is an upstream etcd: strata keeps no users or roles there; turn on authentication in that etcd itself`,
    );
  }

  /** a call to the database: its own failure is its unavailability, naming it */
  private async stage<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof EtcdError) throw err;
      throw backendUnavailable(this.backend, err);
    }
  }
}
