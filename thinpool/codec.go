package thinpool

import (
	"encoding/binary"
	"hash/crc32"
)

// All on-disk integers are little-endian; see FORMAT.md.
var le = binary.LittleEndian

// castagnoli is the CRC-32C table used by every on-disk checksum.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// encoder appends little-endian fields to a buffer.
type encoder struct{ b []byte }

func (e *encoder) u8(v uint8)   { e.b = append(e.b, v) }
func (e *encoder) u16(v uint16) { e.b = le.AppendUint16(e.b, v) }
func (e *encoder) u32(v uint32) { e.b = le.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64) { e.b = le.AppendUint64(e.b, v) }
func (e *encoder) str(s string) {
	e.u16(uint16(len(s)))
	e.b = append(e.b, s...)
}

// decoder reads little-endian fields, remembering the first overrun instead
// of panicking; callers check err once at the end.
type decoder struct {
	b   []byte
	off int
	bad bool
}

func (d *decoder) take(n int) []byte {
	if d.bad || n < 0 || len(d.b)-d.off < n {
		d.bad = true
		return nil
	}
	s := d.b[d.off : d.off+n]
	d.off += n
	return s
}

func (d *decoder) u8() uint8 {
	if s := d.take(1); s != nil {
		return s[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if s := d.take(2); s != nil {
		return le.Uint16(s)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if s := d.take(4); s != nil {
		return le.Uint32(s)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if s := d.take(8); s != nil {
		return le.Uint64(s)
	}
	return 0
}

func (d *decoder) str(maxLen int) string {
	n := int(d.u16())
	if n > maxLen {
		d.bad = true
		return ""
	}
	return string(d.take(n))
}

func (d *decoder) remaining() int { return len(d.b) - d.off }
