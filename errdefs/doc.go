// Package errdefs defines the few kinds of error that every layer of
// thinpool shares, as containerd's errdefs package does
// (github.com/containerd/errdefs): not found, already exists, in use,
// failed precondition, invalid argument, no space, corrupt, permission
// denied and unavailable.
//
// Each package keeps its own sentinels (thinpool.ErrNotFound,
// blockdev.ErrBusy, volumes.ErrExists), made with [New] so that they match
// their kind with errors.Is as well as themselves. An error raised about a
// named object is worded where it is raised, with [Newf]:
//
//	errdefs.Newf(ErrNotFound, "device %q not found", name)
//
// Its message is that reason alone; it matches the package sentinel, and
// so the kind, with errors.Is. Every layer above adds context with
// fmt.Errorf and %w and never edits the text. The CLI prints the chain as it
// is and maps the kind to an exit code; an RPC layer would map it to a
// status code.
//
// errdefs imports only the standard library.
package errdefs
