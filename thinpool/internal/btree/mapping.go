package btree

import (
	"encoding/binary"
	"math"

	"github.com/thinpool/thinpool/extent"
)

// Mapping is one thin device's mapping tree (kind TreeMapping): virtual
// block ranges to pool block ranges, with extent.Map's semantics (E1, E2),
// except that an extent longer than 2³²−1 blocks is held as several. A leaf
// that is copied while shared adds a reference to each pool run it maps in
// the data space map (N2).
//
// Lookups and changes return the errors of reading nodes; after an error
// from a change, drop the store (see [Store]).
type Mapping struct {
	t  *Tree
	ds *DataSpace
	// blocks is the number of mapped virtual blocks.
	blocks uint64
	// Time is stored with each extent written from now on (thin_dump's
	// time: the pool's snapshot count). An extent merged with the one
	// before it keeps that one's time.
	Time uint32
}

// NewMapping returns an empty mapping tree whose shared leaves reference
// pool blocks in ds.
func NewMapping(s *Store, ds *DataSpace) (*Mapping, error) {
	m := &Mapping{ds: ds}
	t, err := s.NewTree(TreeMapping, m.share)
	if err != nil {
		return nil, err
	}
	m.t = t
	return m, nil
}

// OpenMapping returns the mapping tree at root that maps blocks blocks
// (the device's details keep the figure).
func OpenMapping(s *Store, ds *DataSpace, root Ref, blocks uint64) *Mapping {
	m := &Mapping{ds: ds, blocks: blocks}
	m.t = s.OpenTree(TreeMapping, root, m.share)
	return m
}

func (m *Mapping) share(k uint64, v []byte) error {
	e, _ := decodeExtent(k, v)
	return m.ds.Inc(e.P, e.Len)
}

// Root is the tree's current root, for the device's entry.
func (m *Mapping) Root() Ref { return m.t.Root() }

// Blocks is the number of mapped virtual blocks.
func (m *Mapping) Blocks() uint64 { return m.blocks }

// Snapshot returns a second mapping that shares m's root (one more
// reference to it): O(1). Either may change afterwards without the other
// seeing it.
func (m *Mapping) Snapshot() (*Mapping, error) {
	if err := m.t.s.IncRoot(m.Root()); err != nil {
		return nil, err
	}
	sn := OpenMapping(m.t.s, m.ds, m.Root(), m.blocks)
	sn.Time = m.Time
	return sn, nil
}

// Delete drops m's reference to its root. Nodes no other mapping reaches
// are freed, and the pool runs of their leaves lose a reference; freed (if
// not nil) is called with each run whose count drops to 0. m is unusable
// afterwards.
func (m *Mapping) Delete(freed func(extent.Run)) error {
	return m.t.s.DecRoot(TreeMapping, m.Root(), func(k uint64, v []byte) error {
		e, _ := decodeExtent(k, v)
		return m.ds.Dec(e.P, e.Len, freed)
	})
}

func decodeExtent(k uint64, v []byte) (extent.Mapping, uint32) {
	le := binary.LittleEndian
	return extent.Mapping{V: extent.VBlock(k), P: extent.PBlock(le.Uint64(v)), Len: uint64(le.Uint32(v[8:]))}, le.Uint32(v[12:])
}

// Find returns the extent that contains v.
func (m *Mapping) Find(v extent.VBlock) (extent.Mapping, bool, error) {
	e, _, ok, err := m.find(v)
	return e, ok, err
}

func (m *Mapping) find(v extent.VBlock) (extent.Mapping, uint32, bool, error) {
	k, val, ok, err := m.t.Floor(uint64(v))
	if err != nil || !ok {
		return extent.Mapping{}, 0, false, err
	}
	e, time := decodeExtent(k, val)
	if v >= e.End() {
		return extent.Mapping{}, 0, false, nil
	}
	return e, time, true, nil
}

// Last returns the extent that ends last.
func (m *Mapping) Last() (extent.Mapping, bool, error) {
	k, val, ok, err := m.t.Floor(math.MaxUint64)
	if err != nil || !ok {
		return extent.Mapping{}, false, err
	}
	e, _ := decodeExtent(k, val)
	return e, true, nil
}

// overlapping returns the extents that overlap [v, v+n), in order, with
// their times.
func (m *Mapping) overlapping(v extent.VBlock, n uint64) ([]extent.Mapping, []uint32, error) {
	var out []extent.Mapping
	var times []uint32
	end := v + extent.VBlock(n)
	e, time, ok, err := m.find(v)
	if err != nil {
		return nil, nil, err
	}
	if ok {
		out, times = append(out, e), append(times, time)
	}
	err = m.t.Ascend(uint64(v)+1, func(k uint64, val []byte) bool {
		if extent.VBlock(k) >= end {
			return false
		}
		e, time := decodeExtent(k, val)
		out, times = append(out, e), append(times, time)
		return true
	})
	return out, times, err
}

// Lookup calls fn with the segments, mapped runs and holes, that cover
// [v, v+n) in order, until fn returns false, as extent.Map.Lookup does.
func (m *Mapping) Lookup(v extent.VBlock, n uint64, fn func(extent.Segment) bool) error {
	if n == 0 {
		return nil
	}
	end := v + extent.VBlock(n)
	cur := v
	runs, _, err := m.overlapping(v, n)
	if err != nil {
		return err
	}
	for _, e := range runs {
		if e.V > cur {
			if !fn(extent.Segment{V: cur, Len: uint64(e.V - cur)}) {
				return nil
			}
			cur = e.V
		}
		segEnd := min(e.End(), end)
		if !fn(extent.Segment{V: cur, P: e.P + extent.PBlock(cur-e.V), Len: uint64(segEnd - cur), Mapped: true}) {
			return nil
		}
		cur = segEnd
	}
	if cur < end {
		fn(extent.Segment{V: cur, Len: uint64(end - cur)})
	}
	return nil
}

// Unshare shadows the leaves that map [v, v+n) (see [Tree.ShadowPath]), so
// that afterwards a pool block they map has a count above 1 in the data
// space map exactly when another leaf maps it too. A write calls it before
// deciding whether a block must be copied (rules C1 and C2 of the engine):
// before it, a leaf shared by a snapshot leaves its blocks' counts at 1.
func (m *Mapping) Unshare(v extent.VBlock, n uint64) error {
	runs, _, err := m.overlapping(v, n)
	for _, e := range runs {
		if err != nil {
			break
		}
		err = m.t.ShadowPath(uint64(e.V))
	}
	return err
}

// Remove unmaps [v, v+n) and calls removed (if not nil) with each piece
// that was mapped, in order. The caller drops the pieces' data references.
func (m *Mapping) Remove(v extent.VBlock, n uint64, removed func(extent.Mapping)) error {
	if n == 0 {
		return nil
	}
	end := v + extent.VBlock(n)
	runs, times, err := m.overlapping(v, n)
	if err != nil {
		return err
	}
	for i, e := range runs {
		if err := m.del(e); err != nil {
			return err
		}
		lo, hi := max(e.V, v), min(e.End(), end)
		if e.V < lo {
			if err := m.put(extent.Mapping{V: e.V, P: e.P, Len: uint64(lo - e.V)}, times[i]); err != nil {
				return err
			}
		}
		if hi < e.End() {
			if err := m.put(extent.Mapping{V: hi, P: e.P + extent.PBlock(hi-e.V), Len: uint64(e.End() - hi)}, times[i]); err != nil {
				return err
			}
		}
		if removed != nil {
			removed(extent.Mapping{V: lo, P: e.P + extent.PBlock(lo-e.V), Len: uint64(hi - lo)})
		}
	}
	return nil
}

func (m *Mapping) del(e extent.Mapping) error {
	if err := m.t.deletePresent(uint64(e.V)); err != nil {
		return err
	}
	m.blocks -= e.Len
	return nil
}

// put adds extent e, as several entries if it is longer than maxRun.
func (m *Mapping) put(e extent.Mapping, time uint32) error {
	var v [16]byte
	for e.Len > 0 {
		l := min(e.Len, maxRun)
		binary.LittleEndian.PutUint64(v[:], uint64(e.P))
		binary.LittleEndian.PutUint32(v[8:], uint32(l))
		binary.LittleEndian.PutUint32(v[12:], time)
		if err := m.t.Insert(uint64(e.V), v[:]); err != nil {
			return err
		}
		m.blocks += l
		e.V += extent.VBlock(l)
		e.P += extent.PBlock(l)
		e.Len -= l
	}
	return nil
}

// Insert maps mp, replacing whatever was mapped in its virtual range;
// removed (if not nil) is called with each replaced piece. mp is merged
// with neighbours that continue it. The caller adds mp's data reference
// and drops the pieces'.
func (m *Mapping) Insert(mp extent.Mapping, removed func(extent.Mapping)) error {
	if mp.Len == 0 {
		return nil
	}
	if err := m.Remove(mp.V, mp.Len, removed); err != nil {
		return err
	}
	time := m.Time
	if mp.V > 0 {
		left, lt, ok, err := m.find(mp.V - 1)
		if err != nil {
			return err
		}
		if ok && left.PEnd() == mp.P && left.Len+mp.Len <= maxRun {
			if err := m.del(left); err != nil {
				return err
			}
			mp = extent.Mapping{V: left.V, P: left.P, Len: left.Len + mp.Len}
			time = lt
		}
	}
	k, v, ok, err := m.t.Floor(uint64(mp.End()))
	if err != nil {
		return err
	}
	if ok {
		if right, _ := decodeExtent(k, v); right.V == mp.End() && right.P == mp.PEnd() && right.Len+mp.Len <= maxRun {
			if err := m.del(right); err != nil {
				return err
			}
			mp.Len += right.Len
		}
	}
	return m.put(mp, time)
}

// Ascend calls fn with every extent in virtual order until fn returns
// false. fn must not change m.
func (m *Mapping) Ascend(fn func(extent.Mapping) bool) error {
	return m.t.Ascend(0, func(k uint64, v []byte) bool {
		e, _ := decodeExtent(k, v)
		return fn(e)
	})
}

// AscendShared calls fn with every extent in virtual order, and whether its
// leaf is shared with another mapping (a snapshot that has not changed
// it), until fn returns false. An extent of an unshared leaf may still
// share pool blocks: their counts in the data space map say so. fn must not
// change m.
func (m *Mapping) AscendShared(fn func(e extent.Mapping, shared bool) bool) error {
	return m.t.AscendShared(func(k uint64, v []byte, shared bool) bool {
		e, _ := decodeExtent(k, v)
		return fn(e, shared)
	})
}

// AscendFrom calls fn with every extent that ends after v, in order, until
// fn returns false. fn must not change m.
func (m *Mapping) AscendFrom(v extent.VBlock, fn func(extent.Mapping) bool) error {
	e, ok, err := m.Find(v)
	if err != nil {
		return err
	}
	if ok && e.V < v && !fn(e) {
		return nil
	}
	return m.t.Ascend(uint64(v), func(k uint64, val []byte) bool {
		e, _ := decodeExtent(k, val)
		return fn(e)
	})
}
