package thinpool

import (
	"fmt"
	"hash/crc32"

	"github.com/thinpool/thinpool/extent"
)

// opKind is the type of a journal operation. Part of the on-disk format; see
// FORMAT.md "Journal operations". Do not renumber.
type opKind uint8

const (
	opInvalid  opKind = iota
	opMap             // map new or shared blocks: dev, v, p, n
	opUnmap           // unmap blocks: dev, v, n
	opCreate          // create a device: device record
	opSnapshot        // snapshot record.origin into a new device: device record
	opDelete          // delete a device: dev
	opUpdate          // replace a device record (rename, resize, labels)
)

var opNames = [...]string{"invalid", "map", "unmap", "create", "snapshot", "delete", "update"}

func (k opKind) String() string {
	if int(k) < len(opNames) {
		return opNames[k]
	}
	return fmt.Sprintf("op(%d)", k)
}

// op is one change to the pool state, as journalled.
type op struct {
	kind opKind
	dev  DevID
	v    extent.VBlock
	p    extent.PBlock
	n    uint64
	meta *devMeta // opCreate, opSnapshot, opUpdate
}

func (o *op) encode(e *encoder) {
	e.u8(uint8(o.kind))
	switch o.kind {
	case opMap:
		e.u32(uint32(o.dev))
		e.u64(uint64(o.v))
		e.u64(uint64(o.p))
		e.u64(o.n)
	case opUnmap:
		e.u32(uint32(o.dev))
		e.u64(uint64(o.v))
		e.u64(o.n)
	case opDelete:
		e.u32(uint32(o.dev))
	case opCreate, opSnapshot, opUpdate:
		o.meta.encode(e)
	default:
		panic("thinpool: encode of " + o.kind.String())
	}
}

func decodeOp(d *decoder) (*op, error) {
	o := &op{kind: opKind(d.u8())}
	switch o.kind {
	case opMap:
		o.dev, o.v, o.p, o.n = DevID(d.u32()), extent.VBlock(d.u64()), extent.PBlock(d.u64()), d.u64()
	case opUnmap:
		o.dev, o.v, o.n = DevID(d.u32()), extent.VBlock(d.u64()), d.u64()
	case opDelete:
		o.dev = DevID(d.u32())
	case opCreate, opSnapshot, opUpdate:
		m, err := decodeDevMeta(d)
		if err != nil {
			return nil, err
		}
		o.meta, o.dev = m, m.id
	default:
		return nil, formatError("unknown operation " + o.kind.String())
	}
	if d.bad {
		return nil, formatError("truncated operation")
	}
	return o, nil
}

// encodeEntry returns the journal entry that commits ops as transaction seq
// after the checkpoint of sb, to be written at offset off of the journal,
// padded to a whole number of sectors.
func encodeEntry(sb *superblock, off int64, seq uint64, ops []op) []byte {
	e := encoder{b: make([]byte, entryHeaderSize, entryHeaderSize+len(ops)*29)}
	for i := range ops {
		ops[i].encode(&e)
	}
	b := e.b
	le.PutUint32(b[0:], journalMagic)
	le.PutUint64(b[8:], sb.generation)
	le.PutUint64(b[16:], seq)
	le.PutUint32(b[24:], uint32(len(b)-entryHeaderSize))
	le.PutUint32(b[28:], uint32(len(ops)))
	le.PutUint32(b[4:], sb.entryCRC(off, b[8:]))
	return append(b, make([]byte, alignUp(len(b), entryAlign)-len(b))...)
}

// entryCRC is the checksum of a journal entry whose bytes from 8 to the end
// of its operations are b, at offset off of the journal. From format v2 it
// covers first the superblock's seal and off (FORMAT.md "Journal entry"):
// an entry is bound to its epoch's random seal and to its place, so neither
// bytes that an earlier entry carried as data (a label value, say) nor an
// entry of another epoch or offset can pass for it. A v1 journal is
// unsealed, and is read only to upgrade the pool.
func (sb *superblock) entryCRC(off int64, b []byte) uint32 {
	if sb.version == formatV1 {
		return crc(b)
	}
	var prefix [12]byte
	le.PutUint32(prefix[0:], sb.seal)
	le.PutUint64(prefix[4:], uint64(off))
	return crc32.Update(crc(prefix[:]), castagnoli, b)
}

// entryHeader is the fixed part of a journal entry.
type entryHeader struct {
	epoch, seq    uint64
	payload, nops uint32
}

// decodeEntryHeader parses the first entryHeaderSize bytes of an entry. It
// returns ok=false for anything that is not an entry header.
func decodeEntryHeader(b []byte) (h entryHeader, ok bool) {
	if len(b) < entryHeaderSize || le.Uint32(b) != journalMagic {
		return h, false
	}
	h = entryHeader{epoch: le.Uint64(b[8:]), seq: le.Uint64(b[16:]), payload: le.Uint32(b[24:]), nops: le.Uint32(b[28:])}
	return h, h.payload <= maxEntryPayload && h.nops <= maxEntryOps
}

// size is the on-disk size of the entry, padding included.
func (h entryHeader) size() int { return alignUp(entryHeaderSize+int(h.payload), entryAlign) }

// decodeEntry checks the crc of a whole entry b (at least h.size() bytes
// not required) read at offset off of the journal of sb, and decodes its
// operations. A crc mismatch returns ok=false: the journal ends before this
// entry. A valid crc over operations that do not decode is corruption.
func decodeEntry(b []byte, h entryHeader, sb *superblock, off int64) (ops []op, ok bool, err error) {
	end := entryHeaderSize + int(h.payload)
	if len(b) < end || sb.entryCRC(off, b[8:end]) != le.Uint32(b[4:]) {
		return nil, false, nil
	}
	pos := int64(sb.metaOffset) + off
	d := decoder{b: b[entryHeaderSize:end]}
	ops = make([]op, 0, min(int(h.nops), d.remaining()/5+1))
	for i := 0; i < int(h.nops); i++ {
		o, err := decodeOp(&d)
		if err != nil {
			return nil, true, corruptf(pos, "journal entry %d: %v", h.seq, err)
		}
		ops = append(ops, *o)
	}
	if d.remaining() != 0 {
		return nil, true, corruptf(pos, "journal entry %d: trailing bytes", h.seq)
	}
	return ops, true, nil
}

func alignUp(n, a int) int { return (n + a - 1) / a * a }
