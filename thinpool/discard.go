package thinpool

import (
	"github.com/thinpool/thinpool/extent"
)

// Discard unmaps every block that [off, off+n) covers whole; reads of them
// return zeros afterwards. Blocks no other device shares become free once
// the discard is committed. Partly covered blocks are left alone, as dm-thin
// does. A range ending at the end of the device covers its last block.
func (t *Thin) Discard(off, n int64) error {
	_, _, err := t.unmap(off, n)
	return err
}

// unmap discards [off, off+n) and returns the virtual blocks it covered
// whole, [v0, v1).
func (t *Thin) unmap(off, n int64) (v0, v1 int64, err error) {
	d, p := t.d, t.p
	d.wgate.RLock()
	defer d.wgate.RUnlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := t.checkWrite(off, n); err != nil {
		return 0, 0, err
	}
	bs := p.bs
	v0, v1 = (off+bs-1)/bs, (off+n)/bs
	if off+n == int64(d.meta.size) {
		v1 = (off + n + bs - 1) / bs
	}
	if v1 <= v0 {
		return v0, v0, nil
	}
	segments := 0
	d.m.Lookup(extent.VBlock(v0), uint64(v1-v0), func(s extent.Segment) bool {
		if s.Mapped {
			segments++
		}
		return true
	})
	if segments == 0 {
		return v0, v1, nil
	}
	if err := p.admit(growUnmap+segments*growSegment, segments); err != nil {
		return 0, 0, err
	}
	return v0, v1, p.applyLocked(op{kind: opUnmap, dev: d.meta.id, v: extent.VBlock(v0), n: uint64(v1 - v0)})
}

// WriteZeroes makes [off, off+n) read as zeros: whole blocks are unmapped
// (they cost no space), the partial blocks at either end are overwritten
// with zeros where they are mapped. It is not atomic: a snapshot taken
// during it may hold some of its blocks zeroed and others not.
func (t *Thin) WriteZeroes(off, n int64) error {
	v0, v1, err := t.unmap(off, n)
	if err != nil {
		return err
	}
	bs := t.p.bs
	end := off + n
	if v1 <= v0 { // no whole block: one range
		return t.zeroMapped(off, end)
	}
	if err := t.zeroMapped(off, min(v0*bs, end)); err != nil {
		return err
	}
	return t.zeroMapped(max(v1*bs, off), end)
}

// zeroMapped writes zeros over the parts of [lo, hi) that are mapped; the
// range lies within one or two blocks, and unmapped ones read as zeros
// already, so they are not allocated.
func (t *Thin) zeroMapped(lo, hi int64) error {
	if hi <= lo {
		return nil
	}
	bs := t.p.bs
	t.p.mu.RLock()
	segs, err := t.segments(lo, hi-lo)
	t.p.mu.RUnlock()
	if err != nil {
		return err
	}
	for _, s := range segs {
		if !s.Mapped {
			continue
		}
		a, b := max(lo, int64(s.V)*bs), min(hi, (int64(s.V)+int64(s.Len))*bs)
		if _, err := t.WriteAt(make([]byte, b-a), a); err != nil {
			return err
		}
	}
	return nil
}
