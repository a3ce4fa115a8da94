package thinpool

import (
	"bytes"
	"crypto/rand"

	"github.com/thinpool/thinpool/thinpool/internal/btree"
)

// superblock is the root of the pool: where everything else is.
type superblock struct {
	// version is the format version: what was read from disk, or
	// formatVersion for a superblock this package writes.
	version    uint32
	generation uint64 // bumped by every checkpoint; slot = generation % 2
	// seal is a random number chosen anew by every checkpoint (v2). Each
	// journal entry's checksum covers it and the entry's offset, so that no
	// bytes written as the payload of an entry, nor an entry of another
	// epoch, can pass for an entry (see entryCRC).
	seal         uint32
	uuid         [16]byte // identifies the pool
	blockSize    uint32   // data block size in bytes, a power of two
	nrDataBlocks uint64   // size of the data area in blocks
	dataOffset   uint64   // file offset of data block 0
	metaOffset   uint64   // file offset of the metadata area
	metaSize     uint64   // usable bytes of the metadata area
	metaReserve  uint64   // bytes reserved for the metadata area (max metaSize)
	journalSize  uint64   // bytes at the start of the metadata area for the journal
	ckptOffset   uint64   // checkpoint offset, relative to metaOffset
	ckptLen      uint64   // checkpoint length in bytes
	created      int64    // pool creation time, Unix nanoseconds

	// Format 3 only (the checkpoint fields above are zero).
	devRoot btree.Ref // the device tree
	dsRoot  btree.Ref // the data space map
	nrNodes uint64    // metadata nodes after the journal
	seed    uint64    // checksum seed of the nodes
	tid     uint64    // last transaction the trees hold
	nextID  DevID     // lowest device id never used
}

func (s *superblock) encode() []byte {
	e := encoder{b: make([]byte, 0, metaSectorSize)}
	e.b = append(e.b, superMagic...)
	e.u32(s.version)
	e.u32(0) // flags
	e.u64(s.generation)
	e.b = append(e.b, s.uuid[:]...)
	e.u32(s.blockSize)
	e.u32(s.seal)
	e.u64(s.nrDataBlocks)
	e.u64(s.dataOffset)
	e.u64(s.metaOffset)
	e.u64(s.metaSize)
	e.u64(s.metaReserve)
	e.u64(s.journalSize)
	e.u64(s.ckptOffset)
	e.u64(s.ckptLen)
	e.u64(uint64(s.created))
	e.u32(0) // reserved
	if s.version >= formatV3 {
		e.u64(uint64(s.devRoot.ID))
		e.u64(s.devRoot.Gen)
		e.u64(uint64(s.dsRoot.ID))
		e.u64(s.dsRoot.Gen)
		e.u64(s.nrNodes)
		e.u64(s.seed)
		e.u64(s.tid)
		e.u32(uint32(s.nextID))
		e.u32(0) // reserved
	}
	e.u32(crc(e.b))
	return append(e.b, make([]byte, metaSectorSize-len(e.b))...)
}

// decodeSuperblock parses and validates one superblock slot (at least
// superblockSize bytes) read from file offset off.
func decodeSuperblock(b []byte, off int64) (*superblock, error) {
	if len(b) < superblockSize {
		return nil, corruptf(off, "short superblock")
	}
	if !bytes.Equal(b[:8], []byte(superMagic)) {
		return nil, corruptf(off, "bad superblock magic")
	}
	v := le.Uint32(b[8:])
	if v < formatV1 || v > formatV3 {
		return nil, corruptf(off, "unsupported format version %d (this thinpool reads %d to %d)", v, formatV1, formatV3)
	}
	size := superblockSize
	if v >= formatV3 {
		size = superblockV3Size
	}
	if len(b) < size {
		return nil, corruptf(off, "short superblock")
	}
	if got, want := crc(b[:size-4]), le.Uint32(b[size-4:]); got != want {
		return nil, corruptf(off, "superblock crc")
	}
	d := decoder{b: b[:size], off: 12}
	if d.u32() != 0 {
		return nil, corruptf(off, "unknown superblock flags")
	}
	s := &superblock{version: v, generation: d.u64()}
	copy(s.uuid[:], d.take(16))
	s.blockSize = d.u32()
	s.seal = d.u32()
	if v == formatV1 && s.seal != 0 {
		return nil, corruptf(off, "superblock reserved field")
	}
	s.nrDataBlocks = d.u64()
	s.dataOffset = d.u64()
	s.metaOffset = d.u64()
	s.metaSize = d.u64()
	s.metaReserve = d.u64()
	s.journalSize = d.u64()
	s.ckptOffset = d.u64()
	s.ckptLen = d.u64()
	s.created = int64(d.u64())
	if d.u32() != 0 {
		return nil, corruptf(off, "superblock reserved field")
	}
	if v >= formatV3 {
		s.devRoot = btree.Ref{ID: btree.NodeID(d.u64()), Gen: d.u64()}
		s.dsRoot = btree.Ref{ID: btree.NodeID(d.u64()), Gen: d.u64()}
		s.nrNodes, s.seed, s.tid, s.nextID = d.u64(), d.u64(), d.u64(), DevID(d.u32())
		if d.u32() != 0 {
			return nil, corruptf(off, "superblock reserved field")
		}
	}
	if err := s.validate(); err != nil {
		return nil, corruptf(off, "superblock: %v", err)
	}
	return s, nil
}

type formatError string

func (e formatError) Error() string { return string(e) }

// validate checks that the layout the superblock describes is coherent.
func (s *superblock) validate() error {
	switch {
	case s.blockSize < MinBlockSize || s.blockSize > MaxBlockSize || s.blockSize&(s.blockSize-1) != 0:
		return formatError("bad block size")
	case s.metaOffset != metaOffset:
		return formatError("bad metadata offset")
	case s.journalSize == 0 || s.journalSize%metaSectorSize != 0 || s.journalSize >= s.metaSize ||
		s.journalSize > maxJournalSize:
		return formatError("bad journal size")
	case s.metaSize%metaSectorSize != 0 || s.metaSize > s.metaReserve || s.metaReserve > maxMetadataSize:
		return formatError("bad metadata size")
	case s.dataOffset < s.metaOffset+s.metaReserve || s.dataOffset%uint64(s.blockSize) != 0 ||
		s.dataOffset > s.metaOffset+maxMetadataSize+MaxBlockSize:
		return formatError("bad data offset")
	case s.nrDataBlocks == 0 || s.nrDataBlocks > maxDataBlocks || s.nrDataBlocks > maxDataBytes/uint64(s.blockSize):
		return formatError("bad data block count")
	case s.version >= formatV3:
		return s.validateV3()
	case s.ckptOffset > s.metaSize || s.ckptLen > s.metaSize ||
		s.ckptOffset < s.journalSize || s.ckptOffset%metaSectorSize != 0 ||
		s.ckptLen < ckptHeaderSize || s.ckptOffset+s.ckptLen > s.metaSize:
		return formatError("bad checkpoint location")
	}
	return nil
}

// validateV3 checks the fields of a v3 superblock.
func (s *superblock) validateV3() error {
	switch {
	case s.ckptOffset != 0 || s.ckptLen != 0:
		return formatError("checkpoint location in a v3 superblock")
	case s.nrNodes != (s.metaSize-s.journalSize)/metaSectorSize:
		return formatError("bad metadata node count")
	case s.devRoot.ID == 0 || s.dsRoot.ID == 0 || s.devRoot.Gen > s.generation || s.dsRoot.Gen > s.generation:
		return formatError("bad tree roots")
	case s.nextID == 0:
		return formatError("bad next device id")
	}
	return nil
}

// nodesOff is the file offset of metadata node 0 (format 3).
func (s *superblock) nodesOff() int64 { return int64(s.metaOffset + s.journalSize) }

// fileSize is the size of a pool file with this layout.
func (s *superblock) fileSize() int64 {
	return int64(s.dataOffset + s.nrDataBlocks*uint64(s.blockSize))
}

// newSeal returns a random journal seal.
func newSeal() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return le.Uint32(b[:])
}
