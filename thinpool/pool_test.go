package thinpool

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

const (
	KiB = 1 << 10
	MiB = 1 << 20
	GiB = 1 << 30
	bs  = DefaultBlockSize
)

func TestCreateOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		ok   bool
	}{
		{"default", Options{DataSize: GiB}, true},
		{"block 1 MiB", Options{DataSize: GiB, BlockSize: MiB}, true},
		{"block too small", Options{DataSize: GiB, BlockSize: 32 * KiB}, false},
		{"block not power of two", Options{DataSize: GiB, BlockSize: 96 * KiB}, false},
		{"block too big", Options{DataSize: 4 * GiB, BlockSize: 2 * GiB}, false},
		{"zero data", Options{}, false},
		{"negative data", Options{DataSize: -1}, false},
		{"less than a block", Options{DataSize: 1000}, false},
		{"metadata too small", Options{DataSize: GiB, MetadataSize: 4096}, false},
		{"metadata too big", Options{DataSize: GiB, MetadataSize: 32 * GiB}, false},
		{"metadata 2 MiB", Options{DataSize: GiB, MetadataSize: 2 * MiB}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "p.img")
			p, err := Create(path, tc.opts)
			if !tc.ok {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid", err)
				}
				if _, err := os.Stat(path); !os.IsNotExist(err) {
					t.Fatalf("failed create left %s behind", path)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			mustCheck(t, p)
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			p, err = Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			u := p.Usage()
			want := tc.opts.BlockSize
			if want == 0 {
				want = DefaultBlockSize
			}
			if u.BlockSize != want || u.DataBlocks != uint64(tc.opts.DataSize/want) {
				t.Fatalf("usage %+v", u)
			}
		})
	}
}

func TestCreateExistingAndLocked(t *testing.T) {
	p, path := mustCreatePool(t, GiB)
	if _, err := Create(path, Options{DataSize: GiB}); !errors.Is(err, ErrExists) {
		t.Fatalf("create over existing: %v", err)
	}
	if _, err := Open(path); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	_ = p
}

func TestOpenNotAPool(t *testing.T) {
	path := filepath.Join(t.TempDir(), "junk")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open junk: %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("open missing: %v", err)
	}
}

func TestDeviceErrors(t *testing.T) {
	p, _ := mustCreatePool(t, GiB)
	mustThin(t, p, "a", 10*MiB)
	ro, err := p.Snapshot("a", "ro", true)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		do   func() error
		want error
	}{
		{"empty name", func() error { _, err := p.CreateThin("", MiB, nil); return err }, ErrInvalid},
		{"slash", func() error { _, err := p.CreateThin("a/b", MiB, nil); return err }, ErrInvalid},
		{"space", func() error { _, err := p.CreateThin("a b", MiB, nil); return err }, ErrInvalid},
		{"dot", func() error { _, err := p.CreateThin("..", MiB, nil); return err }, ErrInvalid},
		{"long", func() error { _, err := p.CreateThin(string(make([]byte, 300)), MiB, nil); return err }, ErrInvalid},
		{"duplicate", func() error { _, err := p.CreateThin("a", MiB, nil); return err }, ErrExists},
		{"zero size", func() error { _, err := p.CreateThin("z", 0, nil); return err }, ErrInvalid},
		{"odd size", func() error { _, err := p.CreateThin("z", 1000, nil); return err }, ErrInvalid},
		{"huge size", func() error { _, err := p.CreateThin("z", 1<<62, nil); return err }, ErrInvalid},
		{"bad label", func() error { _, err := p.CreateThin("z", MiB, map[string]string{"": "x"}); return err }, ErrInvalid},
		{"snapshot missing", func() error { _, err := p.Snapshot("nope", "s", false); return err }, ErrNotFound},
		{"snapshot dup", func() error { _, err := p.Snapshot("a", "ro", false); return err }, ErrExists},
		{"delete missing", func() error { return p.Delete("nope") }, ErrNotFound},
		{"rename missing", func() error { return p.Rename("nope", "x") }, ErrNotFound},
		{"rename onto existing", func() error { return p.Rename("a", "ro") }, ErrExists},
		{"rename bad", func() error { return p.Rename("a", "x/y") }, ErrInvalid},
		{"shrink", func() error { return p.Resize("a", MiB) }, ErrInvalid},
		{"resize ro", func() error { return p.Resize("ro", 20*MiB) }, ErrReadOnly},
		{"write ro", func() error { _, err := ro.WriteAt([]byte("x"), 0); return err }, ErrReadOnly},
		{"discard ro", func() error { return ro.Discard(0, bs) }, ErrReadOnly},
		{"write past end", func() error {
			d, _ := p.Device("a")
			_, err := d.WriteAt([]byte("xy"), 10*MiB-1)
			return err
		}, ErrOutOfRange},
		{"write negative", func() error {
			d, _ := p.Device("a")
			_, err := d.WriteAt([]byte("x"), -1)
			return err
		}, ErrOutOfRange},
		{"discard past end", func() error {
			d, _ := p.Device("a")
			return d.Discard(0, 11*MiB)
		}, ErrOutOfRange},
	}
	before := p.Usage()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	after := p.Usage()
	if before.TransactionID != after.TransactionID || before.UsedBlocks != after.UsedBlocks || len(p.Devices()) != 2 {
		t.Fatalf("failed calls changed the pool: %+v -> %+v", before, after)
	}
}

func TestReadWritePartialAndZeros(t *testing.T) {
	p, path := mustCreatePool(t, GiB)
	const size = 3*bs + 4096 // last block partly beyond the end
	d := mustThin(t, p, "a", size)
	if got := mustRead(t, d, 0, size); !allZero(got) {
		t.Fatal("new device does not read zeros")
	}
	mustWrite(t, d, []byte("hello"), bs+100)
	got := mustRead(t, d, bs, int(bs))
	want := make([]byte, bs)
	copy(want[100:], "hello")
	mustEqual(t, "partial block", got, want)
	// A write spanning three blocks, partial at both ends.
	span := pattern(3, int(2*bs))
	mustWrite(t, d, span, bs/2)
	mustEqual(t, "span", mustRead(t, d, bs/2, len(span)), span)
	// The last, partial block.
	tail := pattern(9, 4096)
	mustWrite(t, d, tail, 3*bs)
	mustEqual(t, "tail", mustRead(t, d, 3*bs, 4096), tail)
	// Reads past the end.
	b := make([]byte, 8192)
	n, err := d.ReadAt(b, size-4096)
	if n != 4096 || err == nil {
		t.Fatalf("read past end: n=%d err=%v", n, err)
	}
	if u, _ := d.Usage(); u.Mapped != 4 {
		t.Fatalf("mapped %d blocks, want 4", u.Mapped)
	}
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	all := mustRead(t, d, 0, size)
	q := mustReopen(t, p, path)
	d2, err := q.Device("a")
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "after reopen", mustRead(t, d2, 0, size), all)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func TestSnapshotCopyOnWrite(t *testing.T) {
	p, path := mustCreatePool(t, GiB)
	a := mustThin(t, p, "a", 8*bs)
	base := pattern(1, int(8*bs))
	mustWrite(t, a, base, 0)
	s, err := p.Snapshot("a", "s", false)
	if err != nil {
		t.Fatal(err)
	}
	used := p.Usage().UsedBlocks
	// Partial write to the snapshot copies one block.
	mustWrite(t, s, []byte("snap"), 100)
	// Whole-block write to the origin allocates without copying.
	mustWrite(t, a, pattern(2, int(bs)), 2*bs)
	if got := p.Usage().UsedBlocks; got != used+2 {
		t.Fatalf("used %d blocks, want %d", got, used+2)
	}
	wantS := append([]byte(nil), base...)
	copy(wantS[100:], "snap")
	wantA := append([]byte(nil), base...)
	copy(wantA[2*bs:], pattern(2, int(bs)))
	mustEqual(t, "snapshot", mustRead(t, s, 0, len(base)), wantS)
	mustEqual(t, "origin", mustRead(t, a, 0, len(base)), wantA)
	// Writing the copied block again does not copy again.
	mustWrite(t, s, []byte("again"), 200)
	if got := p.Usage().UsedBlocks; got != used+2 {
		t.Fatalf("second write copied again: %d blocks", got)
	}
	copy(wantS[200:], "again")
	ua, _ := a.Usage()
	us, _ := s.Usage()
	if ua.Exclusive != 2 || ua.Shared != 6 || us.Exclusive != 2 {
		t.Fatalf("usage a %+v s %+v", ua, us)
	}
	// Deleting the origin leaves the snapshot intact.
	if err := p.Delete("a"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ReadAt(make([]byte, 1), 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("read of deleted device: %v", err)
	}
	mustEqual(t, "snapshot after origin delete", mustRead(t, s, 0, len(base)), wantS)
	if got := p.Usage().UsedBlocks; got != 8 {
		t.Fatalf("after delete %d blocks used, want 8", got)
	}
	q := mustReopen(t, p, path)
	s2, _ := q.Device("s")
	mustEqual(t, "snapshot after reopen", mustRead(t, s2, 0, len(base)), wantS)
	if s2.Info().OriginName != "" || s2.Info().Origin == 0 {
		t.Fatalf("origin info %+v", s2.Info())
	}
}

func TestSnapshotDepth(t *testing.T) {
	p, path := mustCreatePool(t, GiB)
	d := mustThin(t, p, "d0", 4*bs)
	want := pattern(0, int(4*bs))
	mustWrite(t, d, want, 0)
	name := "d0"
	for i := 1; i <= 50; i++ {
		next := "d" + string(rune('0'+i%10)) + "-" + string(rune('a'+i/10))
		s, err := p.Snapshot(name, next, false)
		if err != nil {
			t.Fatal(err)
		}
		off := int64(i%4)*bs + int64(i)
		mustWrite(t, s, []byte{byte(i)}, off)
		want[off] = byte(i)
		name = next
	}
	last, _ := p.Device(name)
	mustEqual(t, "depth 50", mustRead(t, last, 0, len(want)), want)
	q := mustReopen(t, p, path)
	last, _ = q.Device(name)
	mustEqual(t, "depth 50 reopened", mustRead(t, last, 0, len(want)), want)
}

func TestDiscardAndReuse(t *testing.T) {
	p, _ := mustCreatePool(t, GiB)
	d := mustThin(t, p, "a", 16*bs)
	mustWrite(t, d, pattern(5, int(16*bs)), 0)
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	old, _ := p.Mappings("a")
	// Discard blocks 2..5 plus partial edges: only whole blocks go.
	if err := d.Discard(2*bs-10, 4*bs+20); err != nil {
		t.Fatal(err)
	}
	got := mustRead(t, d, 2*bs, int(4*bs))
	if !allZero(got) {
		t.Fatal("discarded blocks do not read zeros")
	}
	if b := mustRead(t, d, 2*bs-10, 10); allZero(b) {
		t.Fatal("discard zeroed a partial block")
	}
	// R1: before the commit the freed blocks are not reused.
	e := mustThin(t, p, "e", 16*bs) // commits: frees now allowed
	_ = e
	u := p.Usage()
	if u.UsedBlocks != 12 || u.PendingBlocks != 0 {
		t.Fatalf("usage after discard+commit: %+v", u)
	}
	// Discard without commit, then write elsewhere: the writes must not land
	// in the discarded blocks.
	if err := d.Discard(8*bs, 4*bs); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, e, pattern(6, int(16*bs)), 0)
	em, _ := p.Mappings("e")
	for _, m := range em {
		for _, o := range old {
			if o.V >= 8 && o.V < 12 && m.P < o.PEnd() && o.P < m.PEnd() {
				t.Fatalf("block freed in the open transaction reused: %v", m)
			}
		}
	}
	_ = old
}

func TestWriteZeroes(t *testing.T) {
	p, _ := mustCreatePool(t, GiB)
	d := mustThin(t, p, "a", 8*bs)
	want := pattern(7, int(8*bs))
	mustWrite(t, d, want, 0)
	if err := d.WriteZeroes(bs/2, 3*bs); err != nil {
		t.Fatal(err)
	}
	clear(want[bs/2 : bs/2+3*bs])
	mustEqual(t, "write zeroes", mustRead(t, d, 0, len(want)), want)
	if u, _ := d.Usage(); u.Mapped != 6 {
		t.Fatalf("mapped %d, want 6 (two whole blocks unmapped)", u.Mapped)
	}
	// Write zeroes over unmapped space allocates nothing.
	e := mustThin(t, p, "e", 8*bs)
	if err := e.WriteZeroes(100, 5*bs); err != nil {
		t.Fatal(err)
	}
	if u, _ := e.Usage(); u.Mapped != 0 {
		t.Fatalf("write zeroes allocated %d blocks", u.Mapped)
	}
}

func TestPoolFullAndGrow(t *testing.T) {
	p, path := mustCreatePool(t, 16*bs)
	d := mustThin(t, p, "a", GiB) // overcommitted
	mustWrite(t, d, pattern(1, int(16*bs)), 0)
	_, err := d.WriteAt([]byte("x"), 20*bs)
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("write to a full pool: %v", err)
	}
	mustEqual(t, "data intact", mustRead(t, d, 0, int(16*bs)), pattern(1, int(16*bs)))
	if err := p.Grow(32 * bs); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, d, []byte("x"), 20*bs)
	if err := p.Grow(8 * bs); !errors.Is(err, ErrInvalid) {
		t.Fatalf("shrink: %v", err)
	}
	q := mustReopen(t, p, path)
	if u := q.Usage(); u.DataBlocks != 32 || u.UsedBlocks != 17 {
		t.Fatalf("after grow+reopen %+v", u)
	}
}

func TestMetadataFullAndGrow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.img")
	p, err := Create(path, Options{DataSize: 4 * GiB, MetadataSize: 1 * MiB})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	d := mustThin(t, p, "a", 4*GiB)
	// Every other block: no two extents merge.
	var i int64
	for ; i < 65536; i += 2 {
		if _, err = d.WriteAt([]byte{1}, i*bs); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrMetadataFull) {
		t.Fatalf("filling metadata: %v after %d writes", err, i/2)
	}
	mustCheck(t, p)
	if err := p.GrowMetadata(8 * MiB); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, d, []byte{1}, i*bs)
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, p)
	if err := p.GrowMetadata(4 * GiB); !errors.Is(err, ErrInvalid) {
		t.Fatalf("grow past reserve: %v", err)
	}
}

func TestLabelsRenameResizePersist(t *testing.T) {
	p, path := mustCreatePool(t, GiB)
	if _, err := p.CreateThin("a", MiB, map[string]string{"role": "image", "digest": "sha256:00"}); err != nil {
		t.Fatal(err)
	}
	if err := p.Rename("a", "b"); err != nil {
		t.Fatal(err)
	}
	if err := p.Resize("b", 4*MiB); err != nil {
		t.Fatal(err)
	}
	if err := p.SetLabels("b", map[string]string{"role": "volume"}); err != nil {
		t.Fatal(err)
	}
	if err := p.SetReadOnly("b", true); err != nil {
		t.Fatal(err)
	}
	q := mustReopen(t, p, path)
	devs := q.Devices()
	if len(devs) != 1 {
		t.Fatalf("devices %+v", devs)
	}
	i := devs[0]
	if i.Name != "b" || i.Size != 4*MiB || !i.ReadOnly || len(i.Labels) != 1 || i.Labels["role"] != "volume" {
		t.Fatalf("info %+v", i)
	}
	if _, err := q.Device("a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old name: %v", err)
	}
}

func TestClosedPool(t *testing.T) {
	p, _ := mustCreatePool(t, GiB)
	d := mustThin(t, p, "a", MiB)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt([]byte("x"), 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	if _, err := p.CreateThin("b", MiB, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("create after close: %v", err)
	}
	if err := p.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second close: %v", err)
	}
}
