// etcd snapshot files: what Maintenance.Snapshot and `strata import --from-snapshot` use.
export { CompactedMeanwhile, type SnapshotEntry, SnapshotError, SnapshotFile, type SnapshotLease, type SnapshotAuth, type SnapshotSource, type SnapshotWritten, writeSnapshot } from "./etcd-snapshot.ts";
