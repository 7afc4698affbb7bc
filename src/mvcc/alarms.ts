// etcd's alarms as this member keeps them. NOSPACE is raised when a write would take a
// database past its quota or a database reports it is out of space; while it is raised
// puts, txns that put and lease grants are refused with etcd's "database space exceeded"
// (etcd's capped applier), and reads, deletes, compaction and defrag go on, so an operator
// can free space and disarm it (`etcdctl alarm disarm`). Disarming only clears the alarm,
// as in etcd: the next write still over the quota raises it again.
// Kept in memory: after a restart, the first write that does not fit raises it again.
import { AlarmType } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";

export { AlarmType };

export interface AlarmMember {
  memberId: bigint;
  alarm: AlarmType;
}

type Log = (level: string, msg: string, fields?: Record<string, unknown>) => void;

export class Alarms {
  private readonly active: AlarmMember[] = [];
  /** why NOSPACE was last raised (for /readyz and the log) */
  private noSpaceReason = "";

  constructor(
    /** this member's id: the one the alarms strata raises carry */
    public memberId: bigint,
    private readonly log: Log,
  ) {}

  /** the alarms of one type, or all of them (NONE), oldest first */
  list(type: AlarmType = AlarmType.NONE): AlarmMember[] {
    return this.active.filter((a) => type === AlarmType.NONE || a.alarm === type).map((a) => ({ ...a }));
  }

  /** Raises an alarm (an existing one stays as it is); returns it, as etcd does. */
  activate(memberId: bigint, alarm: AlarmType): AlarmMember {
    const existing = this.active.find((a) => a.memberId === memberId && a.alarm === alarm);
    if (existing) return { ...existing };
    const m = { memberId, alarm };
    this.active.push(m);
    this.log("warn", "alarm raised", { alarm: AlarmType[alarm], member: memberId.toString(16), ...(alarm === AlarmType.NOSPACE && { reason: this.noSpaceReason }) });
    return { ...m };
  }

  /** Clears an alarm; returns it, or undefined when it was not raised. */
  deactivate(memberId: bigint, alarm: AlarmType): AlarmMember | undefined {
    const i = this.active.findIndex((a) => a.memberId === memberId && a.alarm === alarm);
    if (i < 0) return undefined;
    const [m] = this.active.splice(i, 1);
    this.log("warn", "alarm disarmed", { alarm: AlarmType[alarm], member: memberId.toString(16) });
    return m;
  }

  /** Raises NOSPACE for this member, saying why. */
  raiseNoSpace(reason: string): void {
    if (!this.noSpace) this.noSpaceReason = reason;
    this.activate(this.memberId, AlarmType.NOSPACE);
  }

  /** whether any member's NOSPACE is raised: writes that add data are refused */
  get noSpace(): boolean {
    return this.active.some((a) => a.alarm === AlarmType.NOSPACE);
  }

  /** why NOSPACE is raised ("" when it is not, or a client raised it) */
  get reason(): string {
    return this.noSpace ? this.noSpaceReason : "";
  }
}
