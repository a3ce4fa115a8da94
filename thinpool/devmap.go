package thinpool

import "github.com/thinpool/thinpool/extent"

// devMap is one device's mappings, as the operation code (state.apply…)
// and the read and write paths see them. Format 2 keeps them in an
// extent.Map (memMap); format 3 (docs/metadata-v3.md) will keep them in a
// copy-on-write B+tree. Methods return the errors of reading metadata
// nodes; memMap never fails. After an error from a change the state must
// be dropped (format 3: the store is reopened at its last commit).
//
// Callbacks run with the map locked (format 3): they must not call into
// a devMap or blockCounts. Pool.mu guards every change.
type devMap interface {
	// Blocks is the number of mapped virtual blocks.
	Blocks() uint64
	// Lookup calls fn with the segments (runs and holes) that cover
	// [v, v+n), in order, until fn returns false.
	Lookup(v extent.VBlock, n uint64, fn func(extent.Segment) bool) error
	// Ascend calls fn with every extent in virtual order until fn returns
	// false.
	Ascend(fn func(extent.Mapping) bool) error
	// Last returns the extent that ends last.
	Last() (extent.Mapping, bool, error)
	// InsertIfHole maps mp if nothing is mapped in its range and reports
	// whether it did.
	InsertIfHole(mp extent.Mapping) (bool, error)
	// Insert maps mp, replacing whatever was mapped in its range. The
	// caller moves the data references.
	Insert(mp extent.Mapping) error
	// Remove unmaps [v, v+n). The caller drops the data references.
	Remove(v extent.VBlock, n uint64) error
	// Unshare prepares [v, v+n) for a write: afterwards a mapped block's
	// count is above 1 exactly when another device maps it (format 3
	// shadows the leaves a snapshot shares; format 2's counts say so
	// already).
	Unshare(v extent.VBlock, n uint64) error
}

// blockCounts is the reference count of every pool block, as the
// operation code sees it: extent.RefCounts in format 2 (memCounts), the
// data space map tree in format 3. Errors as for devMap.
type blockCounts interface {
	// Inc adds one reference to each block of [p, p+n).
	Inc(p extent.PBlock, n uint64) error
	// Dec drops one reference from each block of [p, p+n) and calls freed
	// (if not nil) with each run whose count reaches 0.
	Dec(p extent.PBlock, n uint64, freed func(extent.Run)) error
	// Runs calls fn with the counts over [p, p+n), gaps as runs of count
	// 0, until fn returns false.
	Runs(p extent.PBlock, n uint64, fn func(extent.RefRun) bool) error
	// Used is the number of blocks with a count of at least 1.
	Used() uint64
}

// memMap is format 2's devMap: the whole map in memory.
type memMap struct{ *extent.Map }

var _ devMap = memMap{}

func newMemMap() memMap { return memMap{extent.NewMap()} }

func (m memMap) Lookup(v extent.VBlock, n uint64, fn func(extent.Segment) bool) error {
	m.Map.Lookup(v, n, fn)
	return nil
}

func (m memMap) Ascend(fn func(extent.Mapping) bool) error {
	m.Map.Ascend(fn)
	return nil
}

func (m memMap) Last() (extent.Mapping, bool, error) {
	last, ok := m.Map.Last()
	return last, ok, nil
}

func (m memMap) InsertIfHole(mp extent.Mapping) (bool, error) {
	return m.Map.InsertIfHole(mp), nil
}

func (m memMap) Insert(mp extent.Mapping) error {
	m.Map.Insert(mp, nil)
	return nil
}

func (m memMap) Remove(v extent.VBlock, n uint64) error {
	m.Map.Remove(v, n, nil)
	return nil
}

func (memMap) Unshare(extent.VBlock, uint64) error { return nil }

// entries is the number of extents of m in format 2, which sizes its
// checkpoints (state.mapEntries), and 0 in format 3.
func entries(m devMap) int {
	if mm, ok := m.(memMap); ok {
		return mm.Len()
	}
	return 0
}

// memCounts is format 2's blockCounts: every run in memory.
type memCounts struct{ *extent.RefCounts }

var _ blockCounts = memCounts{}

func newMemCounts() memCounts { return memCounts{extent.NewRefCounts()} }

func (r memCounts) Inc(p extent.PBlock, n uint64) error {
	r.RefCounts.Inc(p, n)
	return nil
}

func (r memCounts) Runs(p extent.PBlock, n uint64, fn func(extent.RefRun) bool) error {
	r.RefCounts.Runs(p, n, fn)
	return nil
}

// mem returns d's format 2 map, for the code that only format 2 runs
// (whole-state checkpoints, Check, restore, View).
func (d *device) mem() *extent.Map { return d.m.(memMap).Map }

// memRefs returns s's format 2 reference counts, as device.mem.
func (s *state) memRefs() *extent.RefCounts { return s.refs.(memCounts).RefCounts }
