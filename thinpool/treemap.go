package thinpool

import (
	"sync"

	"github.com/thinpool/thinpool/extent"
	"github.com/thinpool/thinpool/thinpool/internal/btree"
)

// trees is format 3's metadata in memory (docs/metadata-v3.md): the node
// store, the data space map, and the lock that serialises every use of
// them. Pool.mu is not enough: readers hold it shared, and reading a node
// changes the store's cache.
type trees struct {
	mu   sync.Mutex
	s    *btree.Store
	ds   *btree.DataSpace
	devs *btree.Devices
	// gone are the devices deleted since the last checkpoint, whose
	// entries it removes from devs.
	gone []DevID
}

// treeError is an error of the trees (reading a node, or no free node). A
// change that fails with one may have left a tree half changed, so the pool
// fails: the next checkpoint must not write it.
type treeError struct{ err error }

func (e *treeError) Error() string { return e.err.Error() }
func (e *treeError) Unwrap() error { return e.err }

// wrapTree wraps an error of the trees in a treeError.
func wrapTree(err error) error {
	if err == nil {
		return nil
	}
	return &treeError{err}
}

// treeMap is format 3's devMap: a device's mapping tree.
type treeMap struct {
	t *trees
	m *btree.Mapping
}

var _ devMap = treeMap{}

func (m treeMap) Blocks() uint64 {
	m.t.mu.Lock()
	defer m.t.mu.Unlock()
	return m.m.Blocks()
}

func (m treeMap) Lookup(v extent.VBlock, n uint64, fn func(extent.Segment) bool) error {
	m.t.mu.Lock()
	defer m.t.mu.Unlock()
	return wrapTree(m.m.Lookup(v, n, fn))
}

func (m treeMap) Ascend(fn func(extent.Mapping) bool) error {
	m.t.mu.Lock()
	defer m.t.mu.Unlock()
	return wrapTree(m.m.Ascend(fn))
}

func (m treeMap) Last() (extent.Mapping, bool, error) {
	m.t.mu.Lock()
	defer m.t.mu.Unlock()
	e, ok, err := m.m.Last()
	return e, ok, wrapTree(err)
}

func (m treeMap) InsertIfHole(mp extent.Mapping) (bool, error) {
	m.t.mu.Lock()
	defer m.t.mu.Unlock()
	hole := true
	if err := m.m.Lookup(mp.V, mp.Len, func(s extent.Segment) bool {
		hole = !s.Mapped
		return hole
	}); err != nil || !hole {
		return false, wrapTree(err)
	}
	return true, wrapTree(m.m.Insert(mp, nil))
}

func (m treeMap) Insert(mp extent.Mapping) error {
	m.t.mu.Lock()
	defer m.t.mu.Unlock()
	return wrapTree(m.m.Insert(mp, nil))
}

func (m treeMap) Remove(v extent.VBlock, n uint64) error {
	m.t.mu.Lock()
	defer m.t.mu.Unlock()
	return wrapTree(m.m.Remove(v, n, nil))
}

func (m treeMap) Unshare(v extent.VBlock, n uint64) error {
	m.t.mu.Lock()
	defer m.t.mu.Unlock()
	return wrapTree(m.m.Unshare(v, n))
}

// ascendShared calls fn with every extent and whether its leaf is shared
// (btree.Mapping.AscendShared).
func (m treeMap) ascendShared(fn func(extent.Mapping, bool) bool) error {
	m.t.mu.Lock()
	defer m.t.mu.Unlock()
	return wrapTree(m.m.AscendShared(fn))
}

// snapshot returns a map that shares m's root: O(1).
func (m treeMap) snapshot() (treeMap, error) {
	m.t.mu.Lock()
	defer m.t.mu.Unlock()
	sn, err := m.m.Snapshot()
	return treeMap{t: m.t, m: sn}, wrapTree(err)
}

// drop deletes m's tree: the nodes only it reaches are freed and their
// blocks lose a reference; freed is called with each run whose count
// reaches 0.
func (m treeMap) drop(freed func(extent.Run)) error {
	m.t.mu.Lock()
	defer m.t.mu.Unlock()
	return wrapTree(m.m.Delete(freed))
}

// newMap returns an empty mapping tree.
func (t *trees) newMap() (treeMap, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, err := btree.NewMapping(t.s, t.ds)
	return treeMap{t: t, m: m}, wrapTree(err)
}

// treeCounts is format 3's blockCounts: the data space map.
type treeCounts struct{ t *trees }

var _ blockCounts = treeCounts{}

func (c treeCounts) Inc(p extent.PBlock, n uint64) error {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	return wrapTree(c.t.ds.Inc(p, n))
}

func (c treeCounts) Dec(p extent.PBlock, n uint64, freed func(extent.Run)) error {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	return wrapTree(c.t.ds.Dec(p, n, freed))
}

func (c treeCounts) Runs(p extent.PBlock, n uint64, fn func(extent.RefRun) bool) error {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	return wrapTree(c.t.ds.Runs(p, n, fn))
}

func (c treeCounts) Used() uint64 {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	return c.t.ds.Used()
}

// newTreeState returns an empty state in format 3 whose trees live in
// store: an empty data space map, no devices.
func newTreeState(blockSize, nrBlocks uint64, store *btree.Store) (*state, error) {
	ds, err := btree.NewDataSpace(store)
	if err != nil {
		return nil, err
	}
	devs, err := btree.NewDevices(store)
	if err != nil {
		return nil, err
	}
	s := newState(blockSize, nrBlocks)
	s.trees = &trees{s: store, ds: ds, devs: devs}
	s.refs = treeCounts{s.trees}
	return s, nil
}
