package extent

import (
	"fmt"

	"github.com/google/btree"
)

// RefRun says that each of the Len pool blocks starting at P has Count
// references.
type RefRun struct {
	P     PBlock
	Len   uint64
	Count uint32
}

// End is the first pool block after r.
func (r RefRun) End() PBlock { return r.P + PBlock(r.Len) }

// RefCounts holds the reference count of every pool block, as runs of equal
// counts. Blocks not covered by a run have count 0 (E3).
type RefCounts struct {
	t *btree.BTreeG[RefRun]
	// used is the number of blocks with a count of 1 or more.
	used uint64
}

// NewRefCounts returns reference counts that are 0 everywhere.
func NewRefCounts() *RefCounts {
	return &RefCounts{t: btree.NewG(degree, func(a, b RefRun) bool { return a.P < b.P })}
}

// Clone returns a lazy copy of r, as [Map.Clone] does.
func (r *RefCounts) Clone() *RefCounts { return &RefCounts{t: r.t.Clone(), used: r.used} }

// Len is the number of runs.
func (r *RefCounts) Len() int { return r.t.Len() }

// Used is the number of blocks with a count of at least 1.
func (r *RefCounts) Used() uint64 { return r.used }

// Ascend calls fn with each run in order until fn returns false.
func (r *RefCounts) Ascend(fn func(RefRun) bool) { r.t.Ascend(fn) }

// Last returns the run with the highest addresses.
func (r *RefCounts) Last() (RefRun, bool) { return r.t.Max() }

// Get returns the count of block p.
func (r *RefCounts) Get(p PBlock) uint32 {
	var c uint32
	r.t.DescendLessOrEqual(RefRun{P: p}, func(e RefRun) bool {
		if p < e.End() {
			c = e.Count
		}
		return false
	})
	return c
}

// Runs calls fn with the counts over [p, p+n) in order, gaps included as
// runs with Count 0, until fn returns false.
func (r *RefCounts) Runs(p PBlock, n uint64, fn func(RefRun) bool) {
	if n == 0 {
		return
	}
	end := p + PBlock(n)
	cur := p
	for _, e := range r.overlapping(p, end) {
		if e.P > cur {
			if !fn(RefRun{P: cur, Len: uint64(e.P - cur)}) {
				return
			}
			cur = e.P
		}
		hi := min(e.End(), end)
		if !fn(RefRun{P: cur, Len: uint64(hi - cur), Count: e.Count}) {
			return
		}
		cur = hi
	}
	if cur < end {
		fn(RefRun{P: cur, Len: uint64(end - cur)})
	}
}

// overlapping returns the runs that overlap [p, end), in order.
func (r *RefCounts) overlapping(p, end PBlock) []RefRun {
	var out []RefRun
	r.t.DescendLessOrEqual(RefRun{P: p}, func(e RefRun) bool {
		if p < e.End() {
			out = append(out, e)
		}
		return false
	})
	r.t.AscendRange(RefRun{P: p + 1}, RefRun{P: end}, func(e RefRun) bool {
		out = append(out, e)
		return true
	})
	if len(out) > 1 && out[0].P == out[1].P {
		out = out[1:]
	}
	return out
}

// Inc adds one reference to each block of [p, p+n).
func (r *RefCounts) Inc(p PBlock, n uint64) {
	r.Runs(p, n, func(e RefRun) bool {
		if e.Count == ^uint32(0) {
			panic("extent: reference count overflow") // checked before any change
		}
		return true
	})
	r.update(p, n, func(c uint32) uint32 { return c + 1 }, nil)
}

// Dec removes one reference from each block of [p, p+n) and calls freed
// (if not nil) with each run whose count dropped to 0. Decrementing a block
// whose count is already 0 is an error and changes nothing.
func (r *RefCounts) Dec(p PBlock, n uint64, freed func(Run)) error {
	var bad error
	r.Runs(p, n, func(e RefRun) bool {
		if e.Count == 0 {
			bad = fmt.Errorf("extent: reference count of block %d is already 0", e.P)
			return false
		}
		return true
	})
	if bad != nil {
		return bad
	}
	r.update(p, n, func(c uint32) uint32 { return c - 1 }, func(e RefRun) {
		if e.Count == 0 && freed != nil {
			freed(Run{P: e.P, Len: e.Len})
		}
	})
	return nil
}

// Set sets the count of every block of [p, p+n) to count.
func (r *RefCounts) Set(p PBlock, n uint64, count uint32) {
	r.update(p, n, func(uint32) uint32 { return count }, nil)
}

// update replaces the count c of each block in [p, p+n) by f(c), calls after
// with each new run, and keeps E2 and E3.
func (r *RefCounts) update(p PBlock, n uint64, f func(uint32) uint32, after func(RefRun)) {
	if n == 0 {
		return
	}
	end := p + PBlock(n)
	var pieces []RefRun
	r.Runs(p, n, func(e RefRun) bool {
		pieces = append(pieces, e)
		return true
	})
	for _, e := range r.overlapping(p, end) {
		r.t.Delete(e)
		r.used -= e.Len
		if e.P < p {
			r.put(RefRun{P: e.P, Len: uint64(p - e.P), Count: e.Count})
		}
		if end < e.End() {
			r.put(RefRun{P: end, Len: uint64(e.End() - end), Count: e.Count})
		}
	}
	for _, e := range pieces {
		e.Count = f(e.Count)
		if after != nil {
			after(e)
		}
		if e.Count != 0 {
			r.put(e)
		}
	}
	r.coalesce(p, end)
}

func (r *RefCounts) put(e RefRun) {
	r.t.ReplaceOrInsert(e)
	r.used += e.Len
}

// coalesce merges equal neighbouring runs in and around [p, end) (E2).
func (r *RefCounts) coalesce(p, end PBlock) {
	lo := p
	if p > 0 {
		lo = p - 1
	}
	runs := r.overlapping(lo, end+1)
	if len(runs) < 2 {
		return
	}
	merged := runs[:0:0]
	for _, e := range runs {
		if k := len(merged) - 1; k >= 0 && merged[k].End() == e.P && merged[k].Count == e.Count {
			merged[k].Len += e.Len
			continue
		}
		merged = append(merged, e)
	}
	if len(merged) == len(runs) {
		return
	}
	for _, e := range runs {
		r.t.Delete(e)
		r.used -= e.Len
	}
	for _, e := range merged {
		r.put(e)
	}
}
