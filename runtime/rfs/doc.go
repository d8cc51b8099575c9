// Package rfs replicates the directories of a mirror module in real time,
// as SafeKit's <rfs> does (User's Guide §13.7, §5.4): on the primary,
// every change to a replicated directory reaches the secondary before the
// writer's call returns; the secondary's copy is read-only; a node that
// comes back is resynchronised while the application keeps running,
// copying only what changed.
//
// # What it owns
//
//   - The on-disk layout (layout.go): Configure renames /a/dir to
//     /a/dir<suffix> and leaves a symlink; Deconfigure undoes it. Used by
//     `safekit config`/`deconfig`.
//   - The mounts (replica.go): at module start the symlink becomes a
//     directory with a FUSE loopback of the backing directory on it,
//     read-write on the primary, read-only (EROFS) on the secondary;
//     SetRole switches without unmounting. At stop, processes still using
//     the directory are logged and stopped (TERM, then KILL), the mount is
//     removed and the symlink comes back. A mount left by a crashed process
//     is detached at the next start.
//   - The interception (fs.go): every mutating operation is applied
//     locally and replicated. Kernel passthrough and the writeback cache
//     are disabled (either would hide writes from this daemon);
//     copy_file_range answers ENOSYS so that the kernel falls back to
//     writes; hard links are refused (EPERM, as SafeKit does).
//   - The stream (wire.go, primary.go, secondary.go, auth.go): one TCP
//     connection per module, authenticated with the cluster key, optionally
//     TLS, pipelined, acknowledged by sequence number.
//   - The dirty tracking and the reintegration (state.go, reint.go), the
//     verification (Verify: rfsverify) and the estimate (Diff: rfsdiff).
//
// # Using it from the module process
//
//	c := rfs.FromSafe(name, id, cfg.RFS)      // then StateDir, Key, TLS, Log
//	r, err := rfs.Open(c)
//	r.Listen(flowAddr:rfs.Port(id))           // both nodes, for the module's life
//	r.Mount(rfs.Primary or rfs.Secondary)     // at module start
//	r.Resync(ctx, peerFlowAddr:port, opts)    // secondary: automaton.Resync
//	r.SetRole(...)                            // swap, failover
//	r.Unmount()                               // module stop
//	for e := range r.Events() { ... }         // SecondaryLost -> ALONE, ...
//
// The secondary connects to the primary: that is where the automaton asks
// for a resynchronisation (Resync{ID, Full, Since, External}), and it
// answers with ResyncDone when Resync returns. Both nodes listen on
// 5600+(id-1)*4; a connection is served only by the primary.
//
// # The stream
//
// The primary puts each operation on the socket, then does it locally,
// then waits for the secondary's acknowledgement: with async="second" it is
// sent on receipt (the secondary applies in order afterwards); with
// async="none" after applying, and an fsync is acknowledged after the
// secondary's own fdatasync. A data operation holds a range lock on its
// file from before sending until the local write is done, so that
// overlapping writes, and a reintegration's read of a zone, have the same
// order on the stream as on the disk.
//
// One ordered stream is kept even when nbremconn asks for more: a single
// total order keeps the secondary's copy a prefix of the primary's history
// (crash-consistent, including across files and namespace operations),
// which per-file streams would not; and on the measured machines several
// pipelined connections brought no throughput (rfs notes §4.4).
//
// An operation not acknowledged within locktimeout, a send blocked longer
// than sendtimeout, an operation the secondary could not apply, or a lost
// connection drop the secondary: the writers are released, what the
// secondary may not have applied goes to the bitmaps, and SecondaryLost
// tells the module process (the module goes ALONE). A writer is never
// blocked longer than locktimeout.
//
// # Reintegration
//
// While no secondary is attached, each write marks its zones
// (ruzone_blocksize, 8 MiB by default) in a per-file bitmap; a new file is
// marked whole; a renamed entry is marked for checksum comparison. The
// bitmaps live in memory and are written to StateDir/state.json at a clean
// unmount; the file says "unclean" while mounted, so a crash is detected.
//
// When a secondary connects, the primary chooses:
//
//   - full: fullsync asked, or first synchronisation of either node
//     (unless date or external is asked): everything is copied (holes
//     stay holes);
//   - date (secondforce -d, the secondary holds a restored backup): files
//     whose mtime on the primary is at or after the date are copied whole;
//     other files both nodes have are left as they are, times included;
//   - external (rfssync external): every file both nodes have is compared
//     zone by zone (no size or date shortcut) and only differing zones are
//     copied;
//   - refused with MsgAbnormalDelta (not for date and external): the nodes' synctimestamps differ by
//     more than 90 s (fullsync is then needed);
//   - bitmap: the secondary stopped cleanly at the synchronisation the
//     bitmaps are relative to, and the primary did not crash: only the
//     marked zones are copied;
//   - checksum: otherwise. Files whose size or mtime differ, or modified
//     since the last synchronisation minus one hour, are compared zone by
//     zone (xxhash64) and only differing zones are copied.
//
// The primary walks each directory of both trees (a listing from the
// secondary, on the stream), removes extra entries, creates missing ones,
// aligns owners, modes, times and xattrs, and queues file copies to nbrei
// workers. The walk and the copies use the same stream as live writes, and
// each zone is read under its range lock, so a live write is never
// overwritten by an older copy; live operations on entries the walk has
// not reached yet may fail on the secondary and are ignored until the end
// of the reintegration. Entries renamed during the walk are compared again
// at its end. The end-of-reintegration message makes the secondary up to
// date: both nodes record a new epoch and synctimestamp, the bitmaps
// restart empty. reiallowedbw caps the copy rate; reitimeout bounds each
// request (listing, checksums).
//
// Known limits: an entry renamed while the secondary was away is compared
// by checksums under its new name (copied whole when the secondary has
// nothing there): renames are not replayed. Files changed on the primary
// while the module was stopped (through the symlink) are detected by their
// ctime and make the bitmaps unusable for that reintegration. Only the
// fallocate modes the kernel's FUSE client forwards (plain, KEEP_SIZE,
// PUNCH_HOLE, ZERO_RANGE) can reach the daemon; the others fail with
// EOPNOTSUPP in the application. An O_TMPFILE create is refused
// (EOPNOTSUPP). Regular expressions of <notreplicated regexpath> are
// matched against the path relative to the replicated directory; under
// the "!" form directories are always replicated.
package rfs
