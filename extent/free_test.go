package extent

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// freeRuns returns every run of f in order.
func freeRuns(f *FreeSpace) []Run {
	var out []Run
	f.Ascend(func(e Run) bool {
		out = append(out, e)
		return true
	})
	return out
}

// mustFreeSpace returns a set holding runs, which must not overlap.
func mustFreeSpace(t *testing.T, runs ...Run) *FreeSpace {
	t.Helper()
	f := NewFreeSpace()
	for _, r := range runs {
		if err := f.Add(r.P, r.Len); err != nil {
			t.Fatalf("Add(%d, %d): %v", r.P, r.Len, err)
		}
	}
	return f
}

func requireFreeRuns(t *testing.T, f *FreeSpace, want []Run) {
	t.Helper()
	if got := freeRuns(f); !slices.Equal(got, want) {
		t.Fatalf("runs:\n got  %v\n want %v", got, want)
	}
	var n uint64
	for _, r := range want {
		n += r.Len
	}
	if f.Blocks() != n {
		t.Fatalf("Blocks() = %d, want %d", f.Blocks(), n)
	}
	if f.Len() != len(want) {
		t.Fatalf("Len() = %d, want %d", f.Len(), len(want))
	}
}

func TestFreeSpaceAdd(t *testing.T) {
	tests := []struct {
		name    string
		initial []Run
		add     Run
		want    []Run
	}{
		{name: "empty", add: Run{P: 10, Len: 5}, want: []Run{{P: 10, Len: 5}}},
		{name: "at block 0", add: Run{P: 0, Len: 1}, want: []Run{{P: 0, Len: 1}}},
		{name: "zero length", initial: []Run{{P: 0, Len: 5}}, add: Run{P: 2, Len: 0}, want: []Run{{P: 0, Len: 5}}},
		{name: "after merges", initial: []Run{{P: 0, Len: 5}}, add: Run{P: 5, Len: 5}, want: []Run{{P: 0, Len: 10}}},
		{name: "before merges", initial: []Run{{P: 5, Len: 5}}, add: Run{P: 0, Len: 5}, want: []Run{{P: 0, Len: 10}}},
		{name: "gap merges both", initial: []Run{{P: 0, Len: 5}, {P: 10, Len: 5}}, add: Run{P: 5, Len: 5}, want: []Run{{P: 0, Len: 15}}},
		{name: "apart", initial: []Run{{P: 0, Len: 5}}, add: Run{P: 6, Len: 5}, want: []Run{{P: 0, Len: 5}, {P: 6, Len: 5}}},
		{name: "between, apart", initial: []Run{{P: 0, Len: 5}, {P: 20, Len: 5}}, add: Run{P: 10, Len: 5}, want: []Run{{P: 0, Len: 5}, {P: 10, Len: 5}, {P: 20, Len: 5}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := mustFreeSpace(t, tc.initial...)
			if err := f.Add(tc.add.P, tc.add.Len); err != nil {
				t.Fatalf("Add(%d, %d): %v", tc.add.P, tc.add.Len, err)
			}
			requireFreeRuns(t, f, tc.want)
		})
	}
}

func TestFreeSpaceAddFreeErrors(t *testing.T) {
	initial := []Run{{P: 10, Len: 10}, {P: 30, Len: 5}}
	for _, tc := range []struct {
		name string
		add  Run
	}{
		{name: "same run", add: Run{P: 10, Len: 10}},
		{name: "inside", add: Run{P: 12, Len: 2}},
		{name: "first block", add: Run{P: 10, Len: 1}},
		{name: "last block", add: Run{P: 19, Len: 1}},
		{name: "overlaps the start", add: Run{P: 5, Len: 6}},
		{name: "overlaps the end", add: Run{P: 19, Len: 5}},
		{name: "covers a run", add: Run{P: 0, Len: 100}},
		{name: "from a gap into the next run", add: Run{P: 25, Len: 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := mustFreeSpace(t, initial...)
			if err := f.Add(tc.add.P, tc.add.Len); err == nil {
				t.Fatalf("Add(%d, %d) = nil, want an error", tc.add.P, tc.add.Len)
			}
			requireFreeRuns(t, f, initial)
		})
	}
}

func TestFreeSpaceTake(t *testing.T) {
	initial := []Run{{P: 10, Len: 10}, {P: 30, Len: 5}}
	tests := []struct {
		name    string
		take    Run
		want    []Run
		wantErr bool
	}{
		{name: "zero length", take: Run{P: 0, Len: 0}, want: initial},
		{name: "whole run", take: Run{P: 30, Len: 5}, want: []Run{{P: 10, Len: 10}}},
		{name: "head", take: Run{P: 10, Len: 3}, want: []Run{{P: 13, Len: 7}, {P: 30, Len: 5}}},
		{name: "tail", take: Run{P: 17, Len: 3}, want: []Run{{P: 10, Len: 7}, {P: 30, Len: 5}}},
		{name: "middle splits", take: Run{P: 12, Len: 3}, want: []Run{{P: 10, Len: 2}, {P: 15, Len: 5}, {P: 30, Len: 5}}},
		{name: "not free", take: Run{P: 0, Len: 1}, wantErr: true},
		{name: "just after a run", take: Run{P: 20, Len: 1}, wantErr: true},
		{name: "past the end of a run", take: Run{P: 18, Len: 3}, wantErr: true},
		{name: "from a gap into a run", take: Run{P: 9, Len: 3}, wantErr: true},
		{name: "across a gap", take: Run{P: 15, Len: 20}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := mustFreeSpace(t, initial...)
			err := f.Take(tc.take.P, tc.take.Len)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Take(%d, %d) = nil, want an error", tc.take.P, tc.take.Len)
				}
				requireFreeRuns(t, f, initial)
				return
			}
			if err != nil {
				t.Fatalf("Take(%d, %d): %v", tc.take.P, tc.take.Len, err)
			}
			requireFreeRuns(t, f, tc.want)
		})
	}
}

func TestFreeSpaceAlloc(t *testing.T) {
	runs := []Run{{P: 10, Len: 10}, {P: 30, Len: 3}, {P: 50, Len: 20}}
	tests := []struct {
		name    string
		initial []Run
		n       uint64
		hint    PBlock
		want    Run
		after   []Run
	}{
		{name: "empty", n: 4, hint: 0, want: Run{}},
		{name: "empty with hint", n: 4, hint: 100, want: Run{}},
		{name: "zero blocks", initial: runs, n: 0, hint: 10, want: Run{}, after: runs},
		{name: "at the hint", initial: runs, n: 4, hint: 10, want: Run{P: 10, Len: 4},
			after: []Run{{P: 14, Len: 6}, {P: 30, Len: 3}, {P: 50, Len: 20}}},
		{name: "inside a run from the hint", initial: runs, n: 4, hint: 13, want: Run{P: 13, Len: 4},
			after: []Run{{P: 10, Len: 3}, {P: 17, Len: 3}, {P: 30, Len: 3}, {P: 50, Len: 20}}},
		{name: "hint near the end of a run gives fewer", initial: runs, n: 4, hint: 18, want: Run{P: 18, Len: 2},
			after: []Run{{P: 10, Len: 8}, {P: 30, Len: 3}, {P: 50, Len: 20}}},
		{name: "hint in a gap takes the next run", initial: runs, n: 2, hint: 25, want: Run{P: 30, Len: 2},
			after: []Run{{P: 10, Len: 10}, {P: 32, Len: 1}, {P: 50, Len: 20}}},
		{name: "next run shorter than n is not skipped", initial: runs, n: 8, hint: 25, want: Run{P: 30, Len: 3},
			after: []Run{{P: 10, Len: 10}, {P: 50, Len: 20}}},
		{name: "hint before everything", initial: runs, n: 5, hint: 0, want: Run{P: 10, Len: 5},
			after: []Run{{P: 15, Len: 5}, {P: 30, Len: 3}, {P: 50, Len: 20}}},
		{name: "hint at the end of a run", initial: runs, n: 5, hint: 33, want: Run{P: 50, Len: 5},
			after: []Run{{P: 10, Len: 10}, {P: 30, Len: 3}, {P: 55, Len: 15}}},
		{name: "wraps to the lowest run", initial: runs, n: 5, hint: 70, want: Run{P: 10, Len: 5},
			after: []Run{{P: 15, Len: 5}, {P: 30, Len: 3}, {P: 50, Len: 20}}},
		{name: "wraps and gives fewer", initial: []Run{{P: 3, Len: 2}, {P: 10, Len: 50}}, n: 5, hint: 60, want: Run{P: 3, Len: 2},
			after: []Run{{P: 10, Len: 50}}},
		{name: "whole last run", initial: []Run{{P: 7, Len: 3}}, n: 3, hint: 7, want: Run{P: 7, Len: 3}},
		{name: "more than everything", initial: []Run{{P: 7, Len: 3}}, n: 100, hint: 0, want: Run{P: 7, Len: 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := mustFreeSpace(t, tc.initial...)
			if got := f.Alloc(tc.n, tc.hint); got != tc.want {
				t.Fatalf("Alloc(%d, %d) = %v, want %v", tc.n, tc.hint, got, tc.want)
			}
			requireFreeRuns(t, f, tc.after)
		})
	}
}

// TestFreeSpaceAllocSequential checks that allocations that pass the end of the
// previous one as hint stay contiguous, and then wrap around.
func TestFreeSpaceAllocSequential(t *testing.T) {
	f := mustFreeSpace(t, Run{P: 100, Len: 64}, Run{P: 500, Len: 8})
	hint := PBlock(100)
	for i := range 16 {
		r := f.Alloc(4, hint)
		if want := (Run{P: 100 + PBlock(4*i), Len: 4}); r != want {
			t.Fatalf("alloc %d = %v, want %v", i, r, want)
		}
		hint = r.End()
	}
	if r := f.Alloc(4, hint); r != (Run{P: 500, Len: 4}) {
		t.Fatalf("alloc after the first run = %v", r)
	}
	if r := f.Alloc(8, 504); r != (Run{P: 504, Len: 4}) {
		t.Fatalf("alloc of the rest = %v", r)
	}
	if r := f.Alloc(1, 0); r.Len != 0 {
		t.Fatalf("alloc when full = %v", r)
	}
	if err := f.Add(120, 4); err != nil {
		t.Fatal(err)
	}
	if r := f.Alloc(4, 508); r != (Run{P: 120, Len: 4}) {
		t.Fatalf("alloc after wrap = %v", r)
	}
	requireFreeRuns(t, f, nil)
}

// checkFree fails unless f holds exactly the blocks in model, below space,
// and its runs are merged (E1, E2).
func checkFree(tb testing.TB, f *FreeSpace, model map[PBlock]bool, space PBlock) {
	tb.Helper()
	checkFreeNear(tb, f, model, space, 0, space)
}

// checkFreeNear is checkFree that compares with model only in [lo, hi); the
// invariants and block counts are checked everywhere.
func checkFreeNear(tb testing.TB, f *FreeSpace, model map[PBlock]bool, space, lo, hi PBlock) {
	tb.Helper()
	var total, inWindow uint64
	var prev Run
	i := 0
	f.Ascend(func(e Run) bool {
		if e.Len == 0 {
			tb.Fatalf("E1: run %v has Len 0", e)
		}
		if i > 0 {
			if prev.End() > e.P {
				tb.Fatalf("E1: %v overlaps or precedes %v", prev, e)
			}
			if prev.End() == e.P {
				tb.Fatalf("E2: %v and %v are not merged", prev, e)
			}
		}
		if e.End() > space {
			tb.Fatalf("run %v is past space %d", e, space)
		}
		for p := max(e.P, lo); p < min(e.End(), hi); p++ {
			if !model[p] {
				tb.Fatalf("run %v: p%d is not free in the model", e, p)
			}
			inWindow++
		}
		total += e.Len
		prev = e
		i++
		return true
	})
	if total != uint64(len(model)) {
		tb.Fatalf("runs hold %d blocks, model %d", total, len(model))
	}
	var want uint64
	for p := lo; p < hi; p++ {
		if model[p] {
			want++
		}
	}
	if inWindow != want {
		tb.Fatalf("runs hold %d blocks of [%d, %d), model %d", inWindow, lo, hi, want)
	}
	if f.Blocks() != total {
		tb.Fatalf("Blocks() = %d, runs hold %d", f.Blocks(), total)
	}
	if f.Len() != i {
		tb.Fatalf("Len() = %d, Ascend saw %d", f.Len(), i)
	}
}

// wantAlloc returns what Alloc(n, hint) must return for the free set model,
// worked out block by block.
func wantAlloc(model map[PBlock]bool, space PBlock, n uint64, hint PBlock) Run {
	if n == 0 || len(model) == 0 {
		return Run{}
	}
	start := PBlock(0)
	switch {
	case model[hint]:
		start = hint
	default:
		found := false
		for p := hint + 1; p < space; p++ {
			if model[p] {
				start, found = p, true
				break
			}
		}
		if !found {
			for p := PBlock(0); p < space; p++ {
				if model[p] {
					start = p
					break
				}
			}
		}
	}
	r := Run{P: start}
	for r.Len < n && model[r.End()] {
		r.Len++
	}
	return r
}

// freeHarness applies operations to a FreeSpace and to a model set.
type freeHarness struct {
	tb    testing.TB
	space PBlock // every operation stays below space
	f     *FreeSpace
	model map[PBlock]bool // free blocks; never holds false
}

func newFreeHarness(tb testing.TB, space PBlock) *freeHarness {
	return &freeHarness{tb: tb, space: space, f: NewFreeSpace(), model: map[PBlock]bool{}}
}

// anyIs reports whether model[q] == want for some q in [p, p+n).
func (h *freeHarness) anyIs(p PBlock, n uint64, want bool) bool {
	for k := range n {
		if h.model[p+PBlock(k)] == want {
			return true
		}
	}
	return false
}

func (h *freeHarness) add(p PBlock, n uint64) {
	h.tb.Helper()
	wantErr := h.anyIs(p, n, true)
	err := h.f.Add(p, n)
	if wantErr != (err != nil) {
		h.tb.Fatalf("Add(%d, %d) = %v, want error %v", p, n, err, wantErr)
	}
	if err == nil {
		for k := range n {
			h.model[p+PBlock(k)] = true
		}
	}
}

func (h *freeHarness) take(p PBlock, n uint64) {
	h.tb.Helper()
	wantErr := h.anyIs(p, n, false)
	err := h.f.Take(p, n)
	if wantErr != (err != nil) {
		h.tb.Fatalf("Take(%d, %d) = %v, want error %v", p, n, err, wantErr)
	}
	if err == nil {
		for k := range n {
			delete(h.model, p+PBlock(k))
		}
	}
}

func (h *freeHarness) alloc(n uint64, hint PBlock) Run {
	h.tb.Helper()
	want := wantAlloc(h.model, h.space, n, hint)
	if got := h.f.Alloc(n, hint); got != want {
		h.tb.Fatalf("Alloc(%d, %d) = %v, want %v", n, hint, got, want)
	}
	for k := range want.Len {
		delete(h.model, want.P+PBlock(k))
	}
	return want
}

func (h *freeHarness) check() {
	h.tb.Helper()
	checkFree(h.tb, h.f, h.model, h.space)
}

func TestFreeSpaceRandom(t *testing.T) {
	const (
		space  = 300
		maxLen = 24
	)
	ops := 5000
	if testing.Short() {
		ops = 1000
	}
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0xf5ee))
			h := newFreeHarness(t, space)
			i := 0
			defer func() {
				if t.Failed() {
					t.Logf("failed at op %d", i)
				}
			}()
			// span returns a random [p, p+n) below space, cut short where
			// model[q] != want if fit is set, so that most Adds and Takes
			// succeed.
			span := func(fit, want bool) (PBlock, uint64) {
				p, n := PBlock(rng.IntN(space)), rng.Uint64N(maxLen+1)
				n = min(n, uint64(space-p))
				if fit {
					for k := range n {
						if h.model[p+PBlock(k)] != want {
							return p, k
						}
					}
				}
				return p, n
			}
			for ; i < ops; i++ {
				switch r := rng.IntN(100); {
				case r < 40:
					h.add(span(rng.IntN(3) != 0, false))
				case r < 70:
					h.take(span(rng.IntN(3) != 0, true))
				default:
					h.alloc(rng.Uint64N(maxLen+1), PBlock(rng.IntN(space+10)))
				}
				h.check()
			}
		})
	}
}

// FuzzFreeSpaceOps interprets its input as operations, four bytes each:
//
//	b[0]: modulo 3, Add, Take or Alloc
//	b[1]: P, or Alloc's hint
//	b[2]: Len or Alloc's n, modulo 32
//	b[3]: unused
func FuzzFreeSpaceOps(f *testing.F) {
	const space = 256 + 32
	op := func(kind, p, n byte) []byte { return []byte{kind, p, n, 0} }
	f.Add([]byte{})
	f.Add(slices.Concat(op(0, 0, 31), op(0, 31, 31), op(1, 10, 5), op(2, 12, 10), op(2, 200, 31)))
	f.Add(slices.Concat(op(0, 250, 31), op(0, 0, 3), op(2, 255, 8), op(2, 255, 8), op(0, 2, 1)))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4*64 {
			data = data[:4*64]
		}
		h := newFreeHarness(t, space)
		for ; len(data) >= 4; data = data[4:] {
			p, n := PBlock(data[1]), uint64(data[2]%32)
			lo, hi := max(p, 1)-1, min(p+PBlock(n)+1, space)
			switch data[0] % 3 {
			case 0:
				h.add(p, n)
			case 1:
				h.take(p, n)
			case 2:
				r := h.alloc(n, p)
				lo, hi = min(lo, max(r.P, 1)-1), max(hi, min(r.End()+1, space))
			}
			checkFreeNear(t, h.f, h.model, space, lo, hi)
		}
		h.check()
	})
}
