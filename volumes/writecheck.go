package volumes

import (
	"errors"
	"fmt"
	"path/filepath"
	"syscall"

	"github.com/dustin/go-humanize"

	"github.com/thinpool/thinpool/blockdev"
	"github.com/thinpool/thinpool/thinpool"
)

// NoSpaceError is returned when a write through a filesystem on a thin
// device failed because the pool was full. It matches thinpool.ErrNoSpace,
// syscall.ENOSPC and the *blockdev.WriteError it came from with errors.Is
// and errors.As.
type NoSpaceError struct {
	DataBytes int64 // size of the pool's data area
	FreeBytes int64 // free in it when the error was seen
	Err       error // the device's first failed write
}

func (e *NoSpaceError) Error() string {
	return fmt.Sprintf("no space left in pool (%s data, %s free): grow it with 'thinctl pool grow'",
		humanize.IBytes(uint64(e.DataBytes)), humanize.IBytes(uint64(e.FreeBytes)))
}

func (e *NoSpaceError) Unwrap() error { return e.Err }

// writeErr returns the first write that failed on the device attached as
// loop since it was attached, or nil: ENOSPC from a full pool becomes a
// *NoSpaceError. Writeback of a filesystem is asynchronous, so such an
// error can be all that is left of lost data.
func (m *Manager) writeErr(loop string) error {
	m.mu.Lock()
	a, ok := m.find(loop)
	var name, file string
	if ok {
		name, file = a.Device, filepath.Base(a.File)
	}
	m.mu.Unlock()
	if !ok {
		return nil
	}
	werr, _ := m.srv.WriteErr(file)
	if werr == nil {
		return nil
	}
	if errors.Is(werr, thinpool.ErrNoSpace) || errors.Is(werr, syscall.ENOSPC) && !errors.Is(werr, thinpool.ErrMetadataFull) {
		u := m.pool.Usage()
		return &NoSpaceError{DataBytes: int64(u.DataBlocks) * u.BlockSize, FreeBytes: int64(u.FreeBlocks) * u.BlockSize, Err: werr}
	}
	if errors.Is(werr, thinpool.ErrMetadataFull) {
		return fmt.Errorf("pool metadata is full: grow it with 'thinctl pool grow --metadata-size N': device %q: %w", name, werr)
	}
	return fmt.Errorf("writes to device %q failed: %w", name, werr)
}

// isWriteFailure reports whether err came from writeErr: a failed write to
// the device, which explains any error the filesystem above returned.
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

// umountChecked unmounts the filesystem at dir ("" for none) from the
// device attached as loop and detaches it, making sure the device took
// every write: it syncs the filesystem first (syncfs), and checks the
// device's write errors after the unmount, which writes too, and before
// the detach, which forgets them. A failed write is returned before any
// other error, since it explains them.
func (m *Manager) umountChecked(dir, loop string) error {
	var errs []error
	if dir != "" {
		if err := blockdev.Syncfs(dir); err != nil {
			errs = append(errs, err)
		}
		if err := blockdev.Unmount(dir); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", dir, err))
		}
	}
	werr := m.writeErr(loop)
	if err := m.Detach(loop); err != nil {
		errs = append(errs, err)
	}
	if werr != nil {
		for _, err := range errs {
			m.logf("%s: %v (after: %v)", loop, err, werr)
		}
		return werr
	}
	for _, err := range errs[min(1, len(errs)):] {
		m.logf("%s: %v (after: %v)", loop, err, errs[0])
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// syncChecked syncs the filesystem mounted at dir from the device attached
// as loop and returns the device's first failed write, if any, else the
// sync's error.
func (m *Manager) syncChecked(dir, loop string) error {
	err := blockdev.Syncfs(dir)
	if werr := m.writeErr(loop); werr != nil {
		return werr
	}
	return err
}
