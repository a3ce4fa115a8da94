// Package daemon is the pool daemon: the one process that owns a pool (its
// lock), serves its thin devices as block devices and runs the commands
// that thinctl forwards to it.
//
// # Run directory
//
// Each daemon keeps its socket, FUSE mount, pid file and log in its own run
// directory, RunDir(pool), below RunBase (env THINPOOL_RUN_DIR, default
// /run/thinpool), so that tests and independent daemons never share one.
//
// # Transport
//
// A client sends one Request (its arguments, working directory and, as
// SCM_RIGHTS, its three standard streams) on the unix socket; the daemon
// runs it with a Handler and answers with the exit code. A cancel message
// on the same connection, or the connection's end, cancels the request's
// context (Interrupted, ErrClientGone). Only root may connect.
package daemon
