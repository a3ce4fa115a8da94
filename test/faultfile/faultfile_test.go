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

// history records what a Mem held after its last Sync and after each
// change since, to check a random crash against the crash model.
type history struct {
	m      *Mem
	states [][]byte // the file after the Sync, then after each change
}

// newHistory syncs m and starts a history of it.
func newHistory(t *testing.T, m *Mem) *history {
	t.Helper()
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	h := &history{m: m}
	h.record(t)
	return h
}

// record notes the file after a change.
func (h *history) record(t *testing.T) {
	t.Helper()
	size, _ := h.m.Size()
	h.states = append(h.states, mustRead(t, h.m, 0, int(size)))
}

// pageOf returns page idx of b, zeros past its end.
func pageOf(b []byte, idx int) []byte {
	pg := make([]byte, PageSize)
	if lo := idx * PageSize; lo < len(b) {
		copy(pg, b[lo:])
	}
	return pg
}

// crashOutcome is what a random crash left in one page.
type crashOutcome struct {
	state int  // the state the page holds (deduplicated index), or the newer of the two it is torn between
	torn  bool // it holds sectors of two states and equals neither
}

// check verifies the Mem after a crash against the model of the package
// doc: the size is one the file had; below it, each page holds one state it
// had since the Sync, or sectors of two consecutive ones; past it, zeros
// once the file grows again. It returns the outcome for each page.
func (h *history) check(t *testing.T, what string) []crashOutcome {
	t.Helper()
	if h.m.Unsynced() != 0 {
		t.Fatalf("%s: changes pending after crash", what)
	}
	size, _ := h.m.Size()
	var maxSize int
	sizeOK := false
	for _, st := range h.states {
		maxSize = max(maxSize, len(st))
		sizeOK = sizeOK || int64(len(st)) == size
	}
	if !sizeOK {
		t.Fatalf("%s: size %d is no size the file had", what, size)
	}
	got := mustRead(t, h.m, 0, int(size))
	if err := h.m.Truncate(int64(maxSize)); err != nil {
		t.Fatal(err)
	}
	requireBytes(t, what+": past the size after a grow", mustRead(t, h.m, size, maxSize-int(size)), make([]byte, maxSize-int(size)))

	var out []crashOutcome
	for idx := 0; idx*PageSize < maxSize; idx++ {
		var seq [][]byte // the states of the page, consecutive repeats dropped
		for _, st := range h.states {
			if pg := pageOf(st, idx); len(seq) == 0 || !bytes.Equal(pg, seq[len(seq)-1]) {
				seq = append(seq, pg)
			}
		}
		lim := min(PageSize, max(0, int(size)-idx*PageSize)) // bytes of the page below the size
		res := pageOf(got, idx)[:lim]
		o, ok := crashOutcome{}, false
		for k := range seq {
			if bytes.Equal(res, seq[k][:lim]) {
				o, ok = crashOutcome{state: k}, true // the newest state it equals
			}
		}
		for k := 1; k < len(seq) && !ok; k++ {
			torn := true
			for lo := 0; lo < lim && torn; lo += SectorSize {
				hi := min(lo+SectorSize, lim)
				torn = bytes.Equal(res[lo:hi], seq[k][lo:hi]) || bytes.Equal(res[lo:hi], seq[k-1][lo:hi])
			}
			if torn {
				o, ok = crashOutcome{state: k, torn: true}, true
			}
		}
		if !ok {
			t.Fatalf("%s: page %d holds %q..., no state it had nor two consecutive ones torn", what, idx, head(res))
		}
		out = append(out, o)
	}
	return out
}

// TestMemCrashRandom checks the crash model on sub-page writes: each page
// ends in a state it had since the last Sync, or torn at sector boundaries
// between two consecutive ones; a later write to a page never survives
// without an earlier one; pages survive independently; and over many
// seeds every outcome happens.
func TestMemCrashRandom(t *testing.T) {
	const seeds = 300
	seen := map[string]bool{}
	for seed := uint64(0); seed < seeds; seed++ {
		what := fmt.Sprintf("seed %d", seed)
		m := NewMem()
		mustWrite(t, m, fill(4*PageSize, 'z'), 0)
		h := newHistory(t, m)
		// Page 0: two sub-page writes, the second over part of the first.
		mustWrite(t, m, fill(1000, 'A'), 100)
		h.record(t)
		mustWrite(t, m, fill(1400, 'B'), 600)
		h.record(t)
		// Pages 1 and 2: one write across both.
		mustWrite(t, m, fill(2000, 'C'), 2*PageSize-1000)
		h.record(t)
		// Page 3: a write, then a punch over part of it.
		mustWrite(t, m, fill(PageSize, 'D'), 3*PageSize)
		h.record(t)
		if err := m.PunchHole(3*PageSize+SectorSize, 2*SectorSize); err != nil {
			t.Fatal(err)
		}
		h.record(t)

		kept := m.CrashRandom(rand.New(rand.NewPCG(seed, 1)))
		out := h.check(t, what)

		pg0 := mustRead(t, m, 0, PageSize)
		if bytes.IndexByte(pg0, 'B') >= 0 && !bytes.Equal(pg0[100:600], fill(500, 'A')) {
			t.Fatalf("%s: the second write to page 0 survived without the first: %q", what, pg0[:2000])
		}
		changed := 0
		for idx := range 4 {
			if !bytes.Equal(mustRead(t, m, int64(idx)*PageSize, PageSize), pageOf(h.states[0], idx)) {
				changed++
			}
		}
		if changed > kept || kept > 4 {
			t.Fatalf("%s: %d pages changed, CrashRandom returned %d of 4 touched", what, changed, kept)
		}
		for idx, o := range out {
			seen[fmt.Sprintf("page %d state %d torn %v", idx, o.state, o.torn)] = true
		}
		seen[fmt.Sprintf("pages 1, 2 in states %d, %d", out[1].state, out[2].state)] = true
	}
	for _, want := range []string{
		"page 0 state 0 torn false", // neither write
		"page 0 state 1 torn false", // the first only
		"page 0 state 2 torn false", // both
		"page 0 state 2 torn true",  // the second torn over the first
		"page 3 state 2 torn false", // the punch
		"pages 1, 2 in states 1, 0", // one page of a write without the other
		"pages 1, 2 in states 0, 1",
	} {
		if !seen[want] {
			t.Errorf("%d seeds never gave %q", seeds, want)
		}
	}
}

// TestMemCrashRandomPunchTruncate checks punches, truncates and a write
// that extends the file again: the size is one the file had, whatever lies
// past it is gone, and every page holds a state it had.
func TestMemCrashRandomPunchTruncate(t *testing.T) {
	seen := map[string]bool{}
	for seed := uint64(0); seed < 200; seed++ {
		m := NewMem()
		mustWrite(t, m, fill(4*PageSize, 'x'), 0)
		h := newHistory(t, m)
		if err := m.PunchHole(100, PageSize); err != nil { // pages 0 and 1, in part
			t.Fatal(err)
		}
		h.record(t)
		if err := m.Truncate(2*PageSize + 100); err != nil { // cuts page 2, drops page 3
			t.Fatal(err)
		}
		h.record(t)
		mustWrite(t, m, fill(500, 'y'), 3*PageSize+1000) // grows it again
		h.record(t)
		m.CrashRandom(rand.New(rand.NewPCG(seed, 2)))
		size, _ := m.Size()
		out := h.check(t, fmt.Sprintf("seed %d", seed))
		seen[fmt.Sprintf("size %d", size)] = true
		seen[fmt.Sprintf("page 0 state %d", out[0].state)] = true
		seen[fmt.Sprintf("page 3 state %d at size %d", out[3].state, size)] = true
	}
	for _, want := range []string{
		"size 16384", "size 8292", "size 13788", // before, after the truncate, after the write
		"page 0 state 0", "page 0 state 1", // punched or not
		"page 3 state 0 at size 13788", // the size survived, the page's changes not
		"page 3 state 2 at size 16384", // the page's changes survived, the size not
	} {
		if !seen[want] {
			t.Errorf("200 seeds never gave %q", want)
		}
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
