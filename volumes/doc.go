// Package volumes is the object model above the thin pool: images (a chain
// of read-only layer snapshots over a base device), containers (a writable
// snapshot of an image's top layer, with volume and bind mounts) and
// volumes (thin devices with their own filesystem). Every record it keeps
// lives in the pool's own metadata (device labels), never in side files;
// a step under way is labelled "creating", so that a crash part-way is
// rolled back at the next New.
//
// volumes touches the kernel only through the Host it is given (attach a
// device, mkfs, mount, sync, grow, bind mounts): the daemon's Host serves
// devices through FUSE and loop devices; the tests use a fake that needs
// no root; a manager made with Offline has none and only reads records.
// It imports blockdev only for the type of a device's failed write
// (blockdev.WriteError).
//
// A Manager is safe for concurrent use.
package volumes
