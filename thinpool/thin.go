package thinpool

import (
	"fmt"
	"io"

	"github.com/thinpool/thinpool/errdefs"
	"github.com/thinpool/thinpool/extent"
)

// Thin is a handle to a thin device. Its methods are safe for concurrent
// use; concurrent writes to the same bytes land in an unspecified order, as
// on a disk. A handle fails with ErrNotFound once its device is deleted.
type Thin struct {
	p *Pool
	d *device
}

// Info describes the device.
func (t *Thin) Info() DeviceInfo {
	t.p.mu.RLock()
	defer t.p.mu.RUnlock()
	return t.p.info(t.d)
}

// ID is the device id.
func (t *Thin) ID() DevID {
	t.p.mu.RLock()
	defer t.p.mu.RUnlock()
	return t.d.meta.id
}

// name is the device's current name, for errors raised without mu held.
func (t *Thin) name() string {
	t.p.mu.RLock()
	defer t.p.mu.RUnlock()
	return t.d.meta.name
}

// Size is the virtual size in bytes.
func (t *Thin) Size() int64 {
	t.p.mu.RLock()
	defer t.p.mu.RUnlock()
	return int64(t.d.meta.size)
}

// MappedBytes is how many bytes of the device lie in mapped blocks: what
// it uses of the pool, shared blocks included. It is cheap (O(log
// extents)), so the FUSE file can report it as st_blocks on every getattr
// and du(1) shows the real usage (blockdev.MappedSizer).
func (t *Thin) MappedBytes() int64 {
	p := t.p
	p.mu.RLock()
	defer p.mu.RUnlock()
	n := int64(t.d.m.Blocks()) * p.bs
	size := int64(t.d.meta.size)
	// On a read error the part past the end is not subtracted: an
	// estimate for st_blocks, and the error comes back on the next access.
	if last, ok, err := t.d.m.Last(); err == nil && ok && int64(last.End())*p.bs > size {
		n -= int64(last.End())*p.bs - size // the part of the last block past the end
	}
	return n
}

// Sync makes every completed write to the pool durable; see Pool.Sync.
func (t *Thin) Sync() error { return t.p.Sync() }

// Pool is the pool the device lives in.
func (t *Thin) Pool() *Pool { return t.p }

// live checks that the device can be used. Called with mu held.
func (t *Thin) live() error {
	if err := t.p.usable(); err != nil {
		return err
	}
	if t.d.deleted {
		return errdefs.Newf(ErrNotFound, "device %q was deleted", t.d.meta.name)
	}
	return nil
}

// checkWrite checks a write, discard or write-zeroes of [off, off+n).
// Called with mu held.
func (t *Thin) checkWrite(off, n int64) error {
	if err := t.live(); err != nil {
		return err
	}
	if t.d.meta.readOnly() {
		return errdefs.Newf(ErrReadOnly, "device %q is read-only", t.d.meta.name)
	}
	if off < 0 || n < 0 || off+n > int64(t.d.meta.size) || off+n < off {
		return errdefs.Newf(ErrOutOfRange, "device %q of %d bytes: %d+%d is out of range", t.d.meta.name, t.d.meta.size, off, n)
	}
	return nil
}

// segments returns the segments covering the blocks of [off, off+n).
// Called with mu held.
func (t *Thin) segments(off, n int64) ([]extent.Segment, error) {
	bs := t.p.bs
	v0, v1 := off/bs, (off+n+bs-1)/bs
	var segs []extent.Segment
	err := t.d.m.Lookup(extent.VBlock(v0), uint64(v1-v0), func(s extent.Segment) bool {
		segs = append(segs, s)
		return true
	})
	return segs, err
}

// clip returns the part of [off, off+len(b)) that lies in virtual blocks
// [v, v+n): its offset and the matching slice of b.
func (t *Thin) clip(b []byte, off int64, v extent.VBlock, n uint64) (int64, []byte) {
	lo := max(off, int64(v)*t.p.bs)
	hi := min(off+int64(len(b)), int64(uint64(v)+n)*t.p.bs)
	return lo, b[lo-off : hi-off]
}

// ReadAt reads len(b) bytes from off. Unmapped blocks read as zeros. A read
// that reaches past the end returns the bytes before it and io.EOF.
func (t *Thin) ReadAt(b []byte, off int64) (int, error) {
	p := t.p
	p.ioGate.RLock()
	defer p.ioGate.RUnlock()
	p.mu.RLock()
	if err := t.live(); err != nil {
		p.mu.RUnlock()
		return 0, err
	}
	size := int64(t.d.meta.size)
	if off < 0 {
		err := errdefs.Newf(ErrOutOfRange, "device %q: negative offset %d", t.d.meta.name, off)
		p.mu.RUnlock()
		return 0, err
	}
	var eof error
	if int64(len(b)) > size-off { // not off+len(b), which may overflow
		b, eof = b[:max(0, size-off)], io.EOF
	}
	if len(b) == 0 {
		p.mu.RUnlock()
		return 0, eof
	}
	segs, err := t.segments(off, int64(len(b)))
	p.mu.RUnlock()
	if err != nil {
		return 0, fmt.Errorf("read %q at %d: %w", t.name(), off, err)
	}
	for _, s := range segs {
		lo, part := t.clip(b, off, s.V, s.Len)
		if !s.Mapped {
			clear(part)
			continue
		}
		inner := lo - int64(s.V)*p.bs
		if _, err := p.f.ReadAt(part, p.dataOff(s.P)+inner); err != nil {
			return 0, fmt.Errorf("read %q at %d: %w", t.name(), lo, err)
		}
	}
	return len(b), eof
}

// pieceKind says how a write treats a run of blocks.
type pieceKind uint8

const (
	pieceInvalid pieceKind = iota
	pieceInPlace           // mapped and not shared: overwrite
	pieceFresh             // unmapped: new blocks, zeros around the data
	pieceCopy              // shared: new blocks, old contents around the data (CoW)
)

// piece is a run of n virtual blocks from v that a write treats alike.
type piece struct {
	kind pieceKind
	v    extent.VBlock
	n    uint64
	old  extent.PBlock // pieceInPlace, pieceCopy: current blocks
	new  extent.PBlock // pieceFresh, pieceCopy: newly allocated blocks
}

// WriteAt writes b at off. Blocks that are unmapped get new pool blocks
// (zero-filled around the data); blocks shared with another device are
// copied first unless the write covers them whole (copy-on-write).
func (t *Thin) WriteAt(b []byte, off int64) (int, error) {
	d, p := t.d, t.p
	d.wgate.RLock()
	defer d.wgate.RUnlock()
	p.ioGate.RLock()
	defer p.ioGate.RUnlock()
	pieces, c, err := t.plan(off, int64(len(b)))
	if err != nil || len(b) == 0 {
		return 0, err
	}
	err = t.write(b, off, pieces)
	p.dataDirty.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	if c != nil {
		t.release(c)
	}
	for _, pc := range pieces {
		if pc.kind == pieceInPlace {
			continue
		}
		p.reserved -= pc.n
		if err != nil {
			// Never mapped: the blocks go straight back (they are zeroed
			// on reuse, Z1).
			_ = p.free.Add(pc.new, pc.n)
			continue
		}
		if aerr := p.applyLocked(op{kind: opMap, dev: d.meta.id, v: pc.v, p: pc.new, n: pc.n}); aerr != nil {
			err = fmt.Errorf("map %q: %w", d.meta.name, aerr)
			if p.failed == nil {
				p.failed = err
			}
		}
	}
	if err != nil {
		return 0, err
	}
	return len(b), nil
}

// plan classifies the blocks of a write, waits for other writers that are
// provisioning any of them, and allocates the new blocks it needs, holding a
// cell on the range until release.
func (t *Thin) plan(off, n int64) ([]piece, *cell, error) {
	p, d := t.p, t.d
	for {
		p.mu.Lock()
		if err := t.checkWrite(off, n); err != nil || n == 0 {
			p.mu.Unlock()
			return nil, nil, err
		}
		v0, v1 := extent.VBlock(off/p.bs), extent.VBlock((off+n+p.bs-1)/p.bs)
		if busy := d.overlap(v0, v1); busy != nil {
			p.mu.Unlock()
			<-busy.done
			continue
		}
		pieces, need, err := t.classify(off, n)
		if err != nil {
			p.failOnTree(err)
			p.mu.Unlock()
			return nil, nil, err
		}
		if need == 0 {
			p.mu.Unlock()
			return pieces, nil, nil
		}
		pieces, err = p.allocate(d, pieces, need)
		if err != nil {
			p.mu.Unlock()
			return nil, nil, err
		}
		c := &cell{v: v0, n: uint64(v1 - v0), done: make(chan struct{})}
		d.busy = append(d.busy, c)
		p.mu.Unlock()
		return pieces, c, nil
	}
}

// classify splits the blocks of [off, off+n) into pieces and counts the
// blocks to allocate. It unshares them first (devMap.Unshare), so that the
// counts say which are shared. Called with mu held.
func (t *Thin) classify(off, n int64) ([]piece, uint64, error) {
	bs := t.p.bs
	v0, v1 := off/bs, (off+n+bs-1)/bs
	if err := t.d.m.Unshare(extent.VBlock(v0), uint64(v1-v0)); err != nil {
		return nil, 0, err
	}
	segs, err := t.segments(off, n)
	if err != nil {
		return nil, 0, err
	}
	var pieces []piece
	var need uint64
	for _, s := range segs {
		if !s.Mapped {
			pieces = append(pieces, piece{kind: pieceFresh, v: s.V, n: s.Len})
			need += s.Len
			continue
		}
		if err := t.p.sharing(s.P, s.Len, func(r extent.Run, shared bool) {
			pc := piece{kind: pieceInPlace, v: s.V + extent.VBlock(r.P-s.P), n: r.Len, old: r.P}
			if shared {
				pc.kind = pieceCopy
				need += r.Len
			}
			pieces = append(pieces, pc)
		}); err != nil {
			return nil, 0, err
		}
	}
	return pieces, need, nil
}

// sharing calls fn with the runs of [p, p+n) and whether each must be
// copied before a write: it is shared now, or it was shared when the last
// transaction committed (C2), since a crash would bring that sharing back.
// Called with mu held.
func (p *Pool) sharing(start extent.PBlock, n uint64, fn func(r extent.Run, shared bool)) error {
	return p.st.refs.Runs(start, n, func(r extent.RefRun) bool {
		if r.Count > 1 {
			fn(extent.Run{P: r.P, Len: r.Len}, true)
			return true
		}
		// Split further by the blocks that lost a reference since the last
		// commit, in the open transaction or the one being committed.
		var marks *extent.RefCounts
		for _, set := range []*extent.RefCounts{p.st.unshared, p.committing} {
			if set == nil || set.Len() == 0 {
				continue
			}
			set.Runs(r.P, r.Len, func(u extent.RefRun) bool {
				if u.Count > 0 {
					if marks == nil {
						marks = extent.NewRefCounts()
					}
					marks.Set(u.P, u.Len, 1)
				}
				return true
			})
		}
		if marks == nil {
			fn(extent.Run{P: r.P, Len: r.Len}, false)
			return true
		}
		marks.Runs(r.P, r.Len, func(u extent.RefRun) bool {
			fn(extent.Run{P: u.P, Len: u.Len}, u.Count > 0)
			return true
		})
		return true
	})
}

// allocate gives each fresh or copy piece new blocks, splitting pieces where
// the free space is not contiguous. All or nothing. Called with mu held.
func (p *Pool) allocate(d *device, pieces []piece, need uint64) ([]piece, error) {
	if p.free.Blocks() < need {
		return nil, fmt.Errorf("%w: %d blocks needed, %d free", ErrNoSpace, need, p.free.Blocks())
	}
	hint := d.hint
	if hint == 0 {
		hint = p.cursor
	}
	out := make([]piece, 0, len(pieces)+1)
	for _, pc := range pieces {
		if pc.kind == pieceInPlace {
			out = append(out, pc)
			continue
		}
		for pc.n > 0 {
			r := p.free.Alloc(pc.n, hint)
			part := pc
			part.n, part.new = r.Len, r.P
			out = append(out, part)
			pc.v += extent.VBlock(r.Len)
			pc.old += extent.PBlock(r.Len)
			pc.n -= r.Len
			hint = r.End()
		}
	}
	if err := p.admit(len(out)*growMap, len(out)); err != nil {
		for _, pc := range out {
			if pc.kind != pieceInPlace {
				_ = p.free.Add(pc.new, pc.n)
			}
		}
		return nil, err
	}
	d.hint, p.cursor = hint, hint
	p.reserved += need
	return out, nil
}

// overlap returns a cell of d that overlaps [v0, v1). Called with mu held.
func (d *device) overlap(v0, v1 extent.VBlock) *cell {
	for _, c := range d.busy {
		if c.v < v1 && v0 < c.v+extent.VBlock(c.n) {
			return c
		}
	}
	return nil
}

// release drops a cell and wakes its waiters. Called with mu held.
func (t *Thin) release(c *cell) {
	busy := t.d.busy
	for i, x := range busy {
		if x == c {
			busy[i] = busy[len(busy)-1]
			t.d.busy = busy[:len(busy)-1]
			break
		}
	}
	close(c.done)
}

// write does the data I/O of a planned write.
func (t *Thin) write(b []byte, off int64, pieces []piece) error {
	p := t.p
	bs := p.bs
	for _, pc := range pieces {
		lo, part := t.clip(b, off, pc.v, pc.n)
		start := int64(pc.v) * bs // first byte of the piece
		if pc.kind == pieceInPlace {
			if err := p.writeData(part, p.dataOff(pc.old)+lo-start); err != nil {
				return fmt.Errorf("write %q at %d: %w", t.name(), lo, err)
			}
			continue
		}
		// New blocks: the partly written first and last block are filled
		// from the old block (copy) or zeros (fresh) and written whole; the
		// blocks in between come straight from b.
		hi := lo + int64(len(part))
		first, last := (lo-start)/bs, (hi-1-start)/bs
		for i := first; i <= last; i++ {
			bStart, bEnd := start+i*bs, start+(i+1)*bs
			if lo <= bStart && bEnd <= hi {
				j := i + 1
				for j <= last && start+(j+1)*bs <= hi {
					j++
				}
				if err := p.writeData(part[bStart-lo:start+j*bs-lo], p.dataOff(pc.new+extent.PBlock(i))); err != nil {
					return fmt.Errorf("write %q at %d: %w", t.name(), bStart, err)
				}
				i = j - 1
				continue
			}
			blk := p.getBlock()
			if pc.kind == pieceCopy {
				if _, err := p.f.ReadAt(blk, p.dataOff(pc.old+extent.PBlock(i))); err != nil {
					p.putBlock(blk)
					return fmt.Errorf("copy %q block %d: %w", t.name(), uint64(pc.v)+uint64(i), err)
				}
			}
			wlo, whi := max(lo, bStart), min(hi, bEnd)
			copy(blk[wlo-bStart:], part[wlo-lo:whi-lo])
			_, err := p.f.WriteAt(blk, p.dataOff(pc.new+extent.PBlock(i)))
			p.putBlock(blk)
			if err != nil {
				return fmt.Errorf("write %q at %d: %w", t.name(), bStart, err)
			}
		}
	}
	return nil
}

// directMin is the least length of a data write that bypasses the host
// page cache when the pool file can (directWriter): a streaming writer.
// Smaller writes, and the single blocks of copy-on-write, stay buffered
// until Sync.
const directMin = 256 << 10

// writeData writes b at file offset off of the data area.
func (p *Pool) writeData(b []byte, off int64) error {
	if dw, ok := p.f.(directWriter); ok && len(b) >= directMin {
		if done, err := dw.WriteDirect(b, off); done || err != nil {
			return err
		}
	}
	_, err := p.f.WriteAt(b, off)
	return err
}

// getBlock returns a zeroed buffer of one block.
func (p *Pool) getBlock() []byte {
	if b, ok := p.blocks.Get().(*[]byte); ok {
		clear(*b)
		return *b
	}
	return make([]byte, p.bs)
}

func (p *Pool) putBlock(b []byte) { p.blocks.Put(&b) }
