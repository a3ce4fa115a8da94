package thinpool

import (
	"errors"
	"fmt"
)

var (
	// ErrNoSpace is returned when the pool has no free data blocks.
	ErrNoSpace = errors.New("thinpool: no free data blocks")
	// ErrMetadataFull is returned when the metadata area cannot hold the
	// change; grow it with [Pool.GrowMetadata].
	ErrMetadataFull = errors.New("thinpool: metadata area is full")
	// ErrNotFound is returned when a named or numbered device does not exist
	// or was deleted.
	ErrNotFound = errors.New("thinpool: device not found")
	// ErrExists is returned when a device name is already taken.
	ErrExists = errors.New("thinpool: device already exists")
	// ErrReadOnly is returned on a write, discard or resize of a read-only
	// device.
	ErrReadOnly = errors.New("thinpool: device is read-only")
	// ErrOutOfRange is returned when an I/O or a discard reaches past the end
	// of a device.
	ErrOutOfRange = errors.New("thinpool: offset out of range")
	// ErrInvalid is returned for bad arguments: sizes, names, labels.
	ErrInvalid = errors.New("thinpool: invalid argument")
	// ErrLocked is returned when another process holds the pool open.
	ErrLocked = errors.New("thinpool: pool is in use")
	// ErrClosed is returned by every call on a closed pool.
	ErrClosed = errors.New("thinpool: pool is closed")
	// ErrFailed is returned after a metadata write failed: the pool refuses
	// all I/O and changes until it is closed and opened again (journal
	// recovery), since its memory may be ahead of its disk.
	ErrFailed = errors.New("thinpool: pool failed, reopen it")
	// ErrCorrupt is returned (wrapped in a *CorruptionError) when on-disk
	// data fails validation.
	ErrCorrupt = errors.New("thinpool: corrupt pool")
)

// CorruptionError describes on-disk data that failed validation. It matches
// ErrCorrupt with errors.Is.
type CorruptionError struct {
	Off  int64  // file offset of the bad structure, or -1
	What string // what is wrong, e.g. "checkpoint crc"
}

func (e *CorruptionError) Error() string {
	if e.Off < 0 {
		return fmt.Sprintf("thinpool: corrupt pool: %s", e.What)
	}
	return fmt.Sprintf("thinpool: corrupt pool: %s at offset %d", e.What, e.Off)
}

// Is reports whether target is ErrCorrupt.
func (e *CorruptionError) Is(target error) bool { return target == ErrCorrupt }

func corruptf(off int64, format string, args ...any) error {
	return &CorruptionError{Off: off, What: fmt.Sprintf(format, args...)}
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
