package btree

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/thinpool/thinpool/extent"
)

// maxRun is the longest run one leaf entry holds (its length is a u32).
const maxRun = math.MaxUint32

// DataSpace is the data space map: the reference count of every pool block,
// as runs (pool start, length, count) in a tree of kind TreeDataSpace.
// Blocks not covered by a run have count 0. It keeps extent.RefCounts'
// semantics (E1, E2, E3), except that a run longer than 2³²−1 blocks is
// held as several. Its nodes have count 1: only the superblock reaches it.
type DataSpace struct {
	t *Tree
	// used is the number of blocks with a count of 1 or more.
	used uint64
}

// NewDataSpace returns an empty data space map (every count 0).
func NewDataSpace(s *Store) (*DataSpace, error) {
	t, err := s.NewTree(TreeDataSpace, nil)
	if err != nil {
		return nil, err
	}
	return &DataSpace{t: t}, nil
}

// OpenDataSpace returns the data space map at root. It walks the tree to
// count the used blocks.
func OpenDataSpace(s *Store, root Ref) (*DataSpace, error) {
	d := &DataSpace{t: s.OpenTree(TreeDataSpace, root, nil)}
	err := d.Ascend(func(r extent.RefRun) bool {
		d.used += r.Len
		return true
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// Root is the map's current root, for the superblock.
func (d *DataSpace) Root() Ref { return d.t.Root() }

// Used is the number of blocks with a count of at least 1.
func (d *DataSpace) Used() uint64 { return d.used }

func refRun(k uint64, v []byte) extent.RefRun {
	le := binary.LittleEndian
	return extent.RefRun{P: extent.PBlock(k), Len: uint64(le.Uint32(v)), Count: le.Uint32(v[4:])}
}

// Ascend calls fn with each run in order until fn returns false.
func (d *DataSpace) Ascend(fn func(extent.RefRun) bool) error {
	return d.t.Ascend(0, func(k uint64, v []byte) bool { return fn(refRun(k, v)) })
}

// Get returns the count of block p.
func (d *DataSpace) Get(p extent.PBlock) (uint32, error) {
	k, v, ok, err := d.t.Floor(uint64(p))
	if err != nil || !ok {
		return 0, err
	}
	if r := refRun(k, v); p < r.End() {
		return r.Count, nil
	}
	return 0, nil
}

// overlapping returns the runs that overlap [p, end), in order.
func (d *DataSpace) overlapping(p, end extent.PBlock) ([]extent.RefRun, error) {
	var out []extent.RefRun
	k, v, ok, err := d.t.Floor(uint64(p))
	if err != nil {
		return nil, err
	}
	if ok {
		if r := refRun(k, v); p < r.End() {
			out = append(out, r)
		}
	}
	err = d.t.Ascend(uint64(p)+1, func(k uint64, v []byte) bool {
		if extent.PBlock(k) >= end {
			return false
		}
		out = append(out, refRun(k, v))
		return true
	})
	return out, err
}

// Runs calls fn with the counts over [p, p+n) in order, gaps included as
// runs with Count 0, until fn returns false.
func (d *DataSpace) Runs(p extent.PBlock, n uint64, fn func(extent.RefRun) bool) error {
	if n == 0 {
		return nil
	}
	runs, err := d.overlapping(p, p+extent.PBlock(n))
	if err != nil {
		return err
	}
	pieces(p, p+extent.PBlock(n), runs, fn)
	return nil
}

// pieces calls fn with the counts over [p, end), given the runs that
// overlap it, gaps included as runs with Count 0, until fn returns false.
func pieces(p, end extent.PBlock, runs []extent.RefRun, fn func(extent.RefRun) bool) {
	cur := p
	for _, e := range runs {
		if e.P > cur {
			if !fn(extent.RefRun{P: cur, Len: uint64(e.P - cur)}) {
				return
			}
			cur = e.P
		}
		hi := min(e.End(), end)
		if !fn(extent.RefRun{P: cur, Len: uint64(hi - cur), Count: e.Count}) {
			return
		}
		cur = hi
	}
	if cur < end {
		fn(extent.RefRun{P: cur, Len: uint64(end - cur)})
	}
}

// Inc adds one reference to each block of [p, p+n).
func (d *DataSpace) Inc(p extent.PBlock, n uint64) error {
	return d.update(p, n, func(e extent.RefRun) (uint32, error) {
		if e.Count == math.MaxUint32 {
			return 0, fmt.Errorf("btree: reference count of block %d overflows", e.P)
		}
		return e.Count + 1, nil
	}, nil)
}

// Dec removes one reference from each block of [p, p+n) and calls freed
// (if not nil) with each run whose count dropped to 0. Decrementing a block
// whose count is already 0 is an error and changes nothing.
func (d *DataSpace) Dec(p extent.PBlock, n uint64, freed func(extent.Run)) error {
	return d.update(p, n, func(e extent.RefRun) (uint32, error) {
		if e.Count == 0 {
			return 0, fmt.Errorf("btree: reference count of block %d is already 0", e.P)
		}
		return e.Count - 1, nil
	}, func(e extent.RefRun) {
		if e.Count == 0 && freed != nil {
			freed(extent.Run{P: e.P, Len: e.Len})
		}
	})
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// update replaces the count of each piece of [p, p+n) (runs and gaps) by
// f(piece), calls after with each new run, and keeps E2 and E3. If f fails
// for any piece, nothing changes.
func (d *DataSpace) update(p extent.PBlock, n uint64, f func(extent.RefRun) (uint32, error), after func(extent.RefRun)) error {
	if n == 0 {
		return nil
	}
	end := p + extent.PBlock(n)
	runs, err := d.overlapping(p, end)
	if err != nil {
		return err
	}
	var changed []extent.RefRun
	pieces(p, end, runs, func(e extent.RefRun) bool {
		e.Count, err = f(e)
		changed = append(changed, e)
		return err == nil
	})
	if err != nil {
		return err
	}
	for _, e := range runs {
		if err := d.del(e); err != nil {
			return err
		}
		if e.P < p {
			if err := d.put(extent.RefRun{P: e.P, Len: uint64(p - e.P), Count: e.Count}); err != nil {
				return err
			}
		}
		if end < e.End() {
			if err := d.put(extent.RefRun{P: end, Len: uint64(e.End() - end), Count: e.Count}); err != nil {
				return err
			}
		}
	}
	for _, e := range changed {
		if after != nil {
			after(e)
		}
		if e.Count != 0 {
			if err := d.put(e); err != nil {
				return err
			}
		}
	}
	return d.coalesce(p, end)
}

func (d *DataSpace) del(e extent.RefRun) error {
	if err := d.t.deletePresent(uint64(e.P)); err != nil {
		return err
	}
	d.used -= e.Len
	return nil
}

// put adds run e, as several entries if it is longer than maxRun.
func (d *DataSpace) put(e extent.RefRun) error {
	var v [8]byte
	for e.Len > 0 {
		l := min(e.Len, maxRun)
		binary.LittleEndian.PutUint32(v[:], uint32(l))
		binary.LittleEndian.PutUint32(v[4:], e.Count)
		if err := d.t.Insert(uint64(e.P), v[:]); err != nil {
			return err
		}
		d.used += l
		e.P += extent.PBlock(l)
		e.Len -= l
	}
	return nil
}

// coalesce merges equal neighbouring runs in and around [p, end) (E2).
func (d *DataSpace) coalesce(p, end extent.PBlock) error {
	lo := p
	if p > 0 {
		lo = p - 1
	}
	runs, err := d.overlapping(lo, end+1)
	if err != nil || len(runs) < 2 {
		return err
	}
	merged := runs[:0:0]
	for _, e := range runs {
		if k := len(merged) - 1; k >= 0 && merged[k].End() == e.P && merged[k].Count == e.Count && merged[k].Len+e.Len <= maxRun {
			merged[k].Len += e.Len
			continue
		}
		merged = append(merged, e)
	}
	if len(merged) == len(runs) {
		return nil
	}
	for _, e := range runs {
		if err := d.del(e); err != nil {
			return err
		}
	}
	for _, e := range merged {
		if err := d.put(e); err != nil {
			return err
		}
	}
	return nil
}

// FreeSpace returns the blocks of [0, nrBlocks) whose count is 0, for the
// allocator (memory only; built at open). A run past nrBlocks is corrupt.
func (d *DataSpace) FreeSpace(nrBlocks uint64) (*extent.FreeSpace, error) {
	free := extent.NewFreeSpace()
	var cur extent.PBlock
	var bad error
	err := d.Ascend(func(r extent.RefRun) bool {
		if uint64(r.End()) > nrBlocks {
			bad = corrupt(d.t.Root().ID, "data space map: run %d+%d past the %d data blocks", r.P, r.Len, nrBlocks)
			return false
		}
		bad = free.Add(cur, uint64(r.P-cur))
		cur = r.End()
		return bad == nil
	})
	if err != nil || bad != nil {
		return nil, firstErr(err, bad)
	}
	if err := free.Add(cur, nrBlocks-uint64(cur)); err != nil {
		return nil, err
	}
	return free, nil
}
