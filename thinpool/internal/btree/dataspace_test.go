package btree

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/thinpool/thinpool/extent"
)

func runsOf(t *testing.T, d *DataSpace) []extent.RefRun {
	t.Helper()
	var out []extent.RefRun
	if err := d.Ascend(func(r extent.RefRun) bool { out = append(out, r); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDataSpaceModel runs random Inc and Dec against extent.RefCounts and
// compares every run, Get, Runs, Used and the freed runs, across commits
// and reopens.
func TestDataSpaceModel(t *testing.T) {
	const blocks = 20000
	s, st := mustCreateStore(t, 2000)
	d, err := NewDataSpace(s)
	if err != nil {
		t.Fatal(err)
	}
	model := extent.NewRefCounts()
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range ops(20000) {
		p := extent.PBlock(rng.Uint64N(blocks - 64))
		n := 1 + rng.Uint64N(64)
		if rng.IntN(100) < 55 {
			model.Inc(p, n)
			if err := d.Inc(p, n); err != nil {
				t.Fatal(err)
			}
		} else {
			var got, want []extent.Run
			werr := model.Dec(p, n, func(r extent.Run) { want = append(want, r) })
			gerr := d.Dec(p, n, func(r extent.Run) { got = append(got, r) })
			if (werr == nil) != (gerr == nil) || !slices.Equal(got, want) {
				t.Fatalf("Dec(%d, %d): %v freed %v, model %v freed %v", p, n, gerr, got, werr, want)
			}
		}
		if i%200 == 0 {
			var want []extent.RefRun
			model.Ascend(func(r extent.RefRun) bool { want = append(want, r); return true })
			if got := runsOf(t, d); !slices.Equal(got, want) {
				t.Fatalf("op %d: runs\n got %v\nwant %v", i, got, want)
			}
			if d.Used() != model.Used() {
				t.Fatalf("used %d, want %d", d.Used(), model.Used())
			}
			for range 10 {
				q := extent.PBlock(rng.Uint64N(blocks))
				if c, err := d.Get(q); err != nil || c != model.Get(q) {
					t.Fatalf("Get(%d) = %d %v, want %d", q, c, err, model.Get(q))
				}
				var got, want []extent.RefRun
				if err := d.Runs(q, 100, func(r extent.RefRun) bool { got = append(got, r); return len(got) < 5 }); err != nil {
					t.Fatal(err)
				}
				model.Runs(q, 100, func(r extent.RefRun) bool { want = append(want, r); return len(want) < 5 })
				if !slices.Equal(got, want) {
					t.Fatalf("Runs(%d, 100) = %v, want %v", q, got, want)
				}
			}
			checkStore(t, s, []rootOf{{TreeDataSpace, d.Root()}})
		}
		if i%3000 == 2999 {
			commit(t, s, st)
			if s, err = Open(st, testBase, 2000, s.Gen()-1, testSeed); err != nil {
				t.Fatal(err)
			}
			if d, err = OpenDataSpace(s, d.Root()); err != nil {
				t.Fatal(err)
			}
			if d.Used() != model.Used() {
				t.Fatalf("reopened: used %d, want %d", d.Used(), model.Used())
			}
		}
	}
	free, err := d.FreeSpace(blocks)
	if err != nil {
		t.Fatal(err)
	}
	if free.Blocks()+d.Used() != blocks {
		t.Fatalf("free %d + used %d != %d", free.Blocks(), d.Used(), blocks)
	}
	free.Ascend(func(r extent.Run) bool {
		model.Runs(r.P, r.Len, func(e extent.RefRun) bool {
			if e.Count != 0 {
				t.Fatalf("free block %d has count %d", e.P, e.Count)
			}
			return true
		})
		return true
	})
	if _, err := d.FreeSpace(10); err == nil {
		t.Fatal("FreeSpace smaller than the runs")
	}
}

func TestDataSpaceEdges(t *testing.T) {
	s, _ := mustCreateStore(t, 100)
	d, err := NewDataSpace(s)
	if err != nil {
		t.Fatal(err)
	}
	// Dec of a block at 0 fails and changes nothing.
	if err := d.Inc(10, 5); err != nil {
		t.Fatal(err)
	}
	if err := d.Dec(8, 5, nil); err == nil {
		t.Fatal("Dec of blocks at count 0")
	}
	if got := runsOf(t, d); !slices.Equal(got, []extent.RefRun{{P: 10, Len: 5, Count: 1}}) {
		t.Fatalf("runs after a failed Dec: %v", got)
	}
	// A count at the maximum refuses Inc.
	if err := d.put(extent.RefRun{P: 100, Len: 1, Count: math.MaxUint32}); err != nil {
		t.Fatal(err)
	}
	if err := d.Inc(99, 3); err == nil {
		t.Fatal("Inc past the maximum count")
	}
	// A run longer than a u32 is held as several entries.
	if err := d.Inc(1<<40, 1<<33); err != nil {
		t.Fatal(err)
	}
	if c, err := d.Get(1<<40 + 1<<33 - 1); err != nil || c != 1 {
		t.Fatalf("last block of a long run: %d %v", c, err)
	}
	if d.Used() != 5+1+1<<33 {
		t.Fatalf("used %d", d.Used())
	}
	if n := len(runsOf(t, d)); n != 2+3 {
		t.Fatalf("%d runs, want 5", n)
	}
	if err := d.Dec(1<<40, 1<<33, nil); err != nil {
		t.Fatal(err)
	}
	if n := len(runsOf(t, d)); n != 2 {
		t.Fatalf("%d runs after Dec, want 2", n)
	}
	if err := d.Runs(0, 0, func(extent.RefRun) bool { t.Fatal("Runs of nothing calls fn"); return false }); err != nil {
		t.Fatal(err)
	}
}
