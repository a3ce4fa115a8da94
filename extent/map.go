package extent

import "github.com/google/btree"

const degree = 32

// Map is an ordered map from virtual block ranges to pool block ranges.
// The zero value is not usable; call [NewMap].
type Map struct {
	t *btree.BTreeG[Mapping]
	// blocks is the number of mapped virtual blocks (the sum of all Len).
	blocks uint64
}

func lessMapping(a, b Mapping) bool { return a.V < b.V }

// NewMap returns an empty map.
func NewMap() *Map {
	return &Map{t: btree.NewG(degree, lessMapping)}
}

// Clone returns a copy of m in O(1): the tree is copied lazily on write.
// m must not be modified while Clone runs; afterwards both maps may be used
// independently, from different goroutines.
func (m *Map) Clone() *Map {
	return &Map{t: m.t.Clone(), blocks: m.blocks}
}

// Len is the number of extents (runs) in m.
func (m *Map) Len() int { return m.t.Len() }

// Blocks is the number of mapped virtual blocks.
func (m *Map) Blocks() uint64 { return m.blocks }

// Find returns the extent that contains v.
func (m *Map) Find(v VBlock) (Mapping, bool) {
	var found Mapping
	ok := false
	m.t.DescendLessOrEqual(Mapping{V: v}, func(e Mapping) bool {
		if v < e.End() {
			found, ok = e, true
		}
		return false
	})
	return found, ok
}

// overlapping returns the extents that overlap [v, v+n), in order.
func (m *Map) overlapping(v VBlock, n uint64) []Mapping {
	var out []Mapping
	end := v + VBlock(n)
	if e, ok := m.Find(v); ok {
		out = append(out, e)
	}
	m.t.AscendRange(Mapping{V: v + 1}, Mapping{V: end}, func(e Mapping) bool {
		out = append(out, e)
		return true
	})
	if len(out) > 1 && out[0].V == out[1].V {
		out = out[1:]
	}
	return out
}

// Lookup calls fn with the segments, mapped runs and holes, that cover
// [v, v+n) in order, until fn returns false. Each call covers as many blocks
// as possible, so a contiguous read costs one call.
func (m *Map) Lookup(v VBlock, n uint64, fn func(Segment) bool) {
	if n == 0 {
		return
	}
	end := v + VBlock(n)
	cur := v
	for _, e := range m.overlapping(v, n) {
		if e.V > cur {
			if !fn(Segment{V: cur, Len: uint64(e.V - cur)}) {
				return
			}
			cur = e.V
		}
		segEnd := min(e.End(), end)
		seg := Segment{V: cur, P: e.P + PBlock(cur-e.V), Len: uint64(segEnd - cur), Mapped: true}
		if !fn(seg) {
			return
		}
		cur = segEnd
	}
	if cur < end {
		fn(Segment{V: cur, Len: uint64(end - cur)})
	}
}

// Remove unmaps [v, v+n) and calls removed (if not nil) with each piece that
// was mapped, in order.
func (m *Map) Remove(v VBlock, n uint64, removed func(Mapping)) {
	if n == 0 {
		return
	}
	end := v + VBlock(n)
	for _, e := range m.overlapping(v, n) {
		m.t.Delete(e)
		m.blocks -= e.Len
		lo, hi := max(e.V, v), min(e.End(), end)
		if e.V < lo {
			m.put(Mapping{V: e.V, P: e.P, Len: uint64(lo - e.V)})
		}
		if hi < e.End() {
			m.put(Mapping{V: hi, P: e.P + PBlock(hi-e.V), Len: uint64(e.End() - hi)})
		}
		if removed != nil {
			removed(Mapping{V: lo, P: e.P + PBlock(lo-e.V), Len: uint64(hi - lo)})
		}
	}
}

func (m *Map) put(e Mapping) {
	m.t.ReplaceOrInsert(e)
	m.blocks += e.Len
}

// Insert maps mp, replacing whatever was mapped in its virtual range; removed
// (if not nil) is called with each replaced piece. mp is merged with
// neighbours that continue it.
func (m *Map) Insert(mp Mapping, removed func(Mapping)) {
	if mp.Len == 0 {
		return
	}
	m.Remove(mp.V, mp.Len, removed)
	if mp.V > 0 {
		if left, ok := m.Find(mp.V - 1); ok && left.PEnd() == mp.P {
			m.t.Delete(left)
			m.blocks -= left.Len
			mp = Mapping{V: left.V, P: left.P, Len: left.Len + mp.Len}
		}
	}
	if right, ok := m.t.Get(Mapping{V: mp.End()}); ok && right.P == mp.PEnd() {
		m.t.Delete(right)
		m.blocks -= right.Len
		mp.Len += right.Len
	}
	m.put(mp)
}

// Ascend calls fn with every extent in virtual order until fn returns false.
func (m *Map) Ascend(fn func(Mapping) bool) { m.t.Ascend(fn) }

// AscendFrom calls fn with every extent that ends after v, in order, until fn
// returns false.
func (m *Map) AscendFrom(v VBlock, fn func(Mapping) bool) {
	if e, ok := m.Find(v); ok && e.V < v {
		if !fn(e) {
			return
		}
	}
	m.t.AscendGreaterOrEqual(Mapping{V: v}, fn)
}

// Last returns the extent with the highest virtual address.
func (m *Map) Last() (Mapping, bool) { return m.t.Max() }

// AppendSorted adds mp after every extent of m and returns true, if every
// extent ends at or before mp.V and the last does not continue into mp (a
// decoded checkpoint guarantees both); otherwise it changes nothing and
// returns false. It costs one tree insertion, where Insert costs several
// lookups.
func (m *Map) AppendSorted(mp Mapping) bool {
	if last, ok := m.t.Max(); ok && (last.End() > mp.V || (last.End() == mp.V && last.PEnd() == mp.P)) {
		return false
	}
	m.put(mp)
	return true
}

// InsertIfHole maps mp and returns true if [mp.V, mp.End()) is unmapped,
// merging it with neighbours that continue it; otherwise it changes
// nothing and returns false. It costs two lookups and the insertion: the
// common case of provisioning a new block.
func (m *Map) InsertIfHole(mp Mapping) bool {
	if mp.Len == 0 {
		return false
	}
	var left, right Mapping
	hasLeft, hasRight := false, false
	m.t.DescendLessOrEqual(mp, func(e Mapping) bool {
		left, hasLeft = e, true
		return false
	})
	if hasLeft && left.End() > mp.V {
		return false
	}
	m.t.AscendGreaterOrEqual(mp, func(e Mapping) bool {
		right, hasRight = e, true
		return false
	})
	if hasRight && right.V < mp.End() {
		return false
	}
	if hasLeft && left.End() == mp.V && left.PEnd() == mp.P {
		m.t.Delete(left)
		m.blocks -= left.Len
		mp = Mapping{V: left.V, P: left.P, Len: left.Len + mp.Len}
	}
	if hasRight && right.V == mp.End() && right.P == mp.PEnd() {
		m.t.Delete(right)
		m.blocks -= right.Len
		mp.Len += right.Len
	}
	m.put(mp)
	return true
}
