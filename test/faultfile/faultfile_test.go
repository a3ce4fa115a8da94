package faultfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
)

// fill returns n bytes of value v.
func fill(n int, v byte) []byte { return bytes.Repeat([]byte{v}, n) }

// mustRead reads n bytes at off and fails the test on any error but EOF.
func mustRead(t *testing.T, f interface {
	ReadAt([]byte, int64) (int, error)
}, off int64, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	k, err := f.ReadAt(b, off)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("ReadAt(%d, %d): %v", off, n, err)
	}
	return b[:k]
}

func mustWrite(t *testing.T, m *Mem, b []byte, off int64) {
	t.Helper()
	if n, err := m.WriteAt(b, off); err != nil || n != len(b) {
		t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", len(b), off, n, err)
	}
}

func requireBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: got %d bytes %x..., want %d bytes %x...", what, len(got), head(got), len(want), head(want))
	}
}

func head(b []byte) []byte { return b[:min(len(b), 16)] }

func requireSize(t *testing.T, f interface{ Size() (int64, error) }, want int64) {
	t.Helper()
	if got, err := f.Size(); err != nil || got != want {
		t.Fatalf("Size() = %d, %v; want %d", got, err, want)
	}
}

// TestMemReadAt checks that Mem reads like os.File: zeros where nothing was
// written, short reads with io.EOF at the end.
func TestMemReadAt(t *testing.T) {
	m := NewMem()
	requireSize(t, m, 0)
	if n, err := m.ReadAt(make([]byte, 10), 0); n != 0 || err != io.EOF {
		t.Fatalf("read of empty file = %d, %v; want 0, EOF", n, err)
	}
	if n, err := m.ReadAt(nil, 100); n != 0 || err != nil {
		t.Fatalf("empty read = %d, %v; want 0, nil", n, err)
	}
	mustWrite(t, m, []byte("hello"), 10000)
	requireSize(t, m, 10005)

	tests := []struct {
		name    string
		off     int64
		n       int
		want    []byte
		wantErr error
	}{
		{"hole before", 0, 8, make([]byte, 8), nil},
		{"across hole and data", 9998, 7, append(make([]byte, 2), "hello"...), nil},
		{"crosses the end", 10003, 10, []byte("lo"), io.EOF},
		{"at the end", 10005, 1, nil, io.EOF},
		{"past the end", 20000, 1, nil, io.EOF},
		{"across pages", PageSize - 3, 6, make([]byte, 6), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := make([]byte, tc.n)
			n, err := m.ReadAt(b, tc.off)
			if err != tc.wantErr {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			requireBytes(t, "data", b[:n], tc.want)
		})
	}
	if _, err := m.ReadAt(make([]byte, 1), -1); err == nil {
		t.Fatal("read at -1 succeeded")
	}
	if _, err := m.WriteAt([]byte{1}, -1); err == nil {
		t.Fatal("write at -1 succeeded")
	}
}

// TestMemSyncCrash checks the cache model: reads see everything, Crash keeps
// exactly what the last Sync covered.
func TestMemSyncCrash(t *testing.T) {
	m := NewMem()
	mustWrite(t, m, fill(PageSize, 'a'), 0)
	mustWrite(t, m, fill(100, 'b'), 5000)
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, m, fill(50, 'c'), 0)            // overwrite, unsynced
	mustWrite(t, m, fill(PageSize, 'd'), 100000) // extends, unsynced
	if err := m.PunchHole(5000, 100); err != nil {
		t.Fatal(err)
	}
	if err := m.Truncate(200000); err != nil {
		t.Fatal(err)
	}
	if got := m.Unsynced(); got != 4 {
		t.Fatalf("Unsynced() = %d, want 4", got)
	}
	requireBytes(t, "before crash", mustRead(t, m, 0, 50), fill(50, 'c'))
	requireBytes(t, "punched", mustRead(t, m, 5000, 100), make([]byte, 100))
	requireSize(t, m, 200000)

	c := m.Clone()
	m.Crash()
	requireSize(t, m, 5100)
	requireBytes(t, "after crash", mustRead(t, m, 0, PageSize), fill(PageSize, 'a'))
	requireBytes(t, "punch undone", mustRead(t, m, 5000, 100), fill(100, 'b'))
	if m.Unsynced() != 0 {
		t.Fatal("changes pending after crash")
	}

	// The clone still has the unsynced changes; syncing it keeps them.
	if err := c.Sync(); err != nil {
		t.Fatal(err)
	}
	c.Crash()
	requireSize(t, c, 200000)
	requireBytes(t, "synced clone", mustRead(t, c, 0, 50), fill(50, 'c'))
	requireBytes(t, "synced clone tail", mustRead(t, c, 100000, PageSize), fill(PageSize, 'd'))
	requireBytes(t, "synced punch", mustRead(t, c, 5000, 100), make([]byte, 100))

	// Writes after a crash work as before.
	mustWrite(t, m, fill(10, 'e'), 3)
	m.Crash()
	requireBytes(t, "second crash", mustRead(t, m, 0, 16), fill(16, 'a'))
}

// TestMemTruncate checks that bytes cut off by a shrink read as zeros after
// the file grows again, in the live and the durable image.
func TestMemTruncate(t *testing.T) {
	m := NewMem()
	mustWrite(t, m, fill(3*PageSize, 'x'), 0)
	for _, size := range []int64{PageSize + 100, 3 * PageSize} {
		if err := m.Truncate(size); err != nil {
			t.Fatal(err)
		}
	}
	want := append(fill(PageSize+100, 'x'), make([]byte, 2*PageSize-100)...)
	requireBytes(t, "live", mustRead(t, m, 0, 3*PageSize), want)
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	m.Crash()
	requireBytes(t, "durable", mustRead(t, m, 0, 3*PageSize), want)
	if err := m.Truncate(-1); err == nil {
		t.Fatal("Truncate(-1) succeeded")
	}
}

// TestMemSparse checks that a pool-sized sparse file costs only the pages
// written, and that punching and truncating free them.
func TestMemSparse(t *testing.T) {
	const size = 2 << 30
	m := NewMem()
	if err := m.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 1 << 30, size - PageSize} {
		mustWrite(t, m, fill(PageSize, 1), off)
	}
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	if cur, dur := m.Pages(); cur != 3 || dur != 3 {
		t.Fatalf("Pages() = %d, %d; want 3, 3", cur, dur)
	}
	requireBytes(t, "hole", mustRead(t, m, 1<<29, 1<<20), make([]byte, 1<<20))
	if err := m.PunchHole(1<<30, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := m.Truncate(PageSize); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	if cur, dur := m.Pages(); cur != 1 || dur != 1 {
		t.Fatalf("after punch and truncate: Pages() = %d, %d; want 1, 1", cur, dur)
	}
}

// TestMemCrashRandom checks that a random crash keeps, of each unsynced
// write, all of it, none of it, or (for the last one kept) a prefix of
// whole sectors; and that over many seeds every outcome happens.
func TestMemCrashRandom(t *testing.T) {
	const nwrites = 8
	// Write i covers [i*3000+100, +2500): unaligned, spanning sectors.
	span := func(i int) (int64, int) { return int64(i)*3000 + 100, 2500 }
	var sawKept, sawDropped, sawTorn bool
	for seed := uint64(0); seed < 200; seed++ {
		m := NewMem()
		mustWrite(t, m, make([]byte, nwrites*3000), 0) // durable zeros
		if err := m.Sync(); err != nil {
			t.Fatal(err)
		}
		for i := range nwrites {
			off, n := span(i)
			mustWrite(t, m, fill(n, byte('A'+i)), off)
		}
		kept := m.CrashRandom(rand.New(rand.NewPCG(seed, 1)))
		if m.Unsynced() != 0 {
			t.Fatal("changes pending after crash")
		}
		whole, torn := 0, 0
		for i := range nwrites {
			off, n := span(i)
			got := mustRead(t, m, off, n)
			k := bytes.IndexByte(append(got, 0), 0) // bytes of the write that survived
			if !bytes.Equal(got[:k], fill(k, byte('A'+i))) || !bytes.Equal(got[k:], make([]byte, n-k)) {
				t.Fatalf("seed %d write %d: not a prefix of the write: %q", seed, i, got)
			}
			switch {
			case k == n:
				whole++
			case k > 0:
				torn++
				if (off+int64(k))%SectorSize != 0 {
					t.Fatalf("seed %d write %d torn at %d, not a sector boundary", seed, i, off+int64(k))
				}
				sawTorn = true
			}
		}
		if torn > 1 || whole+torn > kept {
			t.Fatalf("seed %d: %d whole and %d torn writes, %d changes kept", seed, whole, torn, kept)
		}
		sawKept = sawKept || whole > 0
		sawDropped = sawDropped || whole+torn < nwrites
	}
	if !sawKept || !sawDropped || !sawTorn {
		t.Fatalf("200 seeds: kept %v, dropped %v, torn %v; want all", sawKept, sawDropped, sawTorn)
	}
}

// TestMemCrashRandomPunchTruncate checks that punches and truncates survive
// a random crash whole or not at all, independently.
func TestMemCrashRandomPunchTruncate(t *testing.T) {
	seen := map[[2]bool]bool{}
	for seed := uint64(0); seed < 64; seed++ {
		m := NewMem()
		mustWrite(t, m, fill(4*PageSize, 'x'), 0)
		if err := m.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := m.PunchHole(100, PageSize); err != nil {
			t.Fatal(err)
		}
		if err := m.Truncate(3 * PageSize); err != nil {
			t.Fatal(err)
		}
		m.CrashRandom(rand.New(rand.NewPCG(seed, 2)))
		size, _ := m.Size()
		truncated := size == 3*PageSize
		if !truncated && size != 4*PageSize {
			t.Fatalf("seed %d: size %d", seed, size)
		}
		got := mustRead(t, m, 0, int(size))
		punched := got[100] == 0
		want := fill(int(size), 'x')
		if punched {
			copy(want[100:], make([]byte, PageSize))
		}
		requireBytes(t, fmt.Sprintf("seed %d", seed), got, want)
		seen[[2]bool{punched, truncated}] = true
	}
	if len(seen) != 4 {
		t.Fatalf("outcomes (punched, truncated) seen: %v; want all four", seen)
	}
}

// TestMemConcurrent runs writers, readers and syncs in parallel (for -race)
// and checks that every write is there afterwards.
func TestMemConcurrent(t *testing.T) {
	m := NewMem()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				off := int64(g*50+i) * 1000
				if _, err := m.WriteAt(fill(1000, byte(g+1)), off); err != nil {
					t.Error(err)
					return
				}
				_, _ = m.ReadAt(make([]byte, 3000), off)
				if i%10 == 0 {
					_ = m.Sync()
				}
			}
		}()
	}
	wg.Wait()
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	m.Crash()
	for g := range 8 {
		for i := range 50 {
			off := int64(g*50+i) * 1000
			requireBytes(t, fmt.Sprintf("writer %d write %d", g, i), mustRead(t, m, off, 1000), fill(1000, byte(g+1)))
		}
	}
}

// TestFaultOnIndex checks the counting and the dead disk: the picked
// operation and all after it fail without reaching the Mem, earlier ones
// succeed, and reads fail once the disk is dead.
func TestFaultOnIndex(t *testing.T) {
	ops := []struct {
		kind OpKind
		do   func(f *File) error
	}{
		{OpTruncate, func(f *File) error { return f.Truncate(1 << 20) }},
		{OpWrite, func(f *File) error { _, err := f.WriteAt(fill(10, 'w'), 100); return err }},
		{OpSync, func(f *File) error { return f.Sync() }},
		{OpPunchHole, func(f *File) error { return f.PunchHole(PageSize, PageSize) }},
		{OpWrite, func(f *File) error { _, err := f.WriteAt(fill(10, 'v'), 200); return err }},
		{OpSync, func(f *File) error { return f.Sync() }},
	}
	for i := range len(ops) + 1 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			var seen []Op
			f := Wrap(NewMem(), InjectorFunc(func(op Op) bool {
				seen = append(seen, op)
				return op.Index == i
			}))
			for j, op := range ops {
				err := op.do(f)
				if (j >= i) != errors.Is(err, ErrInjected) {
					t.Fatalf("op %d (%s): err = %v", j, op.kind, err)
				}
			}
			if len(seen) != min(i+1, len(ops)) {
				t.Fatalf("injector saw %d ops, want %d", len(seen), min(i+1, len(ops)))
			}
			for j, op := range seen {
				if op.Index != j || op.Kind != ops[j].kind {
					t.Fatalf("op %d seen as %v, want kind %s", j, op, ops[j].kind)
				}
			}
			idx, fired := f.Fired()
			if fired != (i < len(ops)) || (fired && idx != i) {
				t.Fatalf("Fired() = %d, %v", idx, fired)
			}
			_, rerr := f.ReadAt(make([]byte, 1), 0)
			_, serr := f.Size()
			if fired != (rerr != nil) || fired != (serr != nil) {
				t.Fatalf("dead %v but ReadAt: %v, Size: %v", fired, rerr, serr)
			}
			// The Mem got the operations before the fault, no more.
			m := f.Mem()
			want := func(reached bool, v byte) []byte {
				switch {
				case i == 0: // not even the truncate: the file is empty
					return []byte{}
				case reached:
					return fill(10, v)
				}
				return make([]byte, 10)
			}
			requireBytes(t, "first write", mustRead(t, m, 100, 10), want(i > 1, 'w'))
			requireBytes(t, "second write", mustRead(t, m, 200, 10), want(i > 4, 'v'))
			// Close must leave the Mem usable, and Crash keeps what was synced.
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			f.Crash()
			if _, err := f.WriteAt([]byte{1}, 0); !errors.Is(err, ErrCrashed) && !errors.Is(err, ErrInjected) {
				t.Fatalf("write after Crash: %v", err)
			}
			wantSynced := i > 2
			got := mustRead(t, m, 100, 10)
			if bytes.Equal(got, fill(10, 'w')) != wantSynced {
				t.Fatalf("after crash: %q, synced %v", got, wantSynced)
			}
		})
	}
}

// TestFaultRevive checks that a revived File passes operations through
// again and keeps counting.
func TestFaultRevive(t *testing.T) {
	f := Wrap(NewMem(), OnIndex(1))
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); !errors.Is(err, ErrInjected) {
		t.Fatalf("op 1: %v", err)
	}
	if err := f.Sync(); !errors.Is(err, ErrInjected) {
		t.Fatalf("op after the fault: %v", err)
	}
	f.Revive()
	if _, err := f.WriteAt([]byte("x"), 0); err != nil {
		t.Fatalf("after Revive: %v", err)
	}
	if n := f.Ops(); n != 3 {
		t.Fatalf("Ops() = %d, want 3", n)
	}
	if idx, ok := f.Fired(); !ok || idx != 1 {
		t.Fatalf("Fired() = %d, %v", idx, ok)
	}
}
