package thinpool

// Hostile pool files: metadata whose checksums are right but whose contents
// are not. Open must refuse them with ErrCorrupt or open a pool that works;
// nothing may panic, and no length read from the file may make Open
// allocate in proportion to it.

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/thinpool/thinpool/extent"
)

// clone returns a copy of s that shares nothing with it.
func (s *pageStore) clone() *pageStore {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := newPageStore()
	c.size = s.size
	for i, pg := range s.pages {
		c.pages[i] = bytes.Clone(pg)
	}
	return c
}

// currentCheckpoint returns the superblock that Open would use and the bytes
// of the checkpoint it points at.
func currentCheckpoint(t testing.TB, f File) (*superblock, []byte) {
	t.Helper()
	sb, err := readSuperblock(f)
	if err != nil {
		t.Fatalf("read superblock: %v", err)
	}
	ck := make([]byte, sb.ckptLen)
	if _, err := f.ReadAt(ck, int64(sb.metaOffset+sb.ckptOffset)); err != nil {
		t.Fatalf("read checkpoint: %v", err)
	}
	return sb, ck
}

// rewriteCheckpoint writes ck where sb's checkpoint is, with its bodyLen,
// header crc and body crc made right, and then sb with ckptLen set to match
// (and its crc right) into its slot. It returns false, writing nothing, if
// ck does not fit into the metadata area.
func rewriteCheckpoint(t testing.TB, f File, sb superblock, ck []byte) bool {
	t.Helper()
	if len(ck) < ckptHeaderSize || sb.ckptOffset+uint64(len(ck)) > sb.metaSize {
		return false
	}
	ck = bytes.Clone(ck)
	le.PutUint64(ck[48:], uint64(len(ck)-ckptHeaderSize))
	le.PutUint32(ck[56:], crc(ck[:56]))
	le.PutUint32(ck[60:], crc(ck[ckptHeaderSize:]))
	sb.ckptLen = uint64(len(ck))
	writeAt(t, f, ck, int64(sb.metaOffset+sb.ckptOffset))
	writeAt(t, f, sb.encode(), int64(sb.generation%superSlots)*metaSectorSize)
	return true
}

func writeAt(t testing.TB, f File, b []byte, off int64) {
	t.Helper()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatalf("write %d bytes at %d: %v", len(b), off, err)
	}
}

// noPanic runs fn and fails t if it panics.
func noPanic(t testing.TB, what string, fn func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("%s: panic: %v\n%s", what, r, debug.Stack())
		}
	}()
	fn()
}

// exercise uses an opened hostile pool the way a program would: Check,
// reads and writes on each device, Snapshot, Delete, a new device, Sync,
// Checkpoint and Close. Errors are allowed (a hostile pool may be full, or
// fail); a panic is not, and neither is an error that Check finds in a pool
// that Open accepted. It returns whether Close succeeded.
func exercise(t *testing.T, p *Pool, rng *rand.Rand, what string) (closed bool) {
	t.Helper()
	noPanic(t, what, func() {
		r, err := p.Check()
		switch {
		case err != nil:
			t.Errorf("%s: check: %v", what, err)
		case len(r.Errors) > 0:
			t.Errorf("%s: Open accepted a pool in which Check finds %q", what, r.Errors)
		}
		devs := p.Devices()
		for i, di := range devs {
			if i == 4 {
				break
			}
			th, err := p.DeviceByID(di.ID)
			if err != nil {
				continue
			}
			blocks := (di.Size + p.bs - 1) / p.bs
			off := rng.Int64N(blocks) * p.bs
			buf := make([]byte, min(2*p.bs, di.Size-off))
			_, _ = th.ReadAt(buf, off)
			_, _ = th.WriteAt(pattern(byte(i), len(buf)/2+1), off+int64(len(buf))/4)
			_ = th.Discard(off, p.bs)
		}
		if len(devs) > 0 {
			// A snapshot adds a reference to each block of its origin and
			// a delete of either drops them again: a block with fewer
			// references than mappings gets freed while still mapped.
			origin := devs[rng.IntN(len(devs))].Name
			_, _ = p.Snapshot(origin, "hostile-snap", false)
			victim := []string{origin, "hostile-snap", devs[rng.IntN(len(devs))].Name}[rng.IntN(3)]
			_ = p.Delete(victim)
			_ = p.Delete(devs[rng.IntN(len(devs))].Name)
		}
		_ = p.Sync()
		if th, err := p.CreateThin("hostile-new", 4*p.bs, nil); err == nil {
			_, _ = th.WriteAt(pattern(9, int(p.bs)), p.bs/2)
		}
		_ = p.Checkpoint()
		if err := p.Close(); err == nil {
			closed = true
		}
	})
	return closed
}

// reopen opens a pool that exercise closed: whatever Open accepted and
// the pool then wrote must open again and pass Check without errors.
func reopen(t *testing.T, s *pageStore, what string) {
	t.Helper()
	noPanic(t, what+" (reopened)", func() {
		p, err := OpenFile(s.open())
		if err != nil {
			t.Errorf("%s: a pool that closed cleanly does not reopen: %v", what, err)
			return
		}
		defer p.Close()
		r, err := p.Check()
		if err != nil || len(r.Errors) > 0 {
			t.Errorf("%s: reopened pool: check: %v %q", what, err, r.Errors)
		}
	})
}

// openHostile opens the pool in s, requires a refusal to be ErrCorrupt, and
// exercises (then reopens) a pool that opens. If maxAlloc is not 0, Open
// may allocate at most that much. It reports whether the pool opened.
func openHostile(t *testing.T, s *pageStore, rng *rand.Rand, what string, maxAlloc uint64) bool {
	t.Helper()
	var p *Pool
	var err error
	got := allocated(func() {
		noPanic(t, what+" (open)", func() { p, err = OpenFile(s.open()) })
	})
	if maxAlloc > 0 && got > maxAlloc {
		t.Errorf("%s: open allocated %d bytes (%v)", what, got, err)
	}
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: open: %v is not ErrCorrupt", what, err)
		}
		return false
	}
	if exercise(t, p, rng, what) {
		reopen(t, s, what)
	}
	return true
}

// refBase is a closed pool in memory whose checkpoint holds device "a"
// mapping block 0 alone, and devices "c" and its snapshot "s" sharing
// block 1:
//
//	reference runs: [0, 1) count 1, [1, 2) count 2
func refBase(t *testing.T) *pageStore {
	s := newPageStore()
	p, err := CreateFile(s.open(), Options{DataSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	a := mustThin(t, p, "a", 4*DefaultBlockSize)
	mustWrite(t, a, pattern(1, DefaultBlockSize), 0)
	c := mustThin(t, p, "c", 4*DefaultBlockSize)
	mustWrite(t, c, pattern(2, DefaultBlockSize), 0)
	if _, err := p.Snapshot("c", "s", false); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestOpenRefTable is bug 4: a checkpoint with valid checksums whose
// reference table gives a mapped block fewer references than mappings must
// be refused at Open, since the block is free space to the allocator and a
// Snapshot then a Delete of the device would free it a second time (it used
// to panic in releaseFrees). More references than mappings is a leak: the
// pool opens, Check reports it and Repair fixes it.
func TestOpenRefTable(t *testing.T) {
	base := refBase(t)
	tests := []struct {
		name    string
		edit    func(refs *extent.RefCounts)
		corrupt bool
		leaked  uint64 // blocks that Check reports as leaked
	}{
		{name: "run of a mapped block removed", edit: func(r *extent.RefCounts) { r.Set(0, 1, 0) }, corrupt: true},
		{name: "shared block counted once", edit: func(r *extent.RefCounts) { r.Set(1, 1, 1) }, corrupt: true},
		{name: "no reference table", edit: func(r *extent.RefCounts) { r.Set(0, 2, 0) }, corrupt: true},
		{name: "extra reference to a mapped block", edit: func(r *extent.RefCounts) { r.Set(0, 1, 2) }},
		{name: "references to unmapped blocks", edit: func(r *extent.RefCounts) { r.Set(10, 3, 1) }, leaked: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := base.clone()
			f := s.open()
			sb, ck := currentCheckpoint(t, f)
			st, gen, err := decodeCheckpoint(ck, 0, uint64(sb.blockSize), sb.nrDataBlocks)
			if err != nil {
				t.Fatal(err)
			}
			tc.edit(st.memRefs())
			if !rewriteCheckpoint(t, f, *sb, st.image(gen).encode()) {
				t.Fatal("checkpoint does not fit")
			}
			var p *Pool
			noPanic(t, "open", func() { p, err = OpenFile(s.open()) })
			if tc.corrupt {
				var ce *CorruptionError
				if errors.As(err, &ce) && errors.Is(err, ErrCorrupt) {
					t.Logf("refused: %v", err)
					return
				}
				t.Errorf("open: got %v, want a *CorruptionError", err)
				if err != nil {
					return
				}
				// Show what accepting it leads to.
				noPanic(t, "snapshot and delete", func() {
					if _, err := p.Snapshot("a", "a2", false); err != nil {
						t.Logf("snapshot: %v", err)
					}
					if err := p.Delete("a"); err != nil {
						t.Logf("delete: %v", err)
					}
				})
				return
			}
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer p.Close()
			r, err := p.Check()
			if err != nil || len(r.Errors) > 0 || len(r.Leaks) == 0 || r.LeakedBlocks != tc.leaked {
				t.Fatalf("check: err %v, errors %q, leaks %q (%d blocks), want leaks of %d blocks",
					err, r.Errors, r.Leaks, r.LeakedBlocks, tc.leaked)
			}
			noPanic(t, "snapshot and delete", func() {
				if _, err := p.Snapshot("a", "a2", false); err != nil {
					t.Fatalf("snapshot: %v", err)
				}
				for _, name := range []string{"a", "c", "a2"} {
					if err := p.Delete(name); err != nil {
						t.Fatalf("delete %q: %v", name, err)
					}
				}
			})
			if _, err := p.Repair(); err != nil {
				t.Fatalf("repair: %v", err)
			}
			mustCheck(t, p)
		})
	}
}

// TestReleaseDoubleFree: a block freed while it is already free (a state
// that Open no longer lets in) puts the pool in the failed state; it used to
// panic in releaseFrees.
func TestReleaseDoubleFree(t *testing.T) {
	p, err := CreateFile(newPageStore().open(), Options{DataSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	a := mustThin(t, p, "a", 4*DefaultBlockSize)
	mustWrite(t, a, pattern(1, DefaultBlockSize), 0)
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	m, _ := p.Mappings("a")
	p.mu.Lock()
	if err := p.free.Add(m[0].P, 1); err != nil { // free, and still mapped
		t.Fatal(err)
	}
	p.mu.Unlock()
	var delErr error
	noPanic(t, "delete", func() { delErr = p.Delete("a") })
	if !errors.Is(delErr, ErrFailed) || !errors.Is(delErr, ErrCorrupt) {
		t.Fatalf("the delete that freed a free block: %v, want ErrFailed and ErrCorrupt", delErr)
	}
	_, err = p.CreateThin("b", DefaultBlockSize, nil)
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("create after a double free: %v, want ErrFailed", err)
	}
	p.mu.RLock()
	failed := p.failed
	p.mu.RUnlock()
	if !errors.Is(failed, ErrCorrupt) {
		t.Fatalf("failed state %v is not ErrCorrupt", failed)
	}
	t.Logf("after the double free: %v", err)
	p.Close() // not deferred: after a panic under p.mu it would hang
}

// TestSnapshotCountOverflow: a device that maps one block twice (a
// checkpoint may say so), with a count one below the maximum, cannot be
// snapshotted; checking each extent before any increment let the second
// increment overflow and panic.
func TestSnapshotCountOverflow(t *testing.T) {
	s := newPageStore()
	p, err := CreateFile(s.open(), Options{DataSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	a := mustThin(t, p, "a", 4*DefaultBlockSize)
	mustWrite(t, a, pattern(1, DefaultBlockSize), 0)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	f := s.open()
	sb, ck := currentCheckpoint(t, f)
	st, gen, err := decodeCheckpoint(ck, 0, uint64(sb.blockSize), sb.nrDataBlocks)
	if err != nil {
		t.Fatal(err)
	}
	d := st.names["a"]
	m, _ := d.mem().Find(0)
	d.mem().Insert(extent.Mapping{V: 2, P: m.P, Len: 1}, nil) // block m.P twice
	st.memRefs().Set(m.P, 1, ^uint32(0)-1)
	if !rewriteCheckpoint(t, f, *sb, st.image(gen).encode()) {
		t.Fatal("checkpoint does not fit")
	}
	p, err = OpenFile(s.open())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	noPanic(t, "snapshot", func() {
		if _, err := p.Snapshot("a", "a2", false); err == nil {
			t.Fatal("snapshot overflowed a reference count")
		}
	})
	p.mu.RLock()
	got := p.st.memRefs().Get(m.P)
	p.mu.RUnlock()
	if got != ^uint32(0)-1 {
		t.Fatalf("refused snapshot left a count of %d", got)
	}
	a, _ = p.Device("a")
	mustWrite(t, a, pattern(2, 10), 0) // the pool still works
	mustCheckLeaky(t, p)
	p.Close() // not deferred: after a panic under p.mu it would hang
}

// mustCheckLeaky fails the test if Check finds errors; leaks are allowed.
func mustCheckLeaky(t testing.TB, p *Pool) {
	t.Helper()
	r, err := p.Check()
	if err != nil || len(r.Errors) > 0 {
		t.Fatalf("check: %v %q", err, r.Errors)
	}
}

// hostileRounds returns THINPOOL_HOSTILE_ROUNDS or def.
func hostileRounds(t *testing.T, def int) int {
	s := os.Getenv("THINPOOL_HOSTILE_ROUNDS")
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("THINPOOL_HOSTILE_ROUNDS=%q: want a count", s)
	}
	return n
}

// hostileBase is a closed pool in memory with several devices, snapshots,
// labels, holes, shared and copied blocks, and a reference table of runs
// with counts from 1 to 3.
func hostileBase(t *testing.T) *pageStore {
	s := newPageStore()
	p, err := CreateFile(s.open(), Options{DataSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	runGoldenScript(t, p, goldenV1Script)
	bs := p.bs
	base, _ := p.Device("base")
	for _, v := range []int64{3, 4, 6} {
		mustWrite(t, base, pattern(byte(v), int(bs)), v*bs)
	}
	if _, err := p.SnapshotLabeled("snap-rw", "snap-2", false, map[string]string{"k": "v", "z": ""}); err != nil {
		t.Fatal(err)
	}
	s2, _ := p.Device("snap-2")
	mustWrite(t, s2, pattern(7, 100), 3*bs+5)
	if err := s2.Discard(6*bs, bs); err != nil {
		t.Fatal(err)
	}
	vol := mustThin(t, p, "vol", 64*bs)
	for _, v := range []int64{0, 1, 2, 9, 10, 30, 63} {
		mustWrite(t, vol, pattern(byte(v), int(bs)), v*bs)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	return s
}

// ckptFields locates the parts of an encoded checkpoint: its device
// records, the mapping count after each, every mapping and every
// reference run, by offset. The mutations keep it up to date.
type ckptFields struct {
	devs, counts, maps, runs []int
}

func locate(t *testing.T, ck []byte, sb *superblock) *ckptFields {
	st, _, err := decodeCheckpoint(ck, 0, uint64(sb.blockSize), sb.nrDataBlocks)
	if err != nil {
		t.Fatal(err)
	}
	img := st.image(0)
	lf := &ckptFields{}
	off := ckptHeaderSize
	for _, d := range img.devs {
		lf.devs = append(lf.devs, off)
		off += d.meta.encodedSize()
		lf.counts = append(lf.counts, off)
		off += devHeaderSize
		for range d.mem().Len() {
			lf.maps = append(lf.maps, off)
			off += mappingSize
		}
	}
	for range img.refs.Len() {
		lf.runs = append(lf.runs, off)
		off += refRunSize
	}
	if off != len(ck) {
		t.Fatalf("located %d bytes of a %d-byte checkpoint", off, len(ck))
	}
	return lf
}

// splice replaces del bytes at off of b with ins, and moves the located
// offsets after off along.
func (lf *ckptFields) splice(b []byte, off, del int, ins []byte) []byte {
	out := slices.Concat(b[:off], ins, b[off+del:])
	for _, s := range []*[]int{&lf.devs, &lf.counts, &lf.maps, &lf.runs} {
		for i, o := range *s {
			if o > off || (o == off && del == 0) {
				(*s)[i] = o + len(ins) - del
			}
		}
	}
	return out
}

// interesting returns a value to put in place of v.
func interesting(rng *rand.Rand, v uint64) uint64 {
	switch rng.IntN(9) {
	case 0:
		return 0
	case 1:
		return 1
	case 2:
		return v + 1
	case 3:
		return v - 1
	case 4:
		return v * 2
	case 5:
		return ^uint64(0)
	case 6:
		return uint64(^uint32(0))
	case 7:
		return 1 << rng.IntN(64)
	}
	return rng.Uint64N(1024)
}

func pick(rng *rand.Rand, s []int) (int, bool) {
	if len(s) == 0 {
		return 0, false
	}
	return s[rng.IntN(len(s))], true
}

// clip forgets the parts that do not fit in n bytes any more.
func (lf *ckptFields) clip(n int) {
	for _, f := range []struct {
		s    *[]int
		size int
	}{{&lf.devs, 1}, {&lf.counts, devHeaderSize}, {&lf.maps, mappingSize}, {&lf.runs, refRunSize}} {
		*f.s = slices.DeleteFunc(*f.s, func(o int) bool { return o+f.size > n })
	}
}

// mutate changes ck without decoding it and says how.
func mutate(rng *rand.Rand, ck []byte, lf *ckptFields) ([]byte, string) {
	b := bytes.Clone(ck)
	lf.clip(len(b))
	body := len(b) - ckptHeaderSize
	switch k := rng.IntN(12); k {
	case 0:
		i := ckptHeaderSize + rng.IntN(body)
		b[i] ^= 1 << rng.IntN(8)
		return b, fmt.Sprintf("flip a bit of byte %d", i)
	case 1:
		i := ckptHeaderSize + rng.IntN(body)
		b[i] = byte(rng.Uint32())
		return b, fmt.Sprintf("overwrite byte %d", i)
	case 2: // a field of a mapping: v, p or len
		o, ok := pick(rng, lf.maps)
		if !ok {
			return b, "none"
		}
		o += 8 * rng.IntN(3)
		le.PutUint64(b[o:], interesting(rng, le.Uint64(b[o:])))
		return b, fmt.Sprintf("mapping field at %d", o)
	case 3: // a mapping's p becomes the p of another mapping or of a run
		o, ok := pick(rng, lf.maps)
		if !ok {
			return b, "none"
		}
		src := o + 8
		if r, ok := pick(rng, lf.runs); ok && rng.IntN(2) == 0 {
			src = r
		} else if m, ok := pick(rng, lf.maps); ok {
			src = m + 8
		}
		copy(b[o+8:o+16], b[src:src+8])
		return b, fmt.Sprintf("mapping at %d aliases the block at %d", o, src)
	case 4: // a run's p or len
		o, ok := pick(rng, lf.runs)
		if !ok {
			return b, "none"
		}
		o += 8 * rng.IntN(2)
		le.PutUint64(b[o:], interesting(rng, le.Uint64(b[o:])))
		return b, fmt.Sprintf("run field at %d", o)
	case 5: // a run's count
		o, ok := pick(rng, lf.runs)
		if !ok {
			return b, "none"
		}
		c := le.Uint32(b[o+16:])
		c = []uint32{c + 1, c - 1, 1, ^uint32(0), ^uint32(0) - 1, 2 * c}[rng.IntN(6)]
		le.PutUint32(b[o+16:], c)
		return b, fmt.Sprintf("run count at %d = %d", o, c)
	case 6, 7: // drop or duplicate a run
		if len(lf.runs) == 0 {
			return b, "none"
		}
		i := rng.IntN(len(lf.runs))
		o := lf.runs[i]
		lf.runs = slices.Delete(lf.runs, i, i+1)
		if k == 6 {
			le.PutUint64(b[40:], le.Uint64(b[40:])-1)
			return lf.splice(b, o, refRunSize, nil), fmt.Sprintf("drop run at %d", o)
		}
		le.PutUint64(b[40:], le.Uint64(b[40:])+1)
		run := slices.Clone(b[o : o+refRunSize])
		b = lf.splice(b, o, 0, run)
		lf.runs = append(lf.runs, o, o+refRunSize)
		slices.Sort(lf.runs)
		return b, fmt.Sprintf("duplicate run at %d", o)
	case 8, 9: // drop or duplicate a mapping
		if len(lf.maps) == 0 {
			return b, "none"
		}
		i := rng.IntN(len(lf.maps))
		o := lf.maps[i]
		c := 0 // the count field of o's device: the last before it
		for _, x := range lf.counts {
			if x < o {
				c = x
			}
		}
		lf.maps = slices.Delete(lf.maps, i, i+1)
		if k == 8 {
			le.PutUint64(b[c:], le.Uint64(b[c:])-1)
			return lf.splice(b, o, mappingSize, nil), fmt.Sprintf("drop mapping at %d", o)
		}
		le.PutUint64(b[c:], le.Uint64(b[c:])+1)
		m := slices.Clone(b[o : o+mappingSize])
		b = lf.splice(b, o, 0, m)
		lf.maps = append(lf.maps, o, o+mappingSize)
		slices.Sort(lf.maps)
		return b, fmt.Sprintf("duplicate mapping at %d", o)
	case 10: // a header field: tid, nextID, nDevs, nRefs
		o := []int{16, 24, 32, 40}[rng.IntN(4)]
		if o == 24 {
			le.PutUint32(b[o:], uint32(interesting(rng, uint64(le.Uint32(b[o:])))))
		} else {
			le.PutUint64(b[o:], interesting(rng, le.Uint64(b[o:])))
		}
		return b, fmt.Sprintf("header field at %d", o)
	default: // cut or extend the body
		if n := rng.IntN(64); rng.IntN(2) == 0 && n < body {
			return b[:len(b)-n], fmt.Sprintf("cut %d bytes", n)
		} else {
			extra := make([]byte, n)
			for i := range extra {
				extra[i] = byte(rng.Uint32())
			}
			return append(b, extra...), fmt.Sprintf("append %d bytes", n)
		}
	}
}

// TestHostileCheckpoint opens a real pool whose checkpoint was mutated
// byte by byte and field by field, with the checksums and lengths made
// right, and uses what opens. Nothing may panic.
func TestHostileCheckpoint(t *testing.T) {
	base := hostileBase(t)
	sb, ck := currentCheckpoint(t, base.open())
	rounds := hostileRounds(t, 400)
	seed := uint64(0x7468696e)
	opened := 0
	for round := range rounds {
		rng := rand.New(rand.NewPCG(seed, uint64(round)))
		lf := locate(t, ck, sb)
		b, how := ck, ""
		for i := range 1 + rng.IntN(3) {
			var step string
			b, step = mutate(rng, b, lf)
			if i > 0 {
				how += "; "
			}
			how += step
		}
		s := base.clone()
		if !rewriteCheckpoint(t, s.open(), *sb, b) {
			continue
		}
		if openHostile(t, s, rng, fmt.Sprintf("round %d (%s)", round, how), 0) {
			opened++
		}
		if t.Failed() {
			t.Fatalf("round %d failed: seed %#x, %s", round, seed, how)
		}
	}
	t.Logf("%d rounds, %d opened", rounds, opened)
}

// TestHostileSuperblock does the same with the fields of the current
// superblock, its crc made right.
func TestHostileSuperblock(t *testing.T) {
	base := hostileBase(t)
	f := base.open()
	sb, _ := readSuperblock(f)
	slot := int64(sb.generation%superSlots) * metaSectorSize
	enc := sb.encode()
	fields := []struct {
		name string
		off  int
		size int
	}{
		{"flags", 12, 4}, {"generation", 16, 8}, {"blockSize", 40, 4}, {"reserved", 44, 4},
		{"nrDataBlocks", 48, 8}, {"dataOffset", 56, 8}, {"metaOffset", 64, 8}, {"metaSize", 72, 8},
		{"metaReserve", 80, 8}, {"journalSize", 88, 8}, {"ckptOffset", 96, 8}, {"ckptLen", 104, 8},
	}
	rounds := hostileRounds(t, 200)
	seed := uint64(0x5342)
	opened := 0
	for round := range rounds {
		rng := rand.New(rand.NewPCG(seed, uint64(round)))
		b := bytes.Clone(enc)
		how := ""
		n := 1 + rng.IntN(2)
		if rng.IntN(6) == 0 {
			n--
			// The largest metadata area and checkpoint the reserve allows:
			// a valid superblock that claims about 1 GiB.
			le.PutUint64(b[72:], sb.metaReserve)
			le.PutUint64(b[104:], sb.metaReserve-sb.ckptOffset)
			how += "metaSize=metaReserve ckptLen=metaReserve-ckptOffset "
		}
		for range n {
			fl := fields[rng.IntN(len(fields))]
			var v uint64
			if fl.size == 4 {
				v = uint64(uint32(interesting(rng, uint64(le.Uint32(b[fl.off:])))))
				le.PutUint32(b[fl.off:], uint32(v))
			} else {
				cur := le.Uint64(b[fl.off:])
				switch rng.IntN(3) {
				case 0:
					v = interesting(rng, cur)
				case 1: // keep alignment more often than chance
					v = cur + uint64(rng.IntN(9)-4)*metaSectorSize
				default: // the value of another field, sizes mixed up
					v = le.Uint64(b[48+8*rng.IntN(8):])
				}
				le.PutUint64(b[fl.off:], v)
			}
			how += fmt.Sprintf("%s=%#x ", fl.name, v)
		}
		le.PutUint32(b[superblockSize-4:], crc(b[:superblockSize-4]))
		s := base.clone()
		writeAt(t, s.open(), b, slot)
		if rng.IntN(4) > 0 { // mostly, the older slot cannot stand in
			writeAt(t, s.open(), make([]byte, metaSectorSize), metaSectorSize-slot)
			how += "(older slot erased)"
		}
		if openHostile(t, s, rng, fmt.Sprintf("round %d (%s)", round, how), 16<<20) {
			opened++
		}
		if t.Failed() {
			t.Fatalf("round %d failed: seed %#x, %s", round, seed, how)
		}
	}
	t.Logf("%d rounds, %d opened", rounds, opened)
}

// TestOpenHugeLengths is bug 7: a superblock and checkpoint header that
// claim a checkpoint or journal of gigabytes (checksums right, the file
// really that large, as holes) must be refused without allocating anything
// like the claimed length. Open used to allocate and read all of it.
func TestOpenHugeLengths(t *testing.T) {
	tests := []struct {
		name string
		// craft edits the closed pool in f whose superblock is sb and
		// checkpoint ck, and returns the length it makes Open believe.
		craft func(t *testing.T, f File, sb *superblock, ck []byte) uint64
	}{
		{"checkpoint of 2 GiB with zero counts", func(t *testing.T, f File, sb *superblock, ck []byte) uint64 {
			h := slices.Clone(ck[:ckptHeaderSize])
			le.PutUint64(h[32:], 0)
			le.PutUint64(h[40:], 0)
			return hugeCheckpoint(t, f, sb, h)
		}},
		{"real checkpoint claiming 2 GiB", func(t *testing.T, f File, sb *superblock, ck []byte) uint64 {
			return hugeCheckpoint(t, f, sb, ck[:ckptHeaderSize])
		}},
		{"mapping count of 2 GiB", func(t *testing.T, f File, sb *superblock, ck []byte) uint64 {
			e := encoder{b: slices.Clone(ck[:ckptHeaderSize])}
			(&devMeta{id: 1, size: MaxDeviceSize, name: "d"}).encode(&e)
			n := (sb.metaReserve - sb.ckptOffset - uint64(len(e.b)) - devHeaderSize) / mappingSize
			e.u64(n) // as many as the claimed length holds; they read as zeros
			le.PutUint32(e.b[24:], 2)
			le.PutUint64(e.b[32:], 1)
			le.PutUint64(e.b[40:], 0)
			writeAt(t, f, e.b[ckptHeaderSize:], int64(sb.metaOffset+sb.ckptOffset+ckptHeaderSize))
			return hugeCheckpoint(t, f, sb, e.b[:ckptHeaderSize])
		}},
		{"journal of 1 GiB", func(t *testing.T, f File, sb *superblock, ck []byte) uint64 {
			// The checkpoint moves past a 1 GiB journal whose first entry
			// claims nearly all of it; its crc is wrong, so the old reader
			// took it for a torn entry and wrote 1 GiB of zeros over it.
			sb.metaSize = sb.metaReserve
			sb.journalSize = 1 << 30
			sb.ckptOffset = sb.journalSize
			writeAt(t, f, ck, int64(sb.metaOffset+sb.ckptOffset))
			h := make([]byte, entryHeaderSize)
			le.PutUint32(h[0:], journalMagic)
			le.PutUint64(h[8:], sb.generation)
			le.PutUint64(h[16:], le.Uint64(ck[16:])+1) // the checkpoint's tid + 1
			le.PutUint32(h[24:], uint32(sb.journalSize-metaSectorSize))
			le.PutUint32(h[28:], 1)
			writeAt(t, f, h, int64(sb.metaOffset))
			writeAt(t, f, sb.encode(), int64(sb.generation%superSlots)*metaSectorSize)
			return sb.journalSize
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "pool.img")
			// metaReserve = 4 × 512 MiB = 2 GiB: the superblock may claim
			// that much, and the file holds it (as holes).
			p, err := Create(path, Options{DataSize: 64 << 20, MetadataSize: 512 << 20})
			if err != nil {
				t.Fatal(err)
			}
			a := mustThin(t, p, "a", 64*DefaultBlockSize)
			mustWrite(t, a, pattern(1, 4*DefaultBlockSize), 0)
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			f, err := openLocked(path, os.O_RDWR)
			if err != nil {
				t.Fatal(err)
			}
			sb, ck := currentCheckpoint(t, f)
			claimed := tc.craft(t, f, sb, ck)
			// Only the crafted superblock is valid: the other slot must not win.
			writeAt(t, f, make([]byte, metaSectorSize), int64((sb.generation+1)%superSlots)*metaSectorSize)
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}

			var q *Pool
			start := time.Now()
			got := allocated(func() {
				noPanic(t, "open", func() { q, err = Open(path) })
			})
			elapsed := time.Since(start)
			if err == nil {
				q.Close()
				t.Errorf("open accepted a length of %d", claimed)
			} else if !errors.Is(err, ErrCorrupt) {
				t.Errorf("open: %v is not ErrCorrupt", err)
			}
			t.Logf("claimed %d bytes; open allocated %d bytes in %v: %v", claimed, got, elapsed, err)
			if limit := uint64(16 << 20); got > limit || got > claimed/64 {
				t.Errorf("open allocated %d bytes for a claimed length of %d", got, claimed)
			}
		})
	}
}

// hugeCheckpoint writes the checkpoint header h at sb's checkpoint, with
// the length of the rest of the metadata reserve, and a superblock whose
// metaSize is the whole reserve. It returns the claimed length.
func hugeCheckpoint(t *testing.T, f File, sb *superblock, h []byte) uint64 {
	t.Helper()
	h = slices.Clone(h)
	sb.metaSize = sb.metaReserve
	sb.ckptLen = sb.metaSize - sb.ckptOffset
	le.PutUint64(h[48:], sb.ckptLen-ckptHeaderSize)
	le.PutUint32(h[56:], crc(h[:56]))
	writeAt(t, f, h, int64(sb.metaOffset+sb.ckptOffset))
	writeAt(t, f, sb.encode(), int64(sb.generation%superSlots)*metaSectorSize)
	return sb.ckptLen
}

// journalEntries returns the file offset and length (padding included) of
// each entry that Open would replay from f.
func journalEntries(t *testing.T, f File, sb *superblock) (offs, sizes []int64) {
	t.Helper()
	for off := int64(0); off+metaSectorSize <= int64(sb.journalSize); {
		head := make([]byte, entryHeaderSize)
		if _, err := f.ReadAt(head, int64(sb.metaOffset)+off); err != nil {
			t.Fatal(err)
		}
		h, ok := decodeEntryHeader(head)
		if !ok || h.epoch != sb.generation {
			break
		}
		offs, sizes = append(offs, int64(sb.metaOffset)+off), append(sizes, int64(h.size()))
		off += int64(h.size())
	}
	return offs, sizes
}

// TestHostileJournal mutates the operations of the journal entries that
// follow the checkpoint, with the entry crc made right: each entry must
// apply or be refused as corrupt, and the pool that opens must work.
func TestHostileJournal(t *testing.T) {
	base := newPageStore()
	f := base.open()
	p, err := CreateFile(f, Options{DataSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	runGoldenScript(t, p, goldenV1Script) // leaves every kind of operation in the journal
	f.abandon()
	sb, err := readSuperblock(base.open())
	if err != nil {
		t.Fatal(err)
	}
	offs, sizes := journalEntries(t, base.open(), sb)
	if len(offs) < 5 {
		t.Fatalf("%d journal entries", len(offs))
	}
	rounds := hostileRounds(t, 300)
	seed := uint64(0x4a4e)
	opened := 0
	for round := range rounds {
		rng := rand.New(rand.NewPCG(seed, uint64(round)))
		s := base.clone()
		sf := s.open()
		i := rng.IntN(len(offs))
		e := make([]byte, sizes[i])
		if _, err := sf.ReadAt(e, offs[i]); err != nil {
			t.Fatal(err)
		}
		payLen := int(le.Uint32(e[24:]))
		pay := e[entryHeaderSize : entryHeaderSize+payLen]
		var how string
		switch rng.IntN(5) {
		case 0:
			j := rng.IntN(payLen)
			pay[j] = byte(rng.Uint32())
			how = fmt.Sprintf("entry %d byte %d", i, j)
		case 1:
			j := rng.IntN(max(1, payLen-7))
			v := interesting(rng, le.Uint64(pay[j:]))
			le.PutUint64(pay[j:], v) // may cut into the padding: the crc covers payLen only
			how = fmt.Sprintf("entry %d u64 at %d = %#x", i, j, v)
		case 2:
			j := rng.IntN(max(1, payLen-3))
			v := uint32(interesting(rng, uint64(le.Uint32(pay[j:]))))
			le.PutUint32(pay[j:], v)
			how = fmt.Sprintf("entry %d u32 at %d = %#x", i, j, v)
		case 3: // the operations of another entry
			k := rng.IntN(len(offs))
			other := make([]byte, sizes[k])
			if _, err := sf.ReadAt(other, offs[k]); err != nil {
				t.Fatal(err)
			}
			n := min(int(le.Uint32(other[24:])), len(e)-entryHeaderSize)
			copy(e[entryHeaderSize:], other[entryHeaderSize:entryHeaderSize+n])
			le.PutUint32(e[24:], uint32(n))
			le.PutUint32(e[28:], le.Uint32(other[28:]))
			payLen = n
			how = fmt.Sprintf("entry %d holds the operations of entry %d", i, k)
		default:
			c := uint32(interesting(rng, uint64(le.Uint32(e[28:]))))
			le.PutUint32(e[28:], c)
			how = fmt.Sprintf("entry %d nOps = %d", i, c)
		}
		// A consistent checksum: sealed, at the entry's own journal offset.
		le.PutUint32(e[4:], sb.entryCRC(offs[i]-int64(sb.metaOffset), e[8:entryHeaderSize+payLen]))
		writeAt(t, sf, e, offs[i])
		if openHostile(t, s, rng, fmt.Sprintf("round %d (%s)", round, how), 0) {
			opened++
		}
		if t.Failed() {
			t.Fatalf("round %d failed: seed %#x, %s", round, seed, how)
		}
	}
	t.Logf("%d rounds, %d opened", rounds, opened)
}

// TestLastDeviceID: no device may take id 2^32 − 1, since nextID must stay
// above every id. A checkpoint holding one (with nextID wrapped to 0) used
// to open, and a journalled create of it wrapped nextID to 0, so that the
// next checkpoint broke the rule.
func TestLastDeviceID(t *testing.T) {
	s := newPageStore()
	p, err := CreateFile(s.open(), Options{DataSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	mustThin(t, p, "a", DefaultBlockSize)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	f := s.open()
	sb, ck := currentCheckpoint(t, f)
	ck = slices.Clone(ck)
	le.PutUint32(ck[ckptHeaderSize:], ^uint32(0)) // the id of the one device
	le.PutUint32(ck[24:], 0)                      // nextID, wrapped
	if !rewriteCheckpoint(t, f, *sb, ck) {
		t.Fatal("checkpoint does not fit")
	}
	if _, err := OpenFile(s.open()); !errors.Is(err, ErrCorrupt) {
		t.Errorf("open of a checkpoint with device id 2^32-1: %v, want ErrCorrupt", err)
	}

	st := newState(DefaultBlockSize, 16)
	o := op{kind: opCreate, dev: ^DevID(0), meta: &devMeta{id: ^DevID(0), size: SectorSize, name: "last"}}
	if err := st.apply(&o, nil); err == nil {
		t.Errorf("create of device id 2^32-1 applied; next id is now %d", st.nextID)
	}
}
