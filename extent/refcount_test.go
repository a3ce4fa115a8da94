package extent

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// refRuns returns every run of r in order.
func refRuns(r *RefCounts) []RefRun {
	var out []RefRun
	r.Ascend(func(e RefRun) bool {
		out = append(out, e)
		return true
	})
	return out
}

// runsOver returns what r.Runs(p, n) reports.
func runsOver(r *RefCounts, p PBlock, n uint64) []RefRun {
	var out []RefRun
	r.Runs(p, n, func(e RefRun) bool {
		out = append(out, e)
		return true
	})
	return out
}

// buildRefCounts returns counts set from runs, in order.
func buildRefCounts(runs ...RefRun) *RefCounts {
	r := NewRefCounts()
	for _, e := range runs {
		r.Set(e.P, e.Len, e.Count)
	}
	return r
}

func requireRefRuns(t *testing.T, r *RefCounts, want []RefRun) {
	t.Helper()
	if got := refRuns(r); !slices.Equal(got, want) {
		t.Fatalf("runs:\n got  %v\n want %v", got, want)
	}
	var used uint64
	for _, e := range want {
		used += e.Len
	}
	if r.Used() != used {
		t.Fatalf("Used() = %d, want %d", r.Used(), used)
	}
	if r.Len() != len(want) {
		t.Fatalf("Len() = %d, want %d", r.Len(), len(want))
	}
}

func TestRefCountsUpdate(t *testing.T) {
	type op struct {
		kind  string // "inc", "dec" or "set"
		p     PBlock
		n     uint64
		count uint32 // for set
	}
	tests := []struct {
		name      string
		initial   []RefRun
		op        op
		want      []RefRun
		wantFreed []Run
	}{
		{
			name: "inc empty",
			op:   op{kind: "inc", p: 10, n: 5},
			want: []RefRun{{P: 10, Len: 5, Count: 1}},
		},
		{
			name:    "inc zero length",
			initial: []RefRun{{P: 0, Len: 5, Count: 1}},
			op:      op{kind: "inc", p: 2, n: 0},
			want:    []RefRun{{P: 0, Len: 5, Count: 1}},
		},
		{
			name:    "inc adjacent after merges",
			initial: []RefRun{{P: 0, Len: 10, Count: 1}},
			op:      op{kind: "inc", p: 10, n: 5},
			want:    []RefRun{{P: 0, Len: 15, Count: 1}},
		},
		{
			name:    "inc adjacent before merges",
			initial: []RefRun{{P: 10, Len: 10, Count: 1}},
			op:      op{kind: "inc", p: 5, n: 5},
			want:    []RefRun{{P: 5, Len: 15, Count: 1}},
		},
		{
			name:    "inc gap merges both sides",
			initial: []RefRun{{P: 0, Len: 5, Count: 1}, {P: 10, Len: 5, Count: 1}},
			op:      op{kind: "inc", p: 5, n: 5},
			want:    []RefRun{{P: 0, Len: 15, Count: 1}},
		},
		{
			name:    "inc adjacent with another count does not merge",
			initial: []RefRun{{P: 0, Len: 5, Count: 2}},
			op:      op{kind: "inc", p: 5, n: 5},
			want:    []RefRun{{P: 0, Len: 5, Count: 2}, {P: 5, Len: 5, Count: 1}},
		},
		{
			name:    "inc middle splits",
			initial: []RefRun{{P: 0, Len: 10, Count: 1}},
			op:      op{kind: "inc", p: 3, n: 4},
			want:    []RefRun{{P: 0, Len: 3, Count: 1}, {P: 3, Len: 4, Count: 2}, {P: 7, Len: 3, Count: 1}},
		},
		{
			name:    "inc across runs and gaps",
			initial: []RefRun{{P: 0, Len: 5, Count: 1}, {P: 5, Len: 5, Count: 2}, {P: 15, Len: 5, Count: 1}},
			op:      op{kind: "inc", p: 3, n: 15},
			want: []RefRun{
				{P: 0, Len: 3, Count: 1}, {P: 3, Len: 2, Count: 2}, {P: 5, Len: 5, Count: 3},
				{P: 10, Len: 5, Count: 1}, {P: 15, Len: 3, Count: 2}, {P: 18, Len: 2, Count: 1},
			},
		},
		{
			name:    "inc makes neighbours equal and merges them",
			initial: []RefRun{{P: 0, Len: 5, Count: 2}, {P: 5, Len: 5, Count: 1}, {P: 10, Len: 5, Count: 2}},
			op:      op{kind: "inc", p: 5, n: 5},
			want:    []RefRun{{P: 0, Len: 15, Count: 2}},
		},
		{
			name:      "dec to zero frees",
			initial:   []RefRun{{P: 10, Len: 5, Count: 1}},
			op:        op{kind: "dec", p: 10, n: 5},
			wantFreed: []Run{{P: 10, Len: 5}},
		},
		{
			name:      "dec middle to zero splits",
			initial:   []RefRun{{P: 0, Len: 10, Count: 1}},
			op:        op{kind: "dec", p: 3, n: 4},
			want:      []RefRun{{P: 0, Len: 3, Count: 1}, {P: 7, Len: 3, Count: 1}},
			wantFreed: []Run{{P: 3, Len: 4}},
		},
		{
			name:    "dec not to zero frees nothing",
			initial: []RefRun{{P: 0, Len: 10, Count: 3}},
			op:      op{kind: "dec", p: 0, n: 4},
			want:    []RefRun{{P: 0, Len: 4, Count: 2}, {P: 4, Len: 6, Count: 3}},
		},
		{
			name:      "dec mixed counts frees only the ones",
			initial:   []RefRun{{P: 0, Len: 5, Count: 1}, {P: 5, Len: 5, Count: 2}, {P: 10, Len: 5, Count: 1}},
			op:        op{kind: "dec", p: 2, n: 10},
			want:      []RefRun{{P: 0, Len: 2, Count: 1}, {P: 5, Len: 5, Count: 1}, {P: 12, Len: 3, Count: 1}},
			wantFreed: []Run{{P: 2, Len: 3}, {P: 10, Len: 2}},
		},
		{
			name:    "dec makes neighbours equal and merges them",
			initial: []RefRun{{P: 0, Len: 5, Count: 1}, {P: 5, Len: 5, Count: 2}, {P: 10, Len: 5, Count: 1}},
			op:      op{kind: "dec", p: 5, n: 5},
			want:    []RefRun{{P: 0, Len: 15, Count: 1}},
		},
		{
			name:    "set over runs and gaps merges",
			initial: []RefRun{{P: 0, Len: 5, Count: 1}, {P: 10, Len: 5, Count: 3}, {P: 20, Len: 5, Count: 7}},
			op:      op{kind: "set", p: 2, n: 20, count: 7},
			want:    []RefRun{{P: 0, Len: 2, Count: 1}, {P: 2, Len: 23, Count: 7}},
		},
		{
			name:    "set zero removes",
			initial: []RefRun{{P: 0, Len: 10, Count: 4}},
			op:      op{kind: "set", p: 2, n: 3, count: 0},
			want:    []RefRun{{P: 0, Len: 2, Count: 4}, {P: 5, Len: 5, Count: 4}},
		},
		{
			name:    "set zero over everything",
			initial: []RefRun{{P: 0, Len: 10, Count: 4}, {P: 20, Len: 1, Count: 1}},
			op:      op{kind: "set", p: 0, n: 100, count: 0},
		},
		{
			name:    "set same count is a no-op",
			initial: []RefRun{{P: 0, Len: 10, Count: 4}},
			op:      op{kind: "set", p: 3, n: 3, count: 4},
			want:    []RefRun{{P: 0, Len: 10, Count: 4}},
		},
		{
			name: "set at block 0",
			op:   op{kind: "set", p: 0, n: 1, count: 9},
			want: []RefRun{{P: 0, Len: 1, Count: 9}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := buildRefCounts(tc.initial...)
			requireRefRuns(t, r, tc.initial)
			var freed []Run
			switch tc.op.kind {
			case "inc":
				r.Inc(tc.op.p, tc.op.n)
			case "dec":
				if err := r.Dec(tc.op.p, tc.op.n, collect(&freed)); err != nil {
					t.Fatalf("Dec: %v", err)
				}
			case "set":
				r.Set(tc.op.p, tc.op.n, tc.op.count)
			default:
				t.Fatalf("bad op %q", tc.op.kind)
			}
			requireRefRuns(t, r, tc.want)
			if !slices.Equal(freed, tc.wantFreed) {
				t.Fatalf("freed:\n got  %v\n want %v", freed, tc.wantFreed)
			}
		})
	}
}

func TestRefCountsDecZero(t *testing.T) {
	initial := []RefRun{{P: 0, Len: 5, Count: 1}, {P: 10, Len: 5, Count: 2}}
	tests := []struct {
		name string
		p    PBlock
		n    uint64
	}{
		{name: "empty gap", p: 5, n: 5},
		{name: "single gap block", p: 7, n: 1},
		{name: "run then gap", p: 3, n: 4},
		{name: "gap then run", p: 8, n: 4},
		{name: "run gap run", p: 0, n: 15},
		{name: "past the end", p: 12, n: 10},
		{name: "far away", p: 1 << 40, n: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := buildRefCounts(initial...)
			called := false
			err := r.Dec(tc.p, tc.n, func(Run) { called = true })
			if err == nil {
				t.Fatalf("Dec(%d, %d) = nil, want an error", tc.p, tc.n)
			}
			if called {
				t.Fatalf("Dec(%d, %d) failed but called freed", tc.p, tc.n)
			}
			requireRefRuns(t, r, initial)
		})
	}
	t.Run("zero length is fine", func(t *testing.T) {
		r := buildRefCounts(initial...)
		if err := r.Dec(7, 0, nil); err != nil {
			t.Fatalf("Dec(7, 0) = %v", err)
		}
		requireRefRuns(t, r, initial)
	})
}

func TestRefCountsGetAndRuns(t *testing.T) {
	r := buildRefCounts(RefRun{P: 5, Len: 5, Count: 1}, RefRun{P: 10, Len: 3, Count: 4}, RefRun{P: 20, Len: 2, Count: 1})
	for p, want := range map[PBlock]uint32{0: 0, 4: 0, 5: 1, 9: 1, 10: 4, 12: 4, 13: 0, 19: 0, 20: 1, 21: 1, 22: 0, 1 << 50: 0} {
		if got := r.Get(p); got != want {
			t.Errorf("Get(%d) = %d, want %d", p, got, want)
		}
	}
	tests := []struct {
		name string
		p    PBlock
		n    uint64
		want []RefRun
	}{
		{name: "everything", p: 0, n: 25, want: []RefRun{
			{P: 0, Len: 5}, {P: 5, Len: 5, Count: 1}, {P: 10, Len: 3, Count: 4},
			{P: 13, Len: 7}, {P: 20, Len: 2, Count: 1}, {P: 22, Len: 3},
		}},
		{name: "inside a run", p: 6, n: 2, want: []RefRun{{P: 6, Len: 2, Count: 1}}},
		{name: "inside a gap", p: 14, n: 3, want: []RefRun{{P: 14, Len: 3}}},
		{name: "mid run to mid gap", p: 11, n: 5, want: []RefRun{{P: 11, Len: 2, Count: 4}, {P: 13, Len: 3}}},
		{name: "mid gap to mid run", p: 15, n: 6, want: []RefRun{{P: 15, Len: 5}, {P: 20, Len: 1, Count: 1}}},
		{name: "zero length in a gap", p: 15, n: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := runsOver(r, tc.p, tc.n); !slices.Equal(got, tc.want) {
				t.Fatalf("Runs(%d, %d):\n got  %v\n want %v", tc.p, tc.n, got, tc.want)
			}
		})
	}
	t.Run("stops", func(t *testing.T) {
		var got []RefRun
		r.Runs(0, 25, func(e RefRun) bool {
			got = append(got, e)
			return len(got) < 3
		})
		if len(got) != 3 {
			t.Fatalf("Runs did not stop: %v", got)
		}
	})
}

// TestRefCountsRunsZeroLength checks that an empty range has no runs, as
// [Map.Lookup] should have no segments.
func TestRefCountsRunsZeroLength(t *testing.T) {
	r := buildRefCounts(RefRun{P: 10, Len: 5, Count: 2})
	for _, p := range []PBlock{5, 10, 12, 15} {
		if got := runsOver(r, p, 0); len(got) != 0 {
			t.Errorf("Runs(%d, 0) = %v, want no runs", p, got)
		}
	}
}

func TestRefCountsLast(t *testing.T) {
	r := NewRefCounts()
	if e, ok := r.Last(); ok {
		t.Fatalf("Last() on empty = %v, true", e)
	}
	r.Inc(100, 2)
	r.Inc(3, 2)
	if e, ok := r.Last(); !ok || e != (RefRun{P: 100, Len: 2, Count: 1}) {
		t.Fatalf("Last() = %v, %v", e, ok)
	}
}

func TestRefCountsIncOverflowPanics(t *testing.T) {
	r := buildRefCounts(RefRun{P: 0, Len: 1, Count: math.MaxUint32})
	defer func() {
		if recover() == nil {
			t.Fatal("Inc past MaxUint32 did not panic")
		}
	}()
	r.Inc(0, 1)
}

func TestRefCountsClone(t *testing.T) {
	r := NewRefCounts()
	for i := range 1000 {
		r.Set(PBlock(3*i), 2, uint32(1+i%3))
	}
	base := refRuns(r)
	c := r.Clone()
	c.Inc(0, 3000)
	if err := c.Dec(0, 3000, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Dec(0, 3000, nil); err == nil {
		t.Fatal("second Dec over gaps succeeded")
	}
	c.Set(0, 10, 0)
	requireRefRuns(t, r, base)
	r.Set(0, 3000, 5)
	if got := c.Get(1); got != 0 {
		t.Fatalf("clone Get(1) = %d after the original changed", got)
	}
	if got := c.Get(12); got != 2 {
		t.Fatalf("clone Get(12) = %d, want 2", got)
	}
}

// checkRefCounts fails unless r holds exactly the counts in model (which
// holds no zeros), nothing at or beyond space, and E1, E2 and E3 hold.
func checkRefCounts(tb testing.TB, r *RefCounts, model map[PBlock]uint32, space PBlock) {
	tb.Helper()
	checkRefShape(tb, r, uint64(len(model)), space)
	r.Ascend(func(e RefRun) bool {
		for k := range e.Len {
			if got := model[e.P+PBlock(k)]; got != e.Count {
				tb.Fatalf("run %+v: model has count %d at p%d", e, got, e.P+PBlock(k))
			}
		}
		return true
	})
	checkRuns(tb, r, model, 0, uint64(space))
	for p := range space {
		if got, want := r.Get(p), model[p]; got != want {
			tb.Fatalf("Get(%d) = %d, model %d", p, got, want)
		}
	}
}

// checkRefShape fails unless E1, E2 and E3 hold, the runs hold used blocks,
// all below space, and Used and Len agree with Ascend.
func checkRefShape(tb testing.TB, r *RefCounts, used uint64, space PBlock) {
	tb.Helper()
	var total uint64
	var prev RefRun
	i := 0
	r.Ascend(func(e RefRun) bool {
		if e.Len == 0 {
			tb.Fatalf("E1: run %+v has Len 0", e)
		}
		if e.Count == 0 {
			tb.Fatalf("E3: run %+v has Count 0", e)
		}
		if i > 0 {
			if prev.End() > e.P {
				tb.Fatalf("E1: %+v overlaps or precedes %+v", prev, e)
			}
			if prev.End() == e.P && prev.Count == e.Count {
				tb.Fatalf("E2: %+v and %+v are not merged", prev, e)
			}
		}
		total += e.Len
		prev = e
		i++
		return true
	})
	if total != used {
		tb.Fatalf("runs hold %d blocks, model %d", total, used)
	}
	if r.Used() != total {
		tb.Fatalf("Used() = %d, runs hold %d", r.Used(), total)
	}
	if r.Len() != i {
		tb.Fatalf("Len() = %d, Ascend saw %d", r.Len(), i)
	}
	if i > 0 && prev.End() > space {
		tb.Fatalf("run %+v is past space %d", prev, space)
	}
}

// checkRuns fails unless r.Runs(p, n) covers [p, p+n) once, in order, with
// maximal runs that agree with model; gaps are runs of Count 0.
func checkRuns(tb testing.TB, r *RefCounts, model map[PBlock]uint32, p PBlock, n uint64) {
	tb.Helper()
	runs := runsOver(r, p, n)
	cur := p
	for j, e := range runs {
		if e.P != cur || e.Len == 0 {
			tb.Fatalf("Runs(%d, %d): run %d is %+v, want one at %d with Len ≥ 1", p, n, j, e, cur)
		}
		if j > 0 && runs[j-1].Count == e.Count {
			tb.Fatalf("Runs(%d, %d): equal neighbours %+v %+v", p, n, runs[j-1], e)
		}
		for k := range e.Len {
			if got := model[e.P+PBlock(k)]; got != e.Count {
				tb.Fatalf("Runs(%d, %d): %+v disagrees with model count %d at p%d", p, n, e, got, e.P+PBlock(k))
			}
		}
		cur += PBlock(e.Len)
	}
	if cur != p+PBlock(n) {
		tb.Fatalf("Runs(%d, %d) covered up to %d", p, n, cur)
	}
}

// refHarness applies operations to RefCounts and to a model.
type refHarness struct {
	tb    testing.TB
	space PBlock
	r     *RefCounts
	model map[PBlock]uint32 // no zero counts
}

func newRefHarness(tb testing.TB, space PBlock) *refHarness {
	return &refHarness{tb: tb, space: space, r: NewRefCounts(), model: map[PBlock]uint32{}}
}

func (h *refHarness) inc(p PBlock, n uint64) {
	h.r.Inc(p, n)
	for k := range n {
		h.model[p+PBlock(k)]++
	}
}

func (h *refHarness) set(p PBlock, n uint64, c uint32) {
	h.r.Set(p, n, c)
	for k := range n {
		if c == 0 {
			delete(h.model, p+PBlock(k))
		} else {
			h.model[p+PBlock(k)] = c
		}
	}
}

func (h *refHarness) dec(p PBlock, n uint64, withFreed bool) {
	h.tb.Helper()
	wantErr := false
	var wantFreed []PBlock
	for k := range n {
		switch h.model[p+PBlock(k)] {
		case 0:
			wantErr = true
		case 1:
			wantFreed = append(wantFreed, p+PBlock(k))
		}
	}
	var before []RefRun
	if wantErr {
		before = refRuns(h.r)
	}
	used := h.r.Used()
	var freed []Run
	var fn func(Run)
	if withFreed {
		fn = collect(&freed)
	}
	err := h.r.Dec(p, n, fn)
	if wantErr {
		if err == nil {
			h.tb.Fatalf("Dec(%d, %d) over a zero count = nil", p, n)
		}
		if len(freed) != 0 {
			h.tb.Fatalf("Dec(%d, %d) failed but freed %v", p, n, freed)
		}
		if after := refRuns(h.r); !slices.Equal(after, before) || h.r.Used() != used {
			h.tb.Fatalf("Dec(%d, %d) failed but changed runs\n before %v\n after  %v", p, n, before, after)
		}
		return
	}
	if err != nil {
		h.tb.Fatalf("Dec(%d, %d) = %v", p, n, err)
	}
	for k := range n {
		q := p + PBlock(k)
		if h.model[q]--; h.model[q] == 0 {
			delete(h.model, q)
		}
	}
	if !withFreed {
		return
	}
	var got []PBlock
	for j, e := range freed {
		if e.Len == 0 || (j > 0 && freed[j-1].End() > e.P) {
			h.tb.Fatalf("Dec(%d, %d): bad freed runs %v", p, n, freed)
		}
		for k := range e.Len {
			got = append(got, e.P+PBlock(k))
		}
	}
	if !slices.Equal(got, wantFreed) {
		h.tb.Fatalf("Dec(%d, %d): freed %v, want blocks %v", p, n, freed, wantFreed)
	}
}

// snapshot returns a frozen copy of h made with Clone. h carries on with
// either the clone or the original, so that writes to both sides are tested.
func (h *refHarness) snapshot(keepOriginal bool) *refHarness {
	frozen := &refHarness{tb: h.tb, space: h.space, r: h.r, model: maps.Clone(h.model)}
	if keepOriginal {
		frozen.r = h.r.Clone()
	} else {
		h.r = h.r.Clone()
	}
	return frozen
}

func (h *refHarness) check() {
	h.tb.Helper()
	checkRefCounts(h.tb, h.r, h.model, h.space)
}

func TestRefCountsRandom(t *testing.T) {
	const (
		space  = 200
		maxLen = 20
	)
	ops := 3000
	if testing.Short() {
		ops = 1000
	}
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0x4ef))
			h := newRefHarness(t, space+maxLen)
			var snaps []*refHarness
			i := 0
			defer func() {
				if t.Failed() {
					t.Logf("failed at op %d", i)
				}
			}()
			for ; i < ops; i++ {
				p, n := PBlock(rng.IntN(space)), rng.Uint64N(maxLen+1)
				switch r := rng.IntN(100); {
				case r < 35:
					h.inc(p, n)
				case r < 50:
					h.dec(p, n, rng.IntN(4) != 0)
				case r < 80:
					// Dec inside one run, so that most of these succeed.
					runs := refRuns(h.r)
					if len(runs) == 0 {
						continue
					}
					e := runs[rng.IntN(len(runs))]
					off := rng.Uint64N(e.Len)
					h.dec(e.P+PBlock(off), 1+rng.Uint64N(e.Len-off), true)
				case r < 99:
					h.set(p, n, uint32(rng.IntN(4)))
				default:
					if len(snaps) < 10 {
						snaps = append(snaps, h.snapshot(rng.IntN(2) == 0))
					}
				}
				h.check()
				// n = 0 is TestRefCountsRunsZeroLength's job.
				checkRuns(t, h.r, h.model, PBlock(rng.IntN(space)), 1+rng.Uint64N(40))
			}
			for _, s := range snaps {
				s.check()
			}
		})
	}
}

// FuzzRefCountsOps interprets its input as operations, four bytes each:
//
//	b[0]: low 2 bits pick Inc (0), Dec (1), Set (2) or a snapshot by Clone
//	      (3); bit 2 makes Dec pass a nil freed callback
//	b[1]: P
//	b[2]: Len, modulo 32
//	b[3]: Set's count, modulo 4
func FuzzRefCountsOps(f *testing.F) {
	const space = 256 + 32
	op := func(kind, p, n, c byte) []byte { return []byte{kind, p, n, c} }
	f.Add([]byte{})
	f.Add(slices.Concat(op(0, 0, 20, 0), op(0, 5, 5, 0), op(1, 0, 20, 0), op(1, 3, 4, 0), op(1, 5, 5, 0)))
	f.Add(slices.Concat(op(2, 10, 10, 3), op(3, 0, 0, 0), op(2, 12, 3, 0), op(0, 0, 31, 0), op(5, 9, 3, 0)))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4*64 {
			data = data[:4*64]
		}
		h := newRefHarness(t, space)
		var snaps []*refHarness
		for ; len(data) >= 4; data = data[4:] {
			p, n := PBlock(data[1]), uint64(data[2]%32)
			switch data[0] & 3 {
			case 0:
				h.inc(p, n)
			case 1:
				h.dec(p, n, data[0]&4 == 0)
			case 2:
				h.set(p, n, uint32(data[3]%4))
			case 3:
				if len(snaps) < 8 {
					snaps = append(snaps, h.snapshot(data[0]&4 != 0))
				}
			}
			// The model only in and next to what changed; all of it at the end.
			checkRefShape(t, h.r, uint64(len(h.model)), space)
			lo := max(p, 1) - 1
			checkRuns(t, h.r, h.model, lo, uint64(min(p+PBlock(n)+1, space)-lo))
		}
		h.check()
		for _, s := range snaps {
			checkRefShape(t, s.r, uint64(len(s.model)), space)
			checkRuns(t, s.r, s.model, 0, space)
		}
	})
}
