package blockdev

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/thinpool/thinpool/errdefs"
)

// Each sentinel but ErrAborted (a forced close, of no kind) matches its kind
// in errdefs with errors.Is as well as itself.
var (
	// ErrBusy is returned when something still holds what the call would
	// tear down: a device file that is open (usually by a loop device), a
	// FUSE mount with open files, a loop device that is still open after
	// LOOP_CLR_FD, or a mounted filesystem. When the kernel said EBUSY the
	// error matches both ErrBusy and syscall.EBUSY.
	ErrBusy = errdefs.New(errdefs.ErrInUse, "blockdev: busy")
	// ErrExists is returned when Add is given a name that is already served.
	ErrExists = errdefs.New(errdefs.ErrAlreadyExists, "blockdev: device already served")
	// ErrNotFound is returned when a name is not served, or a loop device
	// does not exist.
	ErrNotFound = errdefs.New(errdefs.ErrNotFound, "blockdev: not found")
	// ErrInvalid is returned for bad arguments: an empty name, a name with a
	// slash, a nil Device, an unknown filesystem type.
	ErrInvalid = errdefs.New(errdefs.ErrInvalidArgument, "blockdev: invalid argument")
	// ErrClosed is returned by every call on a closed Server.
	ErrClosed = errdefs.New(errdefs.ErrFailedPrecondition, "blockdev: server is closed")
	// ErrStale is returned by Serve when its directory is the mount point of
	// a FUSE server that is gone ("transport endpoint is not connected");
	// run Cleanup on the directory first.
	ErrStale = errdefs.New(errdefs.ErrFailedPrecondition, "blockdev: stale FUSE mount")
	// ErrAborted is returned by Close when unmounting did not finish in time
	// and the FUSE connection had to be aborted and lazily unmounted.
	ErrAborted = errors.New("blockdev: FUSE connection aborted")
)

// busyError is a kernel EBUSY that also matches ErrBusy, keeping the
// original message.
type busyError struct{ err error }

func (e busyError) Error() string   { return e.err.Error() }
func (e busyError) Unwrap() []error { return []error{e.err, ErrBusy} }

// markBusy marks a kernel EBUSY as ErrBusy, keeping the original error so
// that errors.Is(err, syscall.EBUSY) still holds. Other errors pass through.
func markBusy(err error) error {
	if errors.Is(err, syscall.EBUSY) && !errors.Is(err, ErrBusy) {
		return busyError{err}
	}
	return err
}

// DefaultErrno is the error conversion used when Options.Errno is nil: an
// error that is (or wraps) a non-zero syscall.Errno passes through, and every
// other error becomes EIO.
func DefaultErrno(err error) syscall.Errno {
	var errno syscall.Errno
	if errors.As(err, &errno) && errno != 0 {
		return errno
	}
	return syscall.EIO
}

// WriteError is a write to a served file that failed: the kernel was told
// Errno (ENOSPC, EIO), so the filesystem above may have lost data even if
// every later write succeeded, and its own error, if any, only says EIO.
// [Server.WriteErr] returns the first one since the file was added. It
// matches both Errno and the Device's error with errors.Is.
type WriteError struct {
	Name  string        // the served file
	Op    string        // "write", "zero", "fsync" or "flush"
	Off   int64         // where the write or zeroing started; 0 for a sync
	Errno syscall.Errno // what the kernel saw
	Err   error         // what the Device returned
}

func (e *WriteError) Error() string {
	return fmt.Sprintf("blockdev: %s: %s at %d failed (%s): %v", e.Name, e.Op, e.Off, e.Errno.Error(), e.Err)
}

func (e *WriteError) Unwrap() []error { return []error{e.Errno, e.Err} }
