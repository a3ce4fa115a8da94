package thinpool

import (
	"fmt"

	"github.com/thinpool/thinpool/errdefs"
)

// Each sentinel matches its kind in errdefs with errors.Is as well as
// itself. Errors about a named device or pool are worded where they are
// raised (`device "web" not found`) and match the sentinel; see [errdefs.Newf].
var (
	// ErrNoSpace is returned when the pool has no free data blocks.
	ErrNoSpace = errdefs.New(errdefs.ErrNoSpace, "thinpool: no free data blocks")
	// ErrMetadataFull is returned when the metadata area cannot hold the
	// change; grow it with [Pool.GrowMetadata].
	ErrMetadataFull = errdefs.New(errdefs.ErrNoSpace, "thinpool: metadata area is full")
	// ErrNotFound is returned when a named or numbered device does not exist
	// or was deleted.
	ErrNotFound = errdefs.New(errdefs.ErrNotFound, "thinpool: device not found")
	// ErrExists is returned when a device name is already taken, or Create
	// finds a pool file already there.
	ErrExists = errdefs.New(errdefs.ErrAlreadyExists, "thinpool: device already exists")
	// ErrReadOnly is returned on a write, discard or resize of a read-only
	// device. Its kind is errdefs.ErrFailedPrecondition: the device's state,
	// not the call's arguments, refuses it.
	ErrReadOnly = errdefs.New(errdefs.ErrFailedPrecondition, "thinpool: device is read-only")
	// ErrOutOfRange is returned when an I/O or a discard reaches past the end
	// of a device.
	ErrOutOfRange = errdefs.New(errdefs.ErrInvalidArgument, "thinpool: offset out of range")
	// ErrInvalid is returned for bad arguments: sizes, names, labels.
	ErrInvalid = errdefs.New(errdefs.ErrInvalidArgument, "thinpool: invalid argument")
	// ErrLocked is returned when another process holds the pool open.
	ErrLocked = errdefs.New(errdefs.ErrInUse, "thinpool: pool is in use")
	// ErrClosed is returned by every call on a closed pool.
	ErrClosed = errdefs.New(errdefs.ErrFailedPrecondition, "thinpool: pool is closed")
	// ErrFailed is returned after a metadata write failed: the pool refuses
	// all I/O and changes until it is closed and opened again (journal
	// recovery), since its memory may be ahead of its disk.
	ErrFailed = errdefs.New(errdefs.ErrFailedPrecondition, "thinpool: pool failed, reopen it")
	// ErrCorrupt is returned (wrapped in a *CorruptionError) when on-disk
	// data fails validation.
	ErrCorrupt = errdefs.New(errdefs.ErrCorrupt, "thinpool: corrupt pool")
)

// CorruptionError describes on-disk data that failed validation. It matches
// ErrCorrupt and errdefs.ErrCorrupt with errors.Is.
type CorruptionError struct {
	Off  int64  // file offset of the bad structure, or -1
	What string // what is wrong, e.g. "checkpoint crc"
	// Path is the pool file, set by Open: the message then names it
	// ("pool /x is corrupt: checkpoint crc at offset 8192").
	Path string
}

func (e *CorruptionError) Error() string {
	msg := "thinpool: corrupt pool: " + e.What
	if e.Path != "" {
		msg = fmt.Sprintf("pool %s is corrupt: %s", e.Path, e.What)
	}
	if e.Off < 0 {
		return msg
	}
	return fmt.Sprintf("%s at offset %d", msg, e.Off)
}

// Is reports whether target is ErrCorrupt or its kind, errdefs.ErrCorrupt.
func (e *CorruptionError) Is(target error) bool {
	return target == ErrCorrupt || target == errdefs.ErrCorrupt
}

func corruptf(off int64, format string, args ...any) error {
	return &CorruptionError{Off: off, What: fmt.Sprintf(format, args...)}
}

// invalidf returns an ErrInvalid whose message is the reason alone.
func invalidf(format string, args ...any) error {
	return errdefs.Newf(ErrInvalid, format, args...)
}
