package thinpool

import (
	"encoding/binary"
	"hash/crc32"
	"io"
	"math"
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
// of panicking; callers check bad once at the end. It reads b, or, when src
// is set, a stream of which b holds the part read so far: take refills b a
// chunk at a time, so a long structure is never held whole. A slice that
// take returns is valid until the next call. Not safe for concurrent use.
type decoder struct {
	b   []byte // b[off:] is the unread portion of the input or chunk
	off int
	bad bool

	// src, when not nil, holds the left bytes of the stream that follow b.
	src   io.Reader
	left  int64
	chunk int    // how much of the stream to hold at once
	sum   uint32 // CRC-32C of every byte read from src so far
	rerr  error  // the error that ended a read from src
}

// newStreamDecoder returns a decoder of the n bytes that r holds, which it
// reads chunk bytes at a time (at least one field, whatever chunk says).
func newStreamDecoder(r io.Reader, n int64, chunk int) *decoder {
	return &decoder{src: r, left: n, chunk: chunk}
}

func (d *decoder) take(n int) []byte {
	if d.bad || n < 0 || (len(d.b)-d.off < n && !d.fill(n)) {
		d.bad = true
		return nil
	}
	s := d.b[d.off : d.off+n]
	d.off += n
	return s
}

// fill moves the unread bytes to the front of the buffer and reads the
// stream behind them, until the buffer is full or the stream ends. It
// reports whether n bytes are unread then; it reads nothing if the stream
// is too short for that.
func (d *decoder) fill(n int) bool {
	unread := len(d.b) - d.off
	if d.src == nil || d.rerr != nil || int64(n-unread) > d.left {
		return false
	}
	buf := d.b[:cap(d.b)]
	if size := max(n, int(min(int64(d.chunk), int64(unread)+d.left))); len(buf) < size {
		buf = make([]byte, size) // the first fill: size is bounded by the stream
	}
	copy(buf, d.b[d.off:])
	end := unread + int(min(int64(len(buf)-unread), d.left))
	if _, err := io.ReadFull(d.src, buf[unread:end]); err != nil {
		d.rerr = err
		return false
	}
	d.sum = crc32.Update(d.sum, castagnoli, buf[unread:end])
	d.left -= int64(end - unread)
	d.b, d.off = buf[:end], 0
	return true
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

// remaining is the number of unread bytes, in b and in the rest of the
// stream (which cannot be longer than the metadata area, but is clamped
// all the same so that the sum never overflows).
func (d *decoder) remaining() int { return len(d.b) - d.off + int(min(d.left, math.MaxInt/2)) }

// checksum returns the CRC-32C of the whole input, and whether it is known
// yet: a stream's only once every byte has been read.
func (d *decoder) checksum() (uint32, bool) {
	if d.src == nil {
		return crc(d.b), true
	}
	return d.sum, d.left == 0
}
