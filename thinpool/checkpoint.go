package thinpool

import (
	"fmt"
	"io"
	"slices"

	"github.com/thinpool/thinpool/extent"
)

// ckptImage is a frozen copy of the state for writing a checkpoint: the maps
// are lazy clones, so taking it under Pool.mu is cheap.
type ckptImage struct {
	generation uint64
	tid        uint64
	nextID     DevID
	devs       []*device // sorted by id; meta and m only
	refs       *extent.RefCounts
}

func (s *state) image(generation uint64) *ckptImage {
	img := &ckptImage{generation: generation, tid: s.tid, nextID: s.nextID, refs: s.memRefs().Clone()}
	for _, d := range s.devs {
		img.devs = append(img.devs, &device{meta: d.meta, m: memMap{d.mem().Clone()}})
	}
	slices.SortFunc(img.devs, func(a, b *device) int { return int(a.meta.id) - int(b.meta.id) })
	return img
}

func (img *ckptImage) encode() []byte {
	e := encoder{b: make([]byte, ckptHeaderSize, 4096)}
	for _, d := range img.devs {
		d.meta.encode(&e)
		e.u64(uint64(d.mem().Len()))
		d.mem().Ascend(func(m extent.Mapping) bool {
			e.u64(uint64(m.V))
			e.u64(uint64(m.P))
			e.u64(m.Len)
			return true
		})
	}
	img.refs.Ascend(func(r extent.RefRun) bool {
		e.u64(uint64(r.P))
		e.u64(r.Len)
		e.u32(r.Count)
		return true
	})
	b := e.b
	le.PutUint32(b[0:], ckptMagic)
	le.PutUint32(b[4:], ckptVersion)
	le.PutUint64(b[8:], img.generation)
	le.PutUint64(b[16:], img.tid)
	le.PutUint32(b[24:], uint32(img.nextID))
	le.PutUint64(b[32:], uint64(len(img.devs)))
	le.PutUint64(b[40:], uint64(img.refs.Len()))
	le.PutUint64(b[48:], uint64(len(b)-ckptHeaderSize))
	le.PutUint32(b[56:], crc(b[:56]))
	le.PutUint32(b[60:], crc(b[ckptHeaderSize:]))
	return b
}

// ckptChunk is how much of a checkpoint body readCheckpoint holds at once.
// It is larger than any field (a label value is at most 60 KiB).
const ckptChunk = 1 << 20

// ckptHeader is the fixed part of a checkpoint.
type ckptHeader struct {
	generation   uint64
	tid          uint64
	nextID       DevID
	ndevs, nrefs uint64
	bodyLen      uint64
	bodyCRC      uint32
}

// decodeCkptHeader parses and checks the first ckptHeaderSize bytes of a
// checkpoint read from file offset off, up to its length field.
func decodeCkptHeader(b []byte, off int64) (ckptHeader, error) {
	if len(b) < ckptHeaderSize || le.Uint32(b) != ckptMagic {
		return ckptHeader{}, corruptf(off, "bad checkpoint magic")
	}
	if crc(b[:56]) != le.Uint32(b[56:]) {
		return ckptHeader{}, corruptf(off, "checkpoint header crc")
	}
	if v := le.Uint32(b[4:]); v != ckptVersion {
		return ckptHeader{}, corruptf(off, "unsupported checkpoint version %d", v)
	}
	if le.Uint32(b[28:]) != 0 {
		return ckptHeader{}, corruptf(off, "checkpoint reserved field")
	}
	return ckptHeader{
		generation: le.Uint64(b[8:]),
		tid:        le.Uint64(b[16:]),
		nextID:     DevID(le.Uint32(b[24:])),
		ndevs:      le.Uint64(b[32:]),
		nrefs:      le.Uint64(b[40:]),
		bodyLen:    le.Uint64(b[48:]),
		bodyCRC:    le.Uint32(b[60:]),
	}, nil
}

// decodeCheckpoint parses a whole checkpoint held in b, read from file
// offset off, into a state and returns it with the checkpoint's
// generation. See decodeCkptBody for what it checks.
func decodeCheckpoint(b []byte, off int64, blockSize, nrBlocks uint64) (*state, uint64, error) {
	h, err := decodeCkptHeader(b, off)
	if err != nil {
		return nil, 0, err
	}
	if h.bodyLen != uint64(len(b)-ckptHeaderSize) {
		return nil, 0, corruptf(off, "checkpoint length")
	}
	st, err := decodeCkptBody(h, &decoder{b: b[ckptHeaderSize:]}, off, blockSize, nrBlocks)
	return st, h.generation, err
}

// readCheckpoint reads the checkpoint of n bytes at file offset off of f (a
// pool File) and decodes it as decodeCheckpoint does. It reads the header,
// then streams the body a chunk at a time, so what it allocates grows with
// what it has decoded and not with the length the superblock claims, and a
// body whose structure ends early is refused before the rest is read.
func readCheckpoint(f io.ReaderAt, off int64, n, blockSize, nrBlocks uint64) (*state, uint64, error) {
	if n < ckptHeaderSize {
		return nil, 0, corruptf(off, "checkpoint length")
	}
	hb := make([]byte, ckptHeaderSize)
	if _, err := f.ReadAt(hb, off); err != nil {
		return nil, 0, fmt.Errorf("read checkpoint: %w", err)
	}
	h, err := decodeCkptHeader(hb, off)
	if err != nil {
		return nil, 0, err
	}
	if h.bodyLen != n-ckptHeaderSize {
		return nil, 0, corruptf(off, "checkpoint length")
	}
	body := int64(h.bodyLen)
	d := newStreamDecoder(io.NewSectionReader(f, off+ckptHeaderSize, body), body, ckptChunk)
	st, err := decodeCkptBody(h, d, off, blockSize, nrBlocks)
	if d.rerr != nil {
		return nil, 0, fmt.Errorf("read checkpoint: %w", d.rerr)
	}
	return st, h.generation, err
}

// decodeCkptBody decodes the body that d holds, of the checkpoint whose
// header is h, into a state. It validates the structure (counts, records,
// sorted non-overlapping mappings and runs) and that no pool block has
// fewer references than mappings point at it (I1): Open relies on that to
// never free a mapped block. More references than mappings is a leak,
// which it allows (Check reports it and Repair fixes it). The body crc is
// checked last, once d has read the whole body; a structure error found
// before then wins, so that a hostile length is not read to the end.
func decodeCkptBody(h ckptHeader, d *decoder, off int64, blockSize, nrBlocks uint64) (*state, error) {
	st, err := decodeState(h, d, off, blockSize, nrBlocks)
	sum, whole := d.checksum()
	switch {
	case whole && sum != h.bodyCRC:
		return nil, corruptf(off, "checkpoint crc")
	case err != nil:
		return nil, err
	case !whole:
		return nil, corruptf(off, "checkpoint length") // cannot happen: the reference table ends the body
	}
	return st, nil
}

func decodeState(h ckptHeader, d *decoder, off int64, blockSize, nrBlocks uint64) (*state, error) {
	s := newState(blockSize, nrBlocks)
	s.tid = h.tid
	if h.ndevs > uint64(d.remaining()/minDevRecord) || h.nrefs > uint64(d.remaining()/refRunSize) {
		return nil, corruptf(off, "checkpoint counts exceed its length")
	}
	var prev DevID
	for i := uint64(0); i < h.ndevs; i++ {
		dev, err := decodeDevice(d, s)
		if err != nil {
			return nil, corruptf(off, "checkpoint device %d: %v", i, err)
		}
		if dev.meta.id <= prev {
			return nil, corruptf(off, "checkpoint devices out of order")
		}
		if _, dup := s.names[dev.meta.name]; dup {
			return nil, corruptf(off, "checkpoint has two devices named %q", dev.meta.name)
		}
		prev = dev.meta.id
		s.addDevice(dev)
	}
	if h.nextID < s.nextID || h.nextID <= prev { // s.nextID wraps past id 2^32-1
		return nil, corruptf(off, "checkpoint next device id %d is in use", h.nextID)
	}
	s.nextID = h.nextID
	if uint64(d.remaining()) != h.nrefs*refRunSize {
		return nil, corruptf(off, "checkpoint reference table length")
	}
	cov := newCoverage(s)
	// underRef checks I1 over [lo, hi), where the stored count is count.
	underRef := func(lo, hi extent.PBlock, count uint32) error {
		if p, n, mapped, ok := cov.over(lo, hi, count); ok {
			return corruptf(off, "checkpoint reference table: blocks %d+%d have %d references, %d mappings point at them", p, n, count, mapped)
		}
		return nil
	}
	var last extent.RefRun
	for i := uint64(0); i < h.nrefs; i++ {
		r := extent.RefRun{P: extent.PBlock(d.u64()), Len: d.u64(), Count: d.u32()}
		switch {
		case r.Len == 0 || r.Count == 0:
			return nil, corruptf(off, "checkpoint reference run %d is empty", i)
		case uint64(r.P)+r.Len > nrBlocks || uint64(r.P)+r.Len < uint64(r.P):
			return nil, corruptf(off, "checkpoint reference run %d past the data area", i)
		case i > 0 && r.P < last.End():
			return nil, corruptf(off, "checkpoint reference runs overlap")
		case i > 0 && r.P == last.End() && r.Count == last.Count:
			return nil, corruptf(off, "checkpoint reference runs not merged")
		}
		if err := underRef(last.End(), r.P, 0); err != nil {
			return nil, err
		}
		if err := underRef(r.P, r.End(), r.Count); err != nil {
			return nil, err
		}
		s.memRefs().Set(r.P, r.Len, r.Count)
		last = r
	}
	if err := underRef(last.End(), extent.PBlock(nrBlocks), 0); err != nil {
		return nil, err
	}
	return s, nil
}

// coverage counts how many mappings of a state point at each pool block, in
// ascending block order: a sweep over the sorted first and end blocks of
// every extent, which costs O(extents × log extents) to sort and then
// O(extents + runs) over all calls of over. Not safe for concurrent use.
type coverage struct {
	starts, ends []extent.PBlock // of every extent, each sorted
	i, j         int             // starts[:i] and ends[:j] are at or before the last position
	n            uint64          // the extents that cover the last position
}

func newCoverage(s *state) *coverage {
	c := &coverage{starts: make([]extent.PBlock, 0, s.mapEntries), ends: make([]extent.PBlock, 0, s.mapEntries)}
	for _, d := range s.devs {
		d.mem().Ascend(func(m extent.Mapping) bool {
			c.starts = append(c.starts, m.P)
			c.ends = append(c.ends, m.PEnd())
			return true
		})
	}
	slices.Sort(c.starts)
	slices.Sort(c.ends)
	return c
}

// advance moves the sweep to block p, which must not be below the last
// position.
func (c *coverage) advance(p extent.PBlock) {
	for c.i < len(c.starts) && c.starts[c.i] <= p {
		c.n++
		c.i++
	}
	for c.j < len(c.ends) && c.ends[c.j] <= p {
		c.n--
		c.j++
	}
}

// over returns the first run of [lo, hi) at which more than limit mappings
// point, and how many do. Each call's lo must be at or after the previous
// call's hi.
func (c *coverage) over(lo, hi extent.PBlock, limit uint32) (p extent.PBlock, n, mapped uint64, ok bool) {
	for pos := lo; pos < hi; {
		c.advance(pos)
		next := hi
		if c.i < len(c.starts) {
			next = min(next, c.starts[c.i])
		}
		if c.j < len(c.ends) {
			next = min(next, c.ends[c.j])
		}
		if c.n > uint64(limit) {
			return pos, uint64(next - pos), c.n, true
		}
		pos = next
	}
	return 0, 0, 0, false
}

func decodeDevice(d *decoder, s *state) (*device, error) {
	meta, err := decodeDevMeta(d)
	if err != nil {
		return nil, err
	}
	dev := &device{meta: meta, m: newMemMap()}
	n := d.u64()
	if d.bad || n > uint64(d.remaining()/mappingSize) {
		return nil, formatError("mapping count exceeds the checkpoint")
	}
	var last extent.Mapping
	devBlocks := s.devBlocks(dev)
	for i := uint64(0); i < n; i++ {
		m := extent.Mapping{V: extent.VBlock(d.u64()), P: extent.PBlock(d.u64()), Len: d.u64()}
		switch {
		case m.Len == 0:
			return nil, formatError("empty mapping")
		case uint64(m.V)+m.Len > devBlocks || uint64(m.V)+m.Len < uint64(m.V):
			return nil, formatError("mapping past the end of the device")
		case uint64(m.P)+m.Len > s.nrBlocks || uint64(m.P)+m.Len < uint64(m.P):
			return nil, formatError("mapping past the end of the data area")
		case i > 0 && m.V < last.End():
			return nil, formatError("mappings overlap or are out of order")
		case i > 0 && m.V == last.End() && m.P == last.PEnd():
			return nil, formatError("mappings not merged")
		}
		dev.mem().AppendSorted(m) // order and merging checked above
		last = m
	}
	return dev, nil
}
