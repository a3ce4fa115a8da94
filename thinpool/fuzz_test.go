package thinpool

// Fuzz targets for every decoder of the on-disk format. Each one checks
// that the decoder does not panic, that it allocates in proportion to its
// input and not to a length field it has not checked, and that whatever it
// accepts encodes back to the same bytes.
//
// Checksums stop almost every mutation at the first check, so each target
// takes a flag that, when set, recomputes the checksums of the mutated input
// before decoding: the fuzzer then reaches the structure checks.

import (
	"bytes"
	"errors"
	"runtime/metrics"
	"testing"

	"github.com/thinpool/thinpool/extent"
	"github.com/thinpool/thinpool/thinpool/internal/btree"
)

// allocated returns about how many bytes fn allocates on the heap. Large
// allocations count at once; small ones when their span is refilled, so the
// figure can be off by a span per size class. It does not stop the world
// (runtime.ReadMemStats does), which keeps fuzzing and minimizing fast.
func allocated(fn func()) uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	before := s[0].Value.Uint64()
	fn()
	metrics.Read(s)
	return s[0].Value.Uint64() - before
}

// allocLimit is the most a decoder may allocate for n bytes of input: the
// in-memory trees cost a few times their encoding, and fixed costs (a map of
// MaxLabels labels, a tree's free list, the spans of allocated) come on top.
func allocLimit(n int) uint64 { return 64*uint64(n) + 1<<20 }

var allocSink []byte

func checkAlloc(t *testing.T, what string, n int, got uint64) {
	t.Helper()
	if got > allocLimit(n) {
		t.Fatalf("%s of %d bytes allocated %d bytes, more than %d", what, n, got, allocLimit(n))
	}
}

// fuzzPool returns a pool with several devices, snapshots, mappings,
// labels and shared blocks, for seeds. It is the golden v1 script run
// today, never closed.
func fuzzPool(t testing.TB) *Pool {
	p, err := CreateFile(newPageStore().open(), Options{DataSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	runGoldenScript(t, p, goldenV1Script)
	return p
}

// seedOps returns operations of every kind, for journal seeds.
func seedOps(p *Pool) []op {
	var ops []op
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, id := range []DevID{1, 2, 3, 4} {
		d := p.st.devs[id]
		ops = append(ops,
			op{kind: opCreate, dev: id, meta: d.meta},
			op{kind: opUpdate, dev: id, meta: d.meta})
		d.mem().Ascend(func(m extent.Mapping) bool {
			ops = append(ops, op{kind: opMap, dev: id, v: m.V, p: m.P, n: m.Len})
			return true
		})
	}
	snap := p.st.devs[3].meta
	return append(ops,
		op{kind: opSnapshot, dev: snap.id, meta: snap},
		op{kind: opUnmap, dev: 1, v: 1, n: 1},
		op{kind: opUnmap, dev: 2, v: 0, n: 1 << 40},
		op{kind: opMap, dev: 7, v: 1 << 50, p: 1 << 39, n: 3},
		op{kind: opDelete, dev: 5},
	)
}

func FuzzSuperblock(f *testing.F) {
	_, slots, _, _, _ := goldenMeta(f, loadGolden(f, formatV1))
	for _, b := range slots {
		f.Add(b, false)
	}
	p := fuzzPool(f)
	for _, gen := range []uint64{1, 2, 1 << 40} {
		sb := p.sb
		sb.generation = gen
		f.Add(sb.encode(), false)
		f.Add(sb.encode()[:superblockSize], true)
	}
	for _, o := range []Options{{DataSize: 1 << 30}, {DataSize: 1 << 40, BlockSize: 1 << 20, MetadataSize: 64 << 20}} {
		sb, err := layout(o)
		if err != nil {
			f.Fatal(err)
		}
		sb.ckptLen = ckptHeaderSize
		f.Add(sb.encode(), false)
	}
	f.Add(make([]byte, superblockSize), true)
	v3, err := layout(Options{DataSize: 1 << 30, FormatVersion: formatV3})
	if err != nil {
		f.Fatal(err)
	}
	v3.devRoot, v3.dsRoot = btree.Ref{ID: 3, Gen: 1}, btree.Ref{ID: 4, Gen: 1}
	f.Add(v3.encode(), false)
	f.Add(v3.encode()[:superblockV3Size], true)
	// encodedSize is the size a superblock of b's version encodes to.
	encodedSize := func(b []byte) int {
		if len(b) >= 12 && le.Uint32(b[8:]) >= formatV3 {
			return superblockV3Size
		}
		return superblockSize
	}
	f.Fuzz(func(t *testing.T, b []byte, fixCRC bool) {
		if n := encodedSize(b); fixCRC && len(b) >= n {
			b = bytes.Clone(b)
			le.PutUint32(b[n-4:], crc(b[:n-4]))
		}
		var sb *superblock
		var err error
		checkAlloc(t, "decodeSuperblock", len(b), allocated(func() { sb, err = decodeSuperblock(b, 0) }))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if err := sb.validate(); err != nil {
			t.Fatalf("accepted superblock does not validate: %v", err)
		}
		if n := encodedSize(b); !bytes.Equal(sb.encode()[:n], b[:n]) {
			t.Fatalf("superblock re-encodes differently:\n got %x\nwant %x", sb.encode()[:n], b[:n])
		}
	})
}

// testSB is the superblock of the journal that fuzzed and hand-made entries
// belong to: sealed, as in format v2, at generation 1.
var testSB = &superblock{version: formatVersion, generation: 1, seal: 0x7e57ab1e, metaOffset: metaOffset}

// testSBAt is testSB at another generation (an entry's epoch).
func testSBAt(gen uint64) *superblock {
	sb := *testSB
	sb.generation = gen
	return &sb
}

func FuzzJournalEntry(f *testing.F) {
	// Seeds without their padding: small inputs keep the fuzzer fast.
	unpadded := func(b []byte) []byte { return b[:entryHeaderSize+le.Uint32(b[24:])] }
	_, _, _, entries, _ := goldenMeta(f, loadGolden(f, formatV1))
	for _, e := range entries { // v1 entries: their crc is unsealed
		f.Add(unpadded(e), true)
	}
	f.Add(entries[0], true) // one with its padding
	ops := seedOps(fuzzPool(f))
	f.Add(unpadded(encodeEntry(testSBAt(2), 0, 7, ops)), false)
	for i := range ops {
		f.Add(unpadded(encodeEntry(testSB, 0, uint64(i)+1, ops[i:i+1])), false)
	}
	f.Add(unpadded(encodeEntry(testSBAt(3), 0, 1, nil)), false)
	f.Add(encodeEntry(testSBAt(3), 0, 1, ops[:3])[:entryHeaderSize+10], true)
	f.Fuzz(func(t *testing.T, b []byte, fixCRC bool) {
		if fixCRC && len(b) >= entryHeaderSize {
			if end := entryHeaderSize + uint64(le.Uint32(b[24:])); end <= uint64(len(b)) {
				b = bytes.Clone(b)
				le.PutUint32(b[4:], testSB.entryCRC(0, b[8:end]))
			}
		}
		h, ok := decodeEntryHeader(b)
		if !ok {
			return
		}
		var ops []op
		var err error
		checkAlloc(t, "decodeEntry", len(b), allocated(func() { ops, ok, err = decodeEntry(b, h, testSB, 0) }))
		switch {
		case !ok && err != nil:
			t.Fatalf("torn entry returned error %v", err)
		case !ok:
			return
		case err != nil:
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if len(ops) != int(h.nops) {
			t.Fatalf("%d operations decoded, header says %d", len(ops), h.nops)
		}
		got := encodeEntry(testSBAt(h.epoch), 0, h.seq, ops)
		end := entryHeaderSize + int(h.payload)
		if len(got) != h.size() || !bytes.Equal(got[:end], b[:end]) {
			t.Fatalf("entry re-encodes differently:\n got %x\nwant %x", got[:min(end, len(got))], b[:end])
		}
	})
}

func FuzzCheckpoint(f *testing.F) {
	_, _, ck, _, _ := goldenMeta(f, loadGolden(f, formatV1))
	f.Add(ck, uint64(1024), false)
	p := fuzzPool(f)
	f.Add(p.st.image(p.sb.generation).encode(), uint64(1024), false)
	f.Add(p.st.image(9).encode(), uint64(1<<20), false)
	f.Add(newState(goldenBlock, 16).image(1).encode(), uint64(16), false)
	f.Add(p.st.image(1).encode()[:ckptHeaderSize+100], uint64(1024), true)
	f.Fuzz(func(t *testing.T, b []byte, nrBlocks uint64, fixCRC bool) {
		nrBlocks = max(1, nrBlocks%(maxDataBlocks+1))
		if fixCRC && len(b) >= ckptHeaderSize {
			b = bytes.Clone(b)
			le.PutUint64(b[48:], uint64(len(b)-ckptHeaderSize))
			le.PutUint32(b[56:], crc(b[:56]))
			le.PutUint32(b[60:], crc(b[ckptHeaderSize:]))
		}
		var st *state
		var gen uint64
		var err error
		checkAlloc(t, "decodeCheckpoint", len(b), allocated(func() {
			st, gen, err = decodeCheckpoint(b, 0, goldenBlock, nrBlocks)
		}))
		checkStreamed(t, b, nrBlocks, st, err)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if got := st.image(gen).encode(); !bytes.Equal(got, b) {
			t.Fatalf("checkpoint re-encodes differently (%d bytes, input %d)", len(got), len(b))
		}
		if size := st.checkpointSize(); size != len(b) {
			t.Fatalf("checkpointSize %d, encoded %d bytes", size, len(b))
		}
	})
}

// checkStreamed decodes the checkpoint b as Open does, streaming its body
// through a small buffer, and fails t unless that agrees with decoding b
// whole (st, err): the same state, or an error for the same input, and
// the same error when the body crc is right.
func checkStreamed(t *testing.T, b []byte, nrBlocks uint64, st *state, err error) {
	t.Helper()
	h, herr := decodeCkptHeader(b, 0)
	if herr != nil || h.bodyLen != uint64(len(b)-ckptHeaderSize) {
		return
	}
	chunk := 1 + len(b)%61 // refills at every field boundary and inside fields
	body := int64(h.bodyLen)
	var st2 *state
	var err2 error
	checkAlloc(t, "streamed decodeCkptBody", len(b), allocated(func() {
		d := newStreamDecoder(bytes.NewReader(b[ckptHeaderSize:]), body, chunk)
		st2, err2 = decodeCkptBody(h, d, 0, goldenBlock, nrBlocks)
	}))
	switch {
	case (err == nil) != (err2 == nil):
		t.Fatalf("whole: %v; streamed: %v", err, err2)
	case err != nil && crc(b[ckptHeaderSize:]) == h.bodyCRC && err.Error() != err2.Error():
		t.Fatalf("whole: %v; streamed: %v", err, err2)
	case err == nil && !bytes.Equal(st2.image(h.generation).encode(), st.image(h.generation).encode()):
		t.Fatal("streamed decoding gives another state")
	}
	if _, _, err3 := readCheckpoint(bytes.NewReader(b), 0, uint64(len(b)), goldenBlock, nrBlocks); (err == nil) != (err3 == nil) {
		t.Fatalf("whole: %v; readCheckpoint: %v", err, err3)
	}
}

func FuzzDevMeta(f *testing.F) {
	p := fuzzPool(f)
	for _, d := range p.st.devs {
		e := encoder{}
		d.meta.encode(&e)
		f.Add(e.b)
		f.Add(append(e.b, 1, 2, 3)) // trailing bytes are the caller's
	}
	big := &devMeta{id: 1, size: SectorSize, name: "big", labels: map[string]string{}}
	for i := range 8 {
		big.labels[string(rune('a'+i))] = string(bytes.Repeat([]byte{'v'}, i*20))
	}
	e := encoder{}
	big.encode(&e)
	f.Add(e.b)
	f.Fuzz(func(t *testing.T, b []byte) {
		d := decoder{b: b}
		var m *devMeta
		var err error
		checkAlloc(t, "decodeDevMeta", len(b), allocated(func() { m, err = decodeDevMeta(&d) }))
		if err != nil {
			return
		}
		if err := m.validate(); err != nil {
			t.Fatalf("accepted record does not validate: %v", err)
		}
		e := encoder{}
		m.encode(&e)
		if !bytes.Equal(e.b, b[:d.off]) {
			t.Fatalf("record re-encodes differently:\n got %x\nwant %x", e.b, b[:d.off])
		}
		if m.encodedSize() != d.off {
			t.Fatalf("encodedSize %d, encoded %d bytes", m.encodedSize(), d.off)
		}
	})
}

// TestDecodeHostileLengths feeds each decoder a header whose checksums are
// right but whose counts and lengths claim far more than the input holds.
func TestDecodeHostileLengths(t *testing.T) {
	ckpt := func(ndevs, nrefs uint64) []byte {
		b := make([]byte, ckptHeaderSize+64)
		le.PutUint32(b[0:], ckptMagic)
		le.PutUint32(b[4:], ckptVersion)
		le.PutUint64(b[8:], 1)
		le.PutUint32(b[24:], 1)
		le.PutUint64(b[32:], ndevs)
		le.PutUint64(b[40:], nrefs)
		le.PutUint64(b[48:], 64)
		le.PutUint32(b[56:], crc(b[:56]))
		le.PutUint32(b[60:], crc(b[ckptHeaderSize:]))
		return b
	}
	// One device record claiming 2^60 mappings.
	dev := func() []byte {
		e := encoder{}
		(&devMeta{id: 1, size: SectorSize, name: "d"}).encode(&e)
		e.u64(1 << 60)
		b := make([]byte, ckptHeaderSize, ckptHeaderSize+len(e.b))
		b = append(b, e.b...)
		le.PutUint32(b[0:], ckptMagic)
		le.PutUint32(b[4:], ckptVersion)
		le.PutUint64(b[8:], 1)
		le.PutUint32(b[24:], 2)
		le.PutUint64(b[32:], 1)
		le.PutUint64(b[48:], uint64(len(b)-ckptHeaderSize))
		le.PutUint32(b[56:], crc(b[:56]))
		le.PutUint32(b[60:], crc(b[ckptHeaderSize:]))
		return b
	}()
	entry := func(payload, nops uint32, body []byte) []byte {
		b := make([]byte, entryHeaderSize, entryHeaderSize+len(body))
		b = append(b, body...)
		le.PutUint32(b[0:], journalMagic)
		le.PutUint64(b[8:], 1)
		le.PutUint64(b[16:], 1)
		le.PutUint32(b[24:], payload)
		le.PutUint32(b[28:], nops)
		if end := entryHeaderSize + int(payload); end <= len(b) {
			le.PutUint32(b[4:], testSB.entryCRC(0, b[8:end]))
		}
		return b
	}
	labels := func() []byte {
		e := encoder{}
		(&devMeta{id: 1, size: SectorSize, name: "d"}).encode(&e)
		b := e.b[:len(e.b)-2]
		return le.AppendUint16(b, MaxLabels) // and no labels follow
	}()
	tests := []struct {
		name   string
		decode func() error
		in     int
	}{
		{"checkpoint devices", func() error { _, _, err := decodeCheckpoint(ckpt(1<<62, 0), 0, goldenBlock, 1024); return err }, ckptHeaderSize + 64},
		{"checkpoint refs", func() error { _, _, err := decodeCheckpoint(ckpt(0, 1<<62), 0, goldenBlock, 1024); return err }, ckptHeaderSize + 64},
		{"checkpoint mappings", func() error { _, _, err := decodeCheckpoint(dev, 0, goldenBlock, 1024); return err }, len(dev)},
		{"entry payload", func() error {
			b := entry(maxEntryPayload, 1, []byte{1})
			h, ok := decodeEntryHeader(b)
			if !ok {
				return errors.New("header refused")
			}
			if _, ok, err := decodeEntry(b, h, testSB, 0); ok || err != nil {
				return errors.New("short entry accepted")
			}
			return ErrCorrupt
		}, entryHeaderSize + 1},
		{"entry ops", func() error {
			b := entry(1, maxEntryOps, []byte{byte(opDelete)})
			h, _ := decodeEntryHeader(b)
			_, _, err := decodeEntry(b, h, testSB, 0)
			return err
		}, entryHeaderSize + 1},
		{"device labels", func() error { _, err := decodeDevMeta(&decoder{b: labels}); return err }, len(labels)},
	}
	// The measure itself must see an allocation of a hostile size.
	if got := allocated(func() { allocSink = make([]byte, 4<<20) }); got <= allocLimit(0) {
		t.Fatalf("allocated saw %d bytes of a 4 MiB allocation", got)
	}
	allocSink = nil
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			got := allocated(func() { err = tc.decode() })
			if err == nil {
				t.Fatal("accepted")
			}
			checkAlloc(t, tc.name, tc.in, got)
		})
	}
}
