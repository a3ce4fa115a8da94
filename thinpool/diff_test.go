package thinpool

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/thinpool/thinpool/extent"
)

func TestDiffMappings(t *testing.T) {
	type m = extent.Mapping
	type r = DiffRange
	tests := []struct {
		name        string
		left, right []extent.Mapping
		want        []DiffRange
	}{
		{name: "both empty"},
		{name: "identical", left: []m{{V: 0, P: 10, Len: 4}, {V: 8, P: 30, Len: 2}},
			right: []m{{V: 0, P: 10, Len: 4}, {V: 8, P: 30, Len: 2}}},
		{name: "identical split differently", left: []m{{V: 0, P: 10, Len: 4}},
			right: []m{{V: 0, P: 10, Len: 1}, {V: 1, P: 11, Len: 3}}},
		{name: "left only", left: []m{{V: 3, P: 7, Len: 5}},
			want: []r{{3, 5, DiffLeftOnly}}},
		{name: "right only", right: []m{{V: 0, P: 7, Len: 1}, {V: 9, P: 1, Len: 2}},
			want: []r{{0, 1, DiffRightOnly}, {9, 2, DiffRightOnly}}},
		{name: "different", left: []m{{V: 2, P: 100, Len: 4}}, right: []m{{V: 2, P: 200, Len: 4}},
			want: []r{{2, 4, DiffDifferent}}},
		{name: "snapshot after writes",
			left:  []m{{V: 0, P: 0, Len: 16}},
			right: []m{{V: 0, P: 0, Len: 3}, {V: 3, P: 50, Len: 2}, {V: 5, P: 5, Len: 11}, {V: 20, P: 60, Len: 1}},
			want:  []r{{3, 2, DiffDifferent}, {20, 1, DiffRightOnly}}},
		{name: "overlap shifted", left: []m{{V: 0, P: 10, Len: 4}}, right: []m{{V: 2, P: 12, Len: 4}},
			want: []r{{0, 2, DiffLeftOnly}, {4, 2, DiffRightOnly}}},
		{name: "same pool blocks at other offsets", left: []m{{V: 0, P: 10, Len: 4}}, right: []m{{V: 0, P: 11, Len: 4}},
			want: []r{{0, 4, DiffDifferent}}},
		{name: "adjacent kinds merge across mappings", left: []m{{V: 0, P: 10, Len: 2}, {V: 2, P: 40, Len: 2}},
			right: []m{{V: 0, P: 20, Len: 1}, {V: 1, P: 30, Len: 3}},
			want:  []r{{0, 4, DiffDifferent}}},
		{name: "kinds alternate", left: []m{{V: 0, P: 1, Len: 1}, {V: 2, P: 3, Len: 1}},
			right: []m{{V: 1, P: 2, Len: 1}, {V: 2, P: 9, Len: 1}},
			want:  []r{{0, 1, DiffLeftOnly}, {1, 1, DiffRightOnly}, {2, 1, DiffDifferent}}},
		{name: "far apart", left: []m{{V: 1 << 40, P: 1, Len: 3}}, right: []m{{V: 0, P: 1, Len: 1}},
			want: []r{{0, 1, DiffRightOnly}, {1 << 40, 3, DiffLeftOnly}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := diffMappings(tc.left, tc.right)
			if !slices.Equal(got, tc.want) {
				t.Errorf("diffMappings = %v, want %v", got, tc.want)
			}
		})
	}
}

// blockMap is a device's mapping block by block: blockMap[v] is the pool
// block plus one, or 0 for unmapped.
type blockMap []uint64

// mappings turns b into mappings, splitting contiguous runs at random.
func (b blockMap) mappings(rng *rand.Rand) []extent.Mapping {
	var out []extent.Mapping
	for v := 0; v < len(b); v++ {
		if b[v] == 0 {
			continue
		}
		m := extent.Mapping{V: extent.VBlock(v), P: extent.PBlock(b[v] - 1), Len: 1}
		for v+1 < len(b) && b[v+1] != 0 && b[v+1] == b[v]+1 && rng.IntN(4) != 0 {
			v++
			m.Len++
		}
		out = append(out, m)
	}
	return out
}

// diffBlocks is diffMappings done block by block.
func diffBlocks(left, right blockMap) []DiffRange {
	var out []DiffRange
	for v := range max(len(left), len(right)) {
		var l, r uint64
		if v < len(left) {
			l = left[v]
		}
		if v < len(right) {
			r = right[v]
		}
		var k DiffKind
		switch {
		case l == r:
			continue
		case r == 0:
			k = DiffLeftOnly
		case l == 0:
			k = DiffRightOnly
		default:
			k = DiffDifferent
		}
		if n := len(out); n > 0 && out[n-1].Kind == k && out[n-1].End() == extent.VBlock(v) {
			out[n-1].Len++
			continue
		}
		out = append(out, DiffRange{Begin: extent.VBlock(v), Len: 1, Kind: k})
	}
	return out
}

// randomBlockMap maps about half of n blocks in runs of contiguous pool blocks.
func randomBlockMap(rng *rand.Rand, n int) blockMap {
	b := make(blockMap, n)
	for v := 0; v < n; {
		run := 1 + rng.IntN(6)
		if rng.IntN(2) == 0 {
			p := 1 + uint64(rng.IntN(40))
			for i := 0; i < run && v+i < n; i++ {
				b[v+i] = p + uint64(i)
			}
		}
		v += run
	}
	return b
}

func TestDiffMappingsRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 2000 {
		left := randomBlockMap(rng, rng.IntN(50))
		var right blockMap
		if rng.IntN(4) == 0 {
			right = randomBlockMap(rng, rng.IntN(50)) // unrelated device
		} else {
			right = slices.Clone(left) // a snapshot, then some writes
			for range rng.IntN(8) {
				if len(right) == 0 {
					break
				}
				v := rng.IntN(len(right))
				switch rng.IntN(3) {
				case 0:
					right[v] = 0
				case 1:
					right[v] = 100 + uint64(rng.IntN(20))
				default:
					right[v] = left[v]
				}
			}
		}
		lm, rm := left.mappings(rng), right.mappings(rng)
		got, want := diffMappings(lm, rm), diffBlocks(left, right)
		if !slices.Equal(got, want) {
			t.Fatalf("trial %d: left %v right %v\ndiffMappings = %v\nblock by block = %v", trial, lm, rm, got, want)
		}
	}
}

func TestDiffKindJSON(t *testing.T) {
	b, err := json.Marshal(DiffRange{Begin: 3, Len: 2, Kind: DiffRightOnly})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"begin":3,"length":2,"kind":"right-only"}`; string(b) != want {
		t.Errorf("json = %s, want %s", b, want)
	}
	if s := DiffInvalid.String(); s != "DiffKind(0)" {
		t.Errorf("invalid kind = %q", s)
	}
}

// TestPoolDiff diffs a device and its snapshot after writes to both, and
// an unrelated device, through the Pool.
func TestPoolDiff(t *testing.T) {
	const blk = DefaultBlockSize
	p, _ := mustCreatePool(t, 64*blk)
	o := mustThin(t, p, "o", 8*blk)
	mustWrite(t, o, pattern(1, 4*blk), 0)
	if _, err := p.Snapshot("o", "s", false); err != nil {
		t.Fatal(err)
	}
	s, err := p.Device("s")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s, pattern(2, 100), blk)   // block 1: copied, different
	mustWrite(t, o, pattern(3, blk), 5*blk) // block 5: o only
	mustWrite(t, s, pattern(4, blk), 7*blk) // block 7: s only
	got, err := p.Diff("o", "s")
	if err != nil {
		t.Fatal(err)
	}
	want := []DiffRange{{1, 1, DiffDifferent}, {5, 1, DiffLeftOnly}, {7, 1, DiffRightOnly}}
	if !slices.Equal(got, want) {
		t.Fatalf("Diff = %v, want %v", got, want)
	}
	if total, by := DiffBlocks(got); total != 3 || by[DiffDifferent] != 1 || by[DiffLeftOnly] != 1 {
		t.Fatalf("DiffBlocks = %d, %v", total, by)
	}
	if _, err := p.Diff("o", "nothing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Diff with a missing device: %v", err)
	}
}
