package extent

import (
	"fmt"

	"github.com/google/btree"
)

// FreeSpace is the set of free pool blocks, as merged runs.
type FreeSpace struct {
	t *btree.BTreeG[Run]
	// blocks is the number of free blocks (the sum of all Len).
	blocks uint64
}

// NewFreeSpace returns an empty set.
func NewFreeSpace() *FreeSpace {
	return &FreeSpace{t: btree.NewG(degree, func(a, b Run) bool { return a.P < b.P })}
}

// Blocks is the number of free blocks.
func (f *FreeSpace) Blocks() uint64 { return f.blocks }

// Len is the number of runs.
func (f *FreeSpace) Len() int { return f.t.Len() }

// Ascend calls fn with each free run in order until fn returns false.
func (f *FreeSpace) Ascend(fn func(Run) bool) { f.t.Ascend(fn) }

// containing returns the run that contains p.
func (f *FreeSpace) containing(p PBlock) (Run, bool) {
	var found Run
	ok := false
	f.t.DescendLessOrEqual(Run{P: p}, func(e Run) bool {
		if p < e.End() {
			found, ok = e, true
		}
		return false
	})
	return found, ok
}

// Add marks [p, p+n) free. It is an error for any of it to be free already.
func (f *FreeSpace) Add(p PBlock, n uint64) error {
	if n == 0 {
		return nil
	}
	end := p + PBlock(n)
	var clash bool
	f.t.DescendLessOrEqual(Run{P: end - 1}, func(e Run) bool {
		clash = e.End() > p
		return false
	})
	if clash {
		return fmt.Errorf("extent: blocks %d+%d are already free", p, n)
	}
	r := Run{P: p, Len: n}
	if left, ok := f.containing(p - 1); ok && p > 0 {
		f.t.Delete(left)
		r = Run{P: left.P, Len: left.Len + r.Len}
	}
	if right, ok := f.t.Get(Run{P: end}); ok {
		f.t.Delete(right)
		r.Len += right.Len
	}
	f.t.ReplaceOrInsert(r)
	f.blocks += n
	return nil
}

// Take marks [p, p+n) used. It is an error for any of it not to be free.
func (f *FreeSpace) Take(p PBlock, n uint64) error {
	if n == 0 {
		return nil
	}
	e, ok := f.containing(p)
	if !ok || e.End() < p+PBlock(n) {
		return fmt.Errorf("extent: blocks %d+%d are not free", p, n)
	}
	f.t.Delete(e)
	if e.P < p {
		f.t.ReplaceOrInsert(Run{P: e.P, Len: uint64(p - e.P)})
	}
	if end := p + PBlock(n); end < e.End() {
		f.t.ReplaceOrInsert(Run{P: end, Len: uint64(e.End() - end)})
	}
	f.blocks -= n
	return nil
}

// Alloc takes up to n free blocks that are contiguous and returns them,
// preferring blocks at or after hint (next fit), so that consecutive
// allocations with the end of the previous one as hint stay contiguous. It
// returns a run of Len 0 when nothing is free.
func (f *FreeSpace) Alloc(n uint64, hint PBlock) Run {
	if n == 0 || f.blocks == 0 {
		return Run{}
	}
	var pick Run
	if e, ok := f.containing(hint); ok {
		pick = Run{P: hint, Len: min(n, uint64(e.End()-hint))}
	} else {
		found := false
		f.t.AscendGreaterOrEqual(Run{P: hint}, func(e Run) bool {
			pick, found = Run{P: e.P, Len: min(n, e.Len)}, true
			return false
		})
		if !found {
			e, _ := f.t.Min()
			pick = Run{P: e.P, Len: min(n, e.Len)}
		}
	}
	if err := f.Take(pick.P, pick.Len); err != nil {
		panic(err) // pick came from the tree
	}
	return pick
}
