package thinpool

import (
	"slices"

	"github.com/thinpool/thinpool/extent"
)

// Part of the on-disk format; see FORMAT.md "Checkpoint". Do not change.
const (
	ckptMagic = 0x4b435054 // "TPCK"
	// ckptVersion is the checkpoint layout's own version: v2 of the format
	// changed the superblock and the journal, not the checkpoint.
	ckptVersion    = 1
	ckptHeaderSize = 64
	mappingSize    = 24 // v, p, len: three u64
	refRunSize     = 20 // p, len: u64; count: u32
	devHeaderSize  = 8  // number of mappings, before them
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
	img := &ckptImage{generation: generation, tid: s.tid, nextID: s.nextID, refs: s.refs.Clone()}
	for _, d := range s.devs {
		img.devs = append(img.devs, &device{meta: d.meta, m: d.m.Clone()})
	}
	slices.SortFunc(img.devs, func(a, b *device) int { return int(a.meta.id) - int(b.meta.id) })
	return img
}

func (img *ckptImage) encode() []byte {
	e := encoder{b: make([]byte, ckptHeaderSize, 4096)}
	for _, d := range img.devs {
		d.meta.encode(&e)
		e.u64(uint64(d.m.Len()))
		d.m.Ascend(func(m extent.Mapping) bool {
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

// decodeCheckpoint parses a checkpoint read from file offset off into a
// state. It validates structure (crc, counts, sorted non-overlapping runs,
// references) but not that references match mappings; Check does that.
func decodeCheckpoint(b []byte, off int64, blockSize, nrBlocks uint64) (*state, uint64, error) {
	if len(b) < ckptHeaderSize || le.Uint32(b) != ckptMagic {
		return nil, 0, corruptf(off, "bad checkpoint magic")
	}
	if crc(b[:56]) != le.Uint32(b[56:]) {
		return nil, 0, corruptf(off, "checkpoint header crc")
	}
	if v := le.Uint32(b[4:]); v != ckptVersion {
		return nil, 0, corruptf(off, "unsupported checkpoint version %d", v)
	}
	if le.Uint32(b[28:]) != 0 {
		return nil, 0, corruptf(off, "checkpoint reserved field")
	}
	bodyLen := le.Uint64(b[48:])
	if bodyLen != uint64(len(b)-ckptHeaderSize) {
		return nil, 0, corruptf(off, "checkpoint length")
	}
	if crc(b[ckptHeaderSize:]) != le.Uint32(b[60:]) {
		return nil, 0, corruptf(off, "checkpoint crc")
	}
	gen := le.Uint64(b[8:])
	s := newState(blockSize, nrBlocks)
	s.tid = le.Uint64(b[16:])
	nextID := DevID(le.Uint32(b[24:]))
	ndevs, nrefs := le.Uint64(b[32:]), le.Uint64(b[40:])
	d := decoder{b: b[ckptHeaderSize:]}
	if ndevs > uint64(d.remaining()/minDevRecord) || nrefs > uint64(d.remaining()/refRunSize) {
		return nil, 0, corruptf(off, "checkpoint counts exceed its length")
	}
	var prev DevID
	for i := uint64(0); i < ndevs; i++ {
		dev, err := decodeDevice(&d, s)
		if err != nil {
			return nil, 0, corruptf(off, "checkpoint device %d: %v", i, err)
		}
		if dev.meta.id <= prev {
			return nil, 0, corruptf(off, "checkpoint devices out of order")
		}
		if _, dup := s.names[dev.meta.name]; dup {
			return nil, 0, corruptf(off, "checkpoint has two devices named %q", dev.meta.name)
		}
		prev = dev.meta.id
		s.addDevice(dev)
	}
	if nextID < s.nextID {
		return nil, 0, corruptf(off, "checkpoint next device id %d is in use", nextID)
	}
	s.nextID = nextID
	if uint64(d.remaining()) != nrefs*refRunSize {
		return nil, 0, corruptf(off, "checkpoint reference table length")
	}
	var last extent.RefRun
	for i := uint64(0); i < nrefs; i++ {
		r := extent.RefRun{P: extent.PBlock(d.u64()), Len: d.u64(), Count: d.u32()}
		switch {
		case r.Len == 0 || r.Count == 0:
			return nil, 0, corruptf(off, "checkpoint reference run %d is empty", i)
		case uint64(r.P)+r.Len > nrBlocks || uint64(r.P)+r.Len < uint64(r.P):
			return nil, 0, corruptf(off, "checkpoint reference run %d past the data area", i)
		case i > 0 && r.P < last.End():
			return nil, 0, corruptf(off, "checkpoint reference runs overlap")
		case i > 0 && r.P == last.End() && r.Count == last.Count:
			return nil, 0, corruptf(off, "checkpoint reference runs not merged")
		}
		s.refs.Set(r.P, r.Len, r.Count)
		last = r
	}
	return s, gen, nil
}

// minDevRecord is the smallest encoded device: record and mapping count.
const minDevRecord = 4 + 4 + 4 + 8 + 8 + 2 + 1 + 2 + devHeaderSize

func decodeDevice(d *decoder, s *state) (*device, error) {
	meta, err := decodeDevMeta(d)
	if err != nil {
		return nil, err
	}
	dev := &device{meta: meta, m: extent.NewMap()}
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
		dev.m.AppendSorted(m) // order and merging checked above
		last = m
	}
	return dev, nil
}
