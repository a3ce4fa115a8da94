// Package daemon is the pool daemon: the one process that owns a pool (its
// lock), serves its thin devices as block devices and runs the commands
// that thinctl forwards to it. Its imports go one way: daemon uses volumes
// (the model), thinpool (the engine) and blockdev (FUSE, loop devices,
// mounts); nothing below imports it.
//
// # Serving
//
// New takes an open pool: it cleans up what a previous daemon of the run
// directory left (mounts, loop devices, a dead FUSE mount; see Cleanup),
// serves FUSE there through a Host, builds the volumes.Manager on that Host
// (which rolls back steps a crash left half-made) and starts the loop that
// commits the pool every CommitPeriod and watches its space (warnings at
// SpaceThresholds, autoextend as the pool's volumes.Autoextend policy says).
// Run listens on the socket and serves until Stop succeeds; then it
// commits, closes the pool and removes the run directory.
//
// # Stopping
//
// A stop is refused, with a *BusyError naming the processes, while a
// process holds one of the daemon's mounts (see blockdev.Holders); nothing
// is torn down then. A forced stop syncs and lazily unmounts everything,
// serves what is still held until the kernel releases it (Draining), and
// only then detaches and exits.
//
// # Run directory
//
// Each daemon keeps its socket, FUSE mount, pid file and log in its own run
// directory, RunDir(pool), below RunBase (env THINPOOL_RUN_DIR, default
// /run/thinpool), so that tests and independent daemons never share one.
// Spawn starts a daemon in the background and waits until it answers; one
// that exits at start hands it its error (ReportStartError, StartError).
//
// # Transport
//
// A client sends one Request (its arguments, working directory and, as
// SCM_RIGHTS, its three standard streams) on the unix socket; the daemon
// runs it with a Handler and answers with the exit code. A cancel message
// on the same connection, or the connection's end, cancels the request's
// context (Interrupted, ErrClientGone). Only root may connect.
package daemon
