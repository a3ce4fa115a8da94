package volumes

import (
	"errors"

	"github.com/thinpool/thinpool/blockdev"
	"github.com/thinpool/thinpool/errdefs"
)

// Host is what the model needs from the machine it runs on: thin devices
// of the pool served as block devices, filesystems made, mounted, synced
// and grown on them, and bind mounts inside a container's root. volumes
// declares it, as blockdev declares the Device it serves; the daemon
// implements it with FUSE files, loop devices and mount(2) (daemon.Host),
// and the tests with a fake that needs no root.
//
// Devices are named as in the pool; a directory is where a filesystem is
// (to be) mounted. A Host must be safe for concurrent use.
//
// Write errors: a filesystem's writeback is asynchronous, so a write its
// device failed (the pool was full) may be all that is left of lost data.
// Mkfs, GrowFS, Sync and UnmountChecked return such a failure, an error
// that errors.As finds a *blockdev.WriteError in, before any other error,
// since it explains them.
type Host interface {
	// Mkfs makes a filesystem of type fstype ("ext4" or "xfs") on the
	// device dev, which is not in use.
	Mkfs(dev, fstype string) error
	// GrowFS grows the filesystem of type fstype on the device dev, which
	// is not in use, to the device's size.
	GrowFS(dev, fstype string) error
	// Mount mounts the filesystem of the device dev at dir, creating dir
	// if it is missing; read-only if the device is.
	Mount(dev, dir string) error
	// Sync writes back the filesystem mounted at dir and reports a write
	// its device failed since it was mounted.
	Sync(dir string) error
	// Unmount unmounts the filesystem mounted at dir and stops serving its
	// device. Nothing of the host's mounted at dir is an error matching
	// ErrNotAttached.
	Unmount(dir string) error
	// UnmountChecked is Unmount that makes sure the device took every
	// write: it syncs first, and reports a write the device failed, even
	// one the unmount's own writeback made.
	UnmountChecked(dir string) error
	// Mounted reports whether a filesystem is mounted at dir.
	Mounted(dir string) bool
	// Busy returns an error matching ErrBusy while the device dev is
	// served (attached or mounted), else nil.
	Busy(dev string) error
	// Bind bind-mounts the host directory src at target inside root (a
	// mounted container's root filesystem), creating target without
	// following a symlink out of root. It returns the path mounted on.
	Bind(root, target, src string, readOnly bool) (string, error)
	// Unbind unmounts a path that Bind returned.
	Unbind(path string) error
}

// ErrNoHost is returned, by a manager made with Offline, for what needs a
// device served or mounted: no daemon serves the pool.
var ErrNoHost = errdefs.New(errdefs.ErrUnavailable, "volumes: no daemon serves the pool")

// offlineHost is the Host of an offline manager: it serves nothing, so
// nothing is mounted or busy, and whatever needs a device fails with
// ErrNoHost.
type offlineHost struct{}

var _ Host = offlineHost{}

func (offlineHost) Mkfs(dev, _ string) error   { return noHost("make a filesystem on", dev) }
func (offlineHost) GrowFS(dev, _ string) error { return noHost("grow the filesystem of", dev) }
func (offlineHost) Mount(dev, _ string) error  { return noHost("mount", dev) }
func (offlineHost) Sync(dir string) error      { return NotMounted(dir) }
func (offlineHost) Unmount(dir string) error   { return NotMounted(dir) }
func (offlineHost) UnmountChecked(dir string) error {
	return NotMounted(dir)
}
func (offlineHost) Mounted(string) bool { return false }
func (offlineHost) Busy(string) error   { return nil }
func (offlineHost) Bind(root, _, _ string, _ bool) (string, error) {
	return "", NotMounted(root)
}
func (offlineHost) Unbind(path string) error { return NotMounted(path) }

func noHost(what, dev string) error {
	return reasonf(ErrNoHost, "cannot %s %q: no daemon serves the pool", what, dev)
}

// isWriteFailure reports whether err is, or wraps, a failed write to a
// device, which explains any error the filesystem above returned.
func isWriteFailure(err error) bool {
	var werr *blockdev.WriteError
	return errors.As(err, &werr)
}

// firstCause returns cause if it is a device's failed write (the root
// cause), else err if set, else cause.
func firstCause(err, cause error) error {
	if cause != nil && (err == nil || isWriteFailure(cause)) {
		return cause
	}
	return err
}
