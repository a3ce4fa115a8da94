package volumes

import (
	"fmt"
	"strings"

	"github.com/thinpool/thinpool/blockdev"
)

// Holder is a process that keeps one of the manager's mounts busy.
type Holder = blockdev.Holder

// BusyError is returned when mounts are busy: processes hold them, so they
// cannot be unmounted. It matches ErrInUse.
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

// Unwrap makes a BusyError match ErrInUse, and so errdefs.ErrInUse.
func (e *BusyError) Unwrap() error { return ErrInUse }

// Holders lists the processes that keep the manager's mounts busy: the
// mounts of its attached devices, the mounts below them (a container's
// volume and bind mounts) and the loop devices themselves.
func (m *Manager) Holders() ([]Holder, error) {
	return blockdev.Holders(m.attachedLoops())
}

// attachedLoops returns the loop devices attached now.
func (m *Manager) attachedLoops() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	loops := make([]string, 0, len(m.att))
	for _, a := range m.att {
		loops = append(loops, a.Loop)
	}
	return loops
}
