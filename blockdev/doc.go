// Package blockdev serves thin devices as block devices: each device is a
// regular file in a FUSE filesystem that this process serves, and a loop
// device attached to that file turns it into /dev/loopN. The package also
// wraps the few kernel calls around it: loop attach and detach, mkfs, mount,
// unmount, and filesystem freeze for consistent snapshots.
//
// It declares the one interface it needs, [Device], and imports nothing from
// thinpool.
//
// # Serving
//
// [Serve] mounts a FUSE filesystem (go-fuse v2, mounted with mount(2)
// directly, no fusermount) whose root directory holds one file per device
// added with [Server.Add]. Reads and writes on the file go straight to
// Device.ReadAt and Device.WriteAt; fsync goes to Device.Sync; fallocate
// PUNCH_HOLE and ZERO_RANGE, which is what a loop device sends for DISCARD
// and WRITE_ZEROES, go to Device.WriteZeroes. Errors become a syscall.Errno
// only at this boundary, through Options.Errno.
//
// # Loop devices
//
// [Attach] binds a free loop device to a file with LOOP_CONFIGURE, [Detach]
// unbinds it with LOOP_CLR_FD, and [Loops] lists the loop devices whose
// backing file lies under a prefix, to find leftovers after a crash.
// REF: https://man7.org/linux/man-pages/man4/loop.4.html
//
// # Order of teardown
//
// Every layer pins the one below it, so teardown runs top-down:
//
//	Unmount(dir)           the filesystem on /dev/loopN
//	Detach(dev)            the loop device; it lets go of the FUSE file
//	Server.Remove(name)    the FUSE file; refused while open (ErrBusy)
//	Server.Close()         the FUSE mount; refused while a file is open
//
// Done in another order, the kernel answers EBUSY and this package returns
// an error matching [ErrBusy]; nothing waits for ever.
//
// A loop device passes a flush (REQ_PREFLUSH, from fsync or a journal
// commit) on as fsync, which calls Device.Sync, but detaching does not
// flush: writes that were never fsynced reached the Device with WriteAt
// and are durable only after the caller's next Device.Sync.
//
// # Failure
//
// If the serving process dies, or the FUSE connection is aborted
// ([Server.Abort]), every request on the files fails at once with EIO or
// ENOTCONN: I/O on the loop device and on filesystems mounted from it fails,
// it does not hang. Unmount, Detach and unmounting the dead FUSE mount
// ([Cleanup]) still work afterwards.
//
// # Concurrency
//
// A Server is safe for concurrent use, and go-fuse calls the Device from
// many goroutines at once, so a Device must be safe for concurrent use too.
// The package-level functions keep no state and may be called concurrently;
// Attach retries when another process takes the same free loop device.
//
// # Invariants
//
//   - B1: a served file's size is Device.Size(), and it never changes
//     through the file (truncate fails with EINVAL).
//   - B2: a file with open handles is never removed: Remove and Close fail
//     with ErrBusy while a loop device (or anything else) holds it open.
//   - B3: a read-only file never reaches Device.WriteAt or
//     Device.WriteZeroes; opens for writing fail with EROFS.
//   - B4: after a successful Flush or Fsync on a file, every write to the
//     file that completed before it has been followed by Device.Sync.
//   - B5: a write, zeroing or sync that failed on a file is remembered
//     until the file is removed: [Server.WriteErr] returns the first one,
//     so a caller can tell that a filesystem on it lost data on writeback.
package blockdev
