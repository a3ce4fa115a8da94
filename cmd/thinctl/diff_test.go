package main

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/thinpool/thinpool/extent"
	"github.com/thinpool/thinpool/thinpool"
)

func TestDiffMappings(t *testing.T) {
	type m = extent.Mapping
	type r = diffRange
	tests := []struct {
		name        string
		left, right []extent.Mapping
		want        []diffRange
	}{
		{name: "both empty"},
		{name: "identical", left: []m{{V: 0, P: 10, Len: 4}, {V: 8, P: 30, Len: 2}},
			right: []m{{V: 0, P: 10, Len: 4}, {V: 8, P: 30, Len: 2}}},
		{name: "identical split differently", left: []m{{V: 0, P: 10, Len: 4}},
			right: []m{{V: 0, P: 10, Len: 1}, {V: 1, P: 11, Len: 3}}},
		{name: "left only", left: []m{{V: 3, P: 7, Len: 5}},
			want: []r{{3, 5, diffLeftOnly}}},
		{name: "right only", right: []m{{V: 0, P: 7, Len: 1}, {V: 9, P: 1, Len: 2}},
			want: []r{{0, 1, diffRightOnly}, {9, 2, diffRightOnly}}},
		{name: "different", left: []m{{V: 2, P: 100, Len: 4}}, right: []m{{V: 2, P: 200, Len: 4}},
			want: []r{{2, 4, diffDifferent}}},
		{name: "snapshot after writes",
			left:  []m{{V: 0, P: 0, Len: 16}},
			right: []m{{V: 0, P: 0, Len: 3}, {V: 3, P: 50, Len: 2}, {V: 5, P: 5, Len: 11}, {V: 20, P: 60, Len: 1}},
			want:  []r{{3, 2, diffDifferent}, {20, 1, diffRightOnly}}},
		{name: "overlap shifted", left: []m{{V: 0, P: 10, Len: 4}}, right: []m{{V: 2, P: 12, Len: 4}},
			want: []r{{0, 2, diffLeftOnly}, {4, 2, diffRightOnly}}},
		{name: "same pool blocks at other offsets", left: []m{{V: 0, P: 10, Len: 4}}, right: []m{{V: 0, P: 11, Len: 4}},
			want: []r{{0, 4, diffDifferent}}},
		{name: "adjacent kinds merge across mappings", left: []m{{V: 0, P: 10, Len: 2}, {V: 2, P: 40, Len: 2}},
			right: []m{{V: 0, P: 20, Len: 1}, {V: 1, P: 30, Len: 3}},
			want:  []r{{0, 4, diffDifferent}}},
		{name: "kinds alternate", left: []m{{V: 0, P: 1, Len: 1}, {V: 2, P: 3, Len: 1}},
			right: []m{{V: 1, P: 2, Len: 1}, {V: 2, P: 9, Len: 1}},
			want:  []r{{0, 1, diffLeftOnly}, {1, 1, diffRightOnly}, {2, 1, diffDifferent}}},
		{name: "far apart", left: []m{{V: 1 << 40, P: 1, Len: 3}}, right: []m{{V: 0, P: 1, Len: 1}},
			want: []r{{0, 1, diffRightOnly}, {1 << 40, 3, diffLeftOnly}}},
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
func diffBlocks(left, right blockMap) []diffRange {
	var out []diffRange
	for v := range max(len(left), len(right)) {
		var l, r uint64
		if v < len(left) {
			l = left[v]
		}
		if v < len(right) {
			r = right[v]
		}
		var k diffKind
		switch {
		case l == r:
			continue
		case r == 0:
			k = diffLeftOnly
		case l == 0:
			k = diffRightOnly
		default:
			k = diffDifferent
		}
		if n := len(out); n > 0 && out[n-1].Kind == k && out[n-1].End() == extent.VBlock(v) {
			out[n-1].Len++
			continue
		}
		out = append(out, diffRange{Begin: extent.VBlock(v), Len: 1, Kind: k})
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
	b, err := json.Marshal(diffRange{Begin: 3, Len: 2, Kind: diffRightOnly})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"begin":3,"length":2,"kind":"right-only"}`; string(b) != want {
		t.Errorf("json = %s, want %s", b, want)
	}
	if s := diffInvalid.String(); s != "diffKind(0)" {
		t.Errorf("invalid kind = %q", s)
	}
}

func TestDeviceDiffCommand(t *testing.T) {
	path := xferPool(t)
	img := makeTestImage(t, []imageRun{{runData, 4}, {runHole, 6}, {runData, 10}}, 0)
	xferMustRun(t, path, nil, "device", "import", "base", img.path)
	xferMustRun(t, path, nil, "snapshot", "create", "base", "snap")

	out := xferMustRun(t, path, nil, "device", "diff", "base", "snap")
	if !strings.Contains(out, `map the same blocks`) {
		t.Errorf("diff of a fresh snapshot:\n%s", out)
	}

	const bs = thinpool.DefaultBlockSize
	xferWithPool(t, path, func(p *thinpool.Pool) {
		snap, err := p.Device("snap")
		if err != nil {
			t.Fatal(err)
		}
		block := make([]byte, 2*bs)
		for i := range block {
			block[i] = byte(i%251) + 1
		}
		for _, w := range []struct{ off, n int64 }{{1 * bs, 2 * bs}, {5 * bs, 10}, {19*bs + 7, 1}} {
			if _, err := snap.WriteAt(block[:w.n], w.off); err != nil {
				t.Fatal(err)
			}
		}
		if err := snap.Discard(12*bs, 2*bs); err != nil {
			t.Fatal(err)
		}
		if err := p.Sync(); err != nil {
			t.Fatal(err)
		}
	})

	var got diffJSON
	if err := json.Unmarshal([]byte(xferMustRun(t, path, nil, "--json", "device", "diff", "base", "snap")), &got); err != nil {
		t.Fatal(err)
	}
	want := []diffRange{{1, 2, diffDifferent}, {5, 1, diffRightOnly}, {12, 2, diffLeftOnly}, {19, 1, diffDifferent}}
	if got.BlockSize != bs || !slices.Equal(got.Ranges, want) {
		t.Errorf("diff = %+v, want block size %d and ranges %v", got, bs, want)
	}

	out = xferMustRun(t, path, nil, "device", "diff", "base", "snap")
	for _, s := range []string{"BEGIN", "END", "LENGTH", "KIND", "1 (64 KiB)", "3 (192 KiB)", "2 (128 KiB)", "right-only",
		`Devices "base" and "snap" differ in 6 blocks (384 KiB) in 4 ranges: 2 left-only, 1 right-only, 3 different`} {
		if !strings.Contains(out, s) {
			t.Errorf("diff table lacks %q:\n%s", s, out)
		}
	}
	out = xferMustRun(t, path, nil, "device", "diff", "snap", "base")
	if !strings.Contains(out, "2 right-only, 1 left-only") && !strings.Contains(out, "1 left-only, 2 right-only") {
		t.Errorf("swapped diff:\n%s", out)
	}

	for _, args := range [][]string{{"base", "x"}, {"x", "base"}} {
		stdout, stderr, code := xferRun(t, path, nil, append([]string{"device", "diff"}, args...)...)
		if code == 0 || stdout != "" || stderr != "thinctl: device \"x\" not found\n" {
			t.Errorf("diff %v: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
}
