package btree

import (
	"errors"
	"fmt"
)

var (
	// ErrCorrupt is returned (wrapped in a [CorruptionError]) when a node or
	// space-map page fails its checks: magic, checksum, its own id or
	// generation as its parent names them, kind, level, entry count, key
	// order, reserved bytes or a reference count that cannot be.
	ErrCorrupt = errors.New("btree: metadata corrupt")

	// ErrNoSpace is returned when the metadata area has no free node.
	ErrNoSpace = errors.New("btree: no free metadata node")
)

// CorruptionError says which node failed which check. Its Is(ErrCorrupt)
// is true.
type CorruptionError struct {
	Node NodeID
	What string
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("btree: node %d corrupt: %s", e.Node, e.What)
}

// Is reports whether target is ErrCorrupt.
func (e *CorruptionError) Is(target error) bool { return target == ErrCorrupt }

func corrupt(id NodeID, format string, args ...any) error {
	return &CorruptionError{Node: id, What: fmt.Sprintf(format, args...)}
}
