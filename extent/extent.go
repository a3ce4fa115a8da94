package extent

import "fmt"

// VBlock is a block number inside a thin device's virtual address space.
type VBlock uint64

// PBlock is a block number inside the pool's data area.
type PBlock uint64

// Mapping maps Len virtual blocks starting at V to the pool blocks starting at P.
type Mapping struct {
	V   VBlock
	P   PBlock
	Len uint64
}

// End is the first virtual block after m.
func (m Mapping) End() VBlock { return m.V + VBlock(m.Len) }

// PEnd is the first pool block after m.
func (m Mapping) PEnd() PBlock { return m.P + PBlock(m.Len) }

func (m Mapping) String() string {
	return fmt.Sprintf("[v%d+%d → p%d]", m.V, m.Len, m.P)
}

// Run is a range of Len pool blocks starting at P.
type Run struct {
	P   PBlock
	Len uint64
}

// End is the first pool block after r.
func (r Run) End() PBlock { return r.P + PBlock(r.Len) }

// Segment is one piece of a virtual range returned by [Map.Lookup]: either
// Len mapped blocks starting at V backed by pool blocks starting at P, or, when
// Mapped is false, a hole of Len unmapped blocks.
type Segment struct {
	V      VBlock
	P      PBlock
	Len    uint64
	Mapped bool
}
