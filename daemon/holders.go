package daemon

import (
	"fmt"
	"strings"

	"github.com/thinpool/thinpool/blockdev"
	"github.com/thinpool/thinpool/volumes"
)

// Holder is a process that keeps one of the daemon's mounts busy.
type Holder = blockdev.Holder

// BusyError is returned when mounts are busy: processes hold them, so they
// cannot be unmounted. It matches volumes.ErrInUse.
type BusyError struct {
	Holders []Holder // sorted by mount, then pid
}

func (e *BusyError) Error() string {
	var b strings.Builder
	mount := ""
	for _, h := range e.Holders {
		if h.Mount != mount {
			if mount != "" {
				b.WriteString("; ")
			}
			mount = h.Mount
			fmt.Fprintf(&b, "%s is busy: held by ", mount)
		} else {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "pid %d (%s, %s)", h.PID, h.Comm, h.How)
	}
	return b.String()
}

// Unwrap makes a BusyError match volumes.ErrInUse, and so errdefs.ErrInUse.
func (e *BusyError) Unwrap() error { return volumes.ErrInUse }
