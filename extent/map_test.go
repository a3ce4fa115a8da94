package extent

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// buildMap returns a map holding ms, inserted in order.
func buildMap(ms ...Mapping) *Map {
	m := NewMap()
	for _, e := range ms {
		m.Insert(e, nil)
	}
	return m
}

// extents returns every extent of m in order.
func extents(m *Map) []Mapping {
	var out []Mapping
	m.Ascend(func(e Mapping) bool {
		out = append(out, e)
		return true
	})
	return out
}

// lookup returns every segment that m.Lookup(v, n) reports.
func lookup(m *Map, v VBlock, n uint64) []Segment {
	var out []Segment
	m.Lookup(v, n, func(s Segment) bool {
		out = append(out, s)
		return true
	})
	return out
}

// collect returns a callback that appends to *dst.
func collect[T any](dst *[]T) func(T) {
	return func(e T) { *dst = append(*dst, e) }
}

func sumLen(ms []Mapping) uint64 {
	var n uint64
	for _, e := range ms {
		n += e.Len
	}
	return n
}

// requireExtents fails unless m holds exactly want, and Blocks and Len agree.
func requireExtents(t *testing.T, m *Map, want []Mapping) {
	t.Helper()
	if got := extents(m); !slices.Equal(got, want) {
		t.Fatalf("extents:\n got  %v\n want %v", got, want)
	}
	if got, want := m.Blocks(), sumLen(want); got != want {
		t.Fatalf("Blocks() = %d, want %d", got, want)
	}
	if got := m.Len(); got != len(want) {
		t.Fatalf("Len() = %d, want %d", got, len(want))
	}
}

func TestMapInsert(t *testing.T) {
	tests := []struct {
		name        string
		initial     []Mapping
		insert      Mapping
		want        []Mapping
		wantRemoved []Mapping
	}{
		{
			name:   "empty",
			insert: Mapping{V: 10, P: 100, Len: 5},
			want:   []Mapping{{V: 10, P: 100, Len: 5}},
		},
		{
			name:    "zero length is a no-op",
			initial: []Mapping{{V: 0, P: 100, Len: 10}},
			insert:  Mapping{V: 5, P: 900, Len: 0},
			want:    []Mapping{{V: 0, P: 100, Len: 10}},
		},
		{
			name:    "adjacent after merges",
			initial: []Mapping{{V: 0, P: 100, Len: 10}},
			insert:  Mapping{V: 10, P: 110, Len: 5},
			want:    []Mapping{{V: 0, P: 100, Len: 15}},
		},
		{
			name:    "adjacent before merges",
			initial: []Mapping{{V: 10, P: 110, Len: 5}},
			insert:  Mapping{V: 0, P: 100, Len: 10},
			want:    []Mapping{{V: 0, P: 100, Len: 15}},
		},
		{
			name:    "adjacent before at V 0 merges",
			initial: []Mapping{{V: 5, P: 105, Len: 5}},
			insert:  Mapping{V: 0, P: 100, Len: 5},
			want:    []Mapping{{V: 0, P: 100, Len: 10}},
		},
		{
			name:    "filling a gap merges both sides",
			initial: []Mapping{{V: 0, P: 100, Len: 10}, {V: 20, P: 120, Len: 10}},
			insert:  Mapping{V: 10, P: 110, Len: 10},
			want:    []Mapping{{V: 0, P: 100, Len: 30}},
		},
		{
			name:    "filling a gap merges left only",
			initial: []Mapping{{V: 0, P: 100, Len: 10}, {V: 20, P: 500, Len: 10}},
			insert:  Mapping{V: 10, P: 110, Len: 10},
			want:    []Mapping{{V: 0, P: 100, Len: 20}, {V: 20, P: 500, Len: 10}},
		},
		{
			name:    "filling a gap merges right only",
			initial: []Mapping{{V: 0, P: 500, Len: 10}, {V: 20, P: 120, Len: 10}},
			insert:  Mapping{V: 10, P: 110, Len: 10},
			want:    []Mapping{{V: 0, P: 500, Len: 10}, {V: 10, P: 110, Len: 20}},
		},
		{
			name:    "adjacent in V but not in P",
			initial: []Mapping{{V: 0, P: 100, Len: 10}},
			insert:  Mapping{V: 10, P: 200, Len: 5},
			want:    []Mapping{{V: 0, P: 100, Len: 10}, {V: 10, P: 200, Len: 5}},
		},
		{
			name:    "adjacent in P but not in V",
			initial: []Mapping{{V: 0, P: 100, Len: 10}},
			insert:  Mapping{V: 11, P: 110, Len: 5},
			want:    []Mapping{{V: 0, P: 100, Len: 10}, {V: 11, P: 110, Len: 5}},
		},
		{
			name:    "P continues the left extent backwards",
			initial: []Mapping{{V: 10, P: 100, Len: 10}},
			insert:  Mapping{V: 0, P: 110, Len: 10},
			want:    []Mapping{{V: 0, P: 110, Len: 10}, {V: 10, P: 100, Len: 10}},
		},
		{
			name:        "overwrite middle splits into three",
			initial:     []Mapping{{V: 0, P: 100, Len: 30}},
			insert:      Mapping{V: 10, P: 500, Len: 5},
			want:        []Mapping{{V: 0, P: 100, Len: 10}, {V: 10, P: 500, Len: 5}, {V: 15, P: 115, Len: 15}},
			wantRemoved: []Mapping{{V: 10, P: 110, Len: 5}},
		},
		{
			name:        "overwrite head",
			initial:     []Mapping{{V: 10, P: 100, Len: 10}},
			insert:      Mapping{V: 5, P: 500, Len: 8},
			want:        []Mapping{{V: 5, P: 500, Len: 8}, {V: 13, P: 103, Len: 7}},
			wantRemoved: []Mapping{{V: 10, P: 100, Len: 3}},
		},
		{
			name:        "overwrite tail",
			initial:     []Mapping{{V: 10, P: 100, Len: 10}},
			insert:      Mapping{V: 17, P: 500, Len: 8},
			want:        []Mapping{{V: 10, P: 100, Len: 7}, {V: 17, P: 500, Len: 8}},
			wantRemoved: []Mapping{{V: 17, P: 107, Len: 3}},
		},
		{
			name:        "overwrite whole extent exactly",
			initial:     []Mapping{{V: 10, P: 100, Len: 5}},
			insert:      Mapping{V: 10, P: 200, Len: 5},
			want:        []Mapping{{V: 10, P: 200, Len: 5}},
			wantRemoved: []Mapping{{V: 10, P: 100, Len: 5}},
		},
		{
			name:        "rewrite with the same mapping",
			initial:     []Mapping{{V: 0, P: 100, Len: 30}},
			insert:      Mapping{V: 10, P: 110, Len: 5},
			want:        []Mapping{{V: 0, P: 100, Len: 30}},
			wantRemoved: []Mapping{{V: 10, P: 110, Len: 5}},
		},
		{
			name:        "overwrite spanning several extents and holes",
			initial:     []Mapping{{V: 0, P: 100, Len: 10}, {V: 10, P: 300, Len: 10}, {V: 25, P: 400, Len: 10}},
			insert:      Mapping{V: 5, P: 900, Len: 25},
			want:        []Mapping{{V: 0, P: 100, Len: 5}, {V: 5, P: 900, Len: 25}, {V: 30, P: 405, Len: 5}},
			wantRemoved: []Mapping{{V: 5, P: 105, Len: 5}, {V: 10, P: 300, Len: 10}, {V: 25, P: 400, Len: 5}},
		},
		{
			name:        "overwrite merges with the remainder on the left",
			initial:     []Mapping{{V: 0, P: 100, Len: 10}, {V: 10, P: 300, Len: 10}},
			insert:      Mapping{V: 10, P: 110, Len: 5},
			want:        []Mapping{{V: 0, P: 100, Len: 15}, {V: 15, P: 305, Len: 5}},
			wantRemoved: []Mapping{{V: 10, P: 300, Len: 5}},
		},
		{
			name:        "overwrite merges with the remainder on the right",
			initial:     []Mapping{{V: 0, P: 300, Len: 10}, {V: 10, P: 110, Len: 10}},
			insert:      Mapping{V: 5, P: 105, Len: 5},
			want:        []Mapping{{V: 0, P: 300, Len: 5}, {V: 5, P: 105, Len: 15}},
			wantRemoved: []Mapping{{V: 5, P: 305, Len: 5}},
		},
		{
			name:        "overwrite everything",
			initial:     []Mapping{{V: 3, P: 100, Len: 2}, {V: 8, P: 300, Len: 2}},
			insert:      Mapping{V: 0, P: 0, Len: 20},
			want:        []Mapping{{V: 0, P: 0, Len: 20}},
			wantRemoved: []Mapping{{V: 3, P: 100, Len: 2}, {V: 8, P: 300, Len: 2}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := buildMap(tc.initial...)
			requireExtents(t, m, tc.initial)
			var removed []Mapping
			m.Insert(tc.insert, collect(&removed))
			requireExtents(t, m, tc.want)
			if !slices.Equal(removed, tc.wantRemoved) {
				t.Fatalf("removed:\n got  %v\n want %v", removed, tc.wantRemoved)
			}

			// A nil callback must give the same map.
			m2 := buildMap(tc.initial...)
			m2.Insert(tc.insert, nil)
			requireExtents(t, m2, tc.want)
		})
	}
}

func TestMapRemove(t *testing.T) {
	three := []Mapping{{V: 0, P: 100, Len: 5}, {V: 10, P: 200, Len: 5}, {V: 20, P: 300, Len: 5}}
	tests := []struct {
		name        string
		initial     []Mapping
		v           VBlock
		n           uint64
		want        []Mapping
		wantRemoved []Mapping
	}{
		{
			name: "empty map",
			v:    0, n: 100,
		},
		{
			name:    "zero length is a no-op",
			initial: three,
			v:       2, n: 0,
			want: three,
		},
		{
			name:    "hole only",
			initial: three,
			v:       5, n: 5,
			want: three,
		},
		{
			name:    "past the last extent",
			initial: three,
			v:       25, n: 1000,
			want: three,
		},
		{
			name:    "head",
			initial: []Mapping{{V: 0, P: 100, Len: 10}},
			v:       0, n: 3,
			want:        []Mapping{{V: 3, P: 103, Len: 7}},
			wantRemoved: []Mapping{{V: 0, P: 100, Len: 3}},
		},
		{
			name:    "tail",
			initial: []Mapping{{V: 0, P: 100, Len: 10}},
			v:       7, n: 3,
			want:        []Mapping{{V: 0, P: 100, Len: 7}},
			wantRemoved: []Mapping{{V: 7, P: 107, Len: 3}},
		},
		{
			name:    "tail and beyond",
			initial: []Mapping{{V: 0, P: 100, Len: 10}},
			v:       7, n: 30,
			want:        []Mapping{{V: 0, P: 100, Len: 7}},
			wantRemoved: []Mapping{{V: 7, P: 107, Len: 3}},
		},
		{
			name:    "middle splits",
			initial: []Mapping{{V: 0, P: 100, Len: 10}},
			v:       3, n: 4,
			want:        []Mapping{{V: 0, P: 100, Len: 3}, {V: 7, P: 107, Len: 3}},
			wantRemoved: []Mapping{{V: 3, P: 103, Len: 4}},
		},
		{
			name:    "single block in the middle",
			initial: []Mapping{{V: 0, P: 100, Len: 10}},
			v:       5, n: 1,
			want:        []Mapping{{V: 0, P: 100, Len: 5}, {V: 6, P: 106, Len: 4}},
			wantRemoved: []Mapping{{V: 5, P: 105, Len: 1}},
		},
		{
			name:    "whole extent exactly",
			initial: three,
			v:       10, n: 5,
			want:        []Mapping{{V: 0, P: 100, Len: 5}, {V: 20, P: 300, Len: 5}},
			wantRemoved: []Mapping{{V: 10, P: 200, Len: 5}},
		},
		{
			name:    "whole extent with holes around it",
			initial: three,
			v:       6, n: 12,
			want:        []Mapping{{V: 0, P: 100, Len: 5}, {V: 20, P: 300, Len: 5}},
			wantRemoved: []Mapping{{V: 10, P: 200, Len: 5}},
		},
		{
			name:    "spanning extents and holes",
			initial: three,
			v:       3, n: 19,
			want:        []Mapping{{V: 0, P: 100, Len: 3}, {V: 22, P: 302, Len: 3}},
			wantRemoved: []Mapping{{V: 3, P: 103, Len: 2}, {V: 10, P: 200, Len: 5}, {V: 20, P: 300, Len: 2}},
		},
		{
			name:    "everything",
			initial: three,
			v:       0, n: 1 << 40,
			wantRemoved: three,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := buildMap(tc.initial...)
			var removed []Mapping
			m.Remove(tc.v, tc.n, collect(&removed))
			requireExtents(t, m, tc.want)
			if !slices.Equal(removed, tc.wantRemoved) {
				t.Fatalf("removed:\n got  %v\n want %v", removed, tc.wantRemoved)
			}

			m2 := buildMap(tc.initial...)
			m2.Remove(tc.v, tc.n, nil)
			requireExtents(t, m2, tc.want)
		})
	}
}

func TestMapLookup(t *testing.T) {
	m := buildMap(
		Mapping{V: 10, P: 100, Len: 5},
		Mapping{V: 15, P: 300, Len: 5}, // adjacent in V, not in P
		Mapping{V: 30, P: 400, Len: 10},
	)
	hole := func(v VBlock, n uint64) Segment { return Segment{V: v, Len: n} }
	mapped := func(v VBlock, p PBlock, n uint64) Segment { return Segment{V: v, P: p, Len: n, Mapped: true} }
	tests := []struct {
		name string
		m    *Map
		v    VBlock
		n    uint64
		want []Segment
	}{
		{
			name: "empty map",
			m:    NewMap(),
			v:    5, n: 10,
			want: []Segment{hole(5, 10)},
		},
		{
			name: "whole range",
			m:    m,
			v:    0, n: 50,
			want: []Segment{hole(0, 10), mapped(10, 100, 5), mapped(15, 300, 5), hole(20, 10), mapped(30, 400, 10), hole(40, 10)},
		},
		{
			name: "exactly one extent",
			m:    m,
			v:    30, n: 10,
			want: []Segment{mapped(30, 400, 10)},
		},
		{
			name: "inside one extent",
			m:    m,
			v:    12, n: 2,
			want: []Segment{mapped(12, 102, 2)},
		},
		{
			name: "single block at the end of an extent",
			m:    m,
			v:    39, n: 1,
			want: []Segment{mapped(39, 409, 1)},
		},
		{
			name: "from mid extent across a hole",
			m:    m,
			v:    13, n: 20,
			want: []Segment{mapped(13, 103, 2), mapped(15, 300, 5), hole(20, 10), mapped(30, 400, 3)},
		},
		{
			name: "from a hole into an extent",
			m:    m,
			v:    25, n: 7,
			want: []Segment{hole(25, 5), mapped(30, 400, 2)},
		},
		{
			name: "hole only",
			m:    m,
			v:    21, n: 5,
			want: []Segment{hole(21, 5)},
		},
		{
			name: "zero length in a hole",
			m:    m,
			v:    25, n: 0,
		},
		{
			name: "after the last extent",
			m:    m,
			v:    40, n: 3,
			want: []Segment{hole(40, 3)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := lookup(tc.m, tc.v, tc.n); !slices.Equal(got, tc.want) {
				t.Fatalf("Lookup(%d, %d):\n got  %v\n want %v", tc.v, tc.n, got, tc.want)
			}
		})
	}
}

// TestMapLookupZeroLength checks that an empty range has no segments, mapped
// or not. A zero-length read must not see a zero-length mapped segment.
func TestMapLookupZeroLength(t *testing.T) {
	m := buildMap(Mapping{V: 10, P: 100, Len: 5})
	for _, v := range []VBlock{5, 10, 12, 15} {
		if got := lookup(m, v, 0); len(got) != 0 {
			t.Errorf("Lookup(%d, 0) = %v, want no segments", v, got)
		}
	}
}

func TestMapLookupStops(t *testing.T) {
	m := buildMap(Mapping{V: 10, P: 100, Len: 5}, Mapping{V: 20, P: 200, Len: 5})
	full := lookup(m, 0, 30) // hole, mapped, hole, mapped, hole
	if len(full) != 5 {
		t.Fatalf("Lookup(0, 30) = %v, want 5 segments", full)
	}
	for stop := 1; stop <= len(full); stop++ {
		var got []Segment
		m.Lookup(0, 30, func(s Segment) bool {
			got = append(got, s)
			return len(got) < stop
		})
		if !slices.Equal(got, full[:stop]) {
			t.Errorf("stop after %d: got %v, want %v", stop, got, full[:stop])
		}
	}
}

func TestMapFind(t *testing.T) {
	m := buildMap(Mapping{V: 10, P: 100, Len: 5}, Mapping{V: 15, P: 300, Len: 5}, Mapping{V: 30, P: 400, Len: 1})
	a, b, c := Mapping{V: 10, P: 100, Len: 5}, Mapping{V: 15, P: 300, Len: 5}, Mapping{V: 30, P: 400, Len: 1}
	tests := []struct {
		name   string
		m      *Map
		v      VBlock
		want   Mapping
		wantOK bool
	}{
		{name: "empty map", m: NewMap(), v: 0},
		{name: "before everything", m: m, v: 0},
		{name: "just before first", m: m, v: 9},
		{name: "first block", m: m, v: 10, want: a, wantOK: true},
		{name: "inside", m: m, v: 12, want: a, wantOK: true},
		{name: "last block of first", m: m, v: 14, want: a, wantOK: true},
		{name: "first block of adjacent", m: m, v: 15, want: b, wantOK: true},
		{name: "last block of adjacent", m: m, v: 19, want: b, wantOK: true},
		{name: "just after", m: m, v: 20},
		{name: "in the hole", m: m, v: 29},
		{name: "single-block extent", m: m, v: 30, want: c, wantOK: true},
		{name: "after the last", m: m, v: 31},
		{name: "far away", m: m, v: 1 << 60},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tc.m.Find(tc.v)
			if ok != tc.wantOK || got != tc.want {
				t.Fatalf("Find(%d) = %v, %v; want %v, %v", tc.v, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestMapAscendFrom(t *testing.T) {
	all := []Mapping{{V: 0, P: 100, Len: 5}, {V: 10, P: 200, Len: 5}, {V: 20, P: 300, Len: 5}}
	m := buildMap(all...)
	tests := []struct {
		name string
		v    VBlock
		stop int // stop after this many extents; 0 means never
		want []Mapping
	}{
		{name: "from 0", v: 0, want: all},
		{name: "inside the first", v: 3, want: all},
		{name: "last block of the first", v: 4, want: all},
		{name: "end of the first", v: 5, want: all[1:]},
		{name: "in a hole", v: 7, want: all[1:]},
		{name: "start of the second", v: 10, want: all[1:]},
		{name: "inside the last", v: 24, want: all[2:]},
		{name: "after the last", v: 25},
		{name: "stop in the containing extent", v: 3, stop: 1, want: all[:1]},
		{name: "stop later", v: 3, stop: 2, want: all[:2]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []Mapping
			m.AscendFrom(tc.v, func(e Mapping) bool {
				got = append(got, e)
				return tc.stop == 0 || len(got) < tc.stop
			})
			if !slices.Equal(got, tc.want) {
				t.Fatalf("AscendFrom(%d):\n got  %v\n want %v", tc.v, got, tc.want)
			}
		})
	}
}

func TestMapLast(t *testing.T) {
	m := NewMap()
	if e, ok := m.Last(); ok {
		t.Fatalf("Last() on empty map = %v, true", e)
	}
	m.Insert(Mapping{V: 50, P: 1, Len: 2}, nil)
	m.Insert(Mapping{V: 10, P: 9, Len: 2}, nil)
	if e, ok := m.Last(); !ok || e != (Mapping{V: 50, P: 1, Len: 2}) {
		t.Fatalf("Last() = %v, %v", e, ok)
	}
}

func TestMapBlocks(t *testing.T) {
	m := NewMap()
	steps := []struct {
		name string
		op   func()
		want uint64
	}{
		{"insert 10", func() { m.Insert(Mapping{V: 0, P: 0, Len: 10}, nil) }, 10},
		{"merge 5", func() { m.Insert(Mapping{V: 10, P: 10, Len: 5}, nil) }, 15},
		{"separate 7", func() { m.Insert(Mapping{V: 100, P: 500, Len: 7}, nil) }, 22},
		{"overwrite 4 inside", func() { m.Insert(Mapping{V: 2, P: 900, Len: 4}, nil) }, 22},
		{"overwrite across hole", func() { m.Insert(Mapping{V: 12, P: 50, Len: 90}, nil) }, 22 - 3 - 2 + 90},
		{"remove hole", func() { m.Remove(200, 10, nil) }, 107},
		{"remove split", func() { m.Remove(1, 2, nil) }, 105},
		{"remove all", func() { m.Remove(0, 1000, nil) }, 0},
	}
	for _, s := range steps {
		s.op()
		if got := m.Blocks(); got != s.want {
			t.Fatalf("after %s: Blocks() = %d, want %d", s.name, got, s.want)
		}
		if got := sumLen(extents(m)); got != s.want {
			t.Fatalf("after %s: extents sum to %d, want %d", s.name, got, s.want)
		}
	}
}

func TestMapClone(t *testing.T) {
	// Enough extents for a tree of several levels, so that copy-on-write
	// happens below the root.
	const n = 2000
	orig := NewMap()
	for i := range n {
		orig.Insert(Mapping{V: VBlock(3 * i), P: PBlock(7 * i), Len: 2}, nil)
	}
	base := extents(orig)

	t.Run("modify clone", func(t *testing.T) {
		m := buildMap(base...)
		c := m.Clone()
		requireExtents(t, c, base)
		c.Insert(Mapping{V: 1000, P: 1 << 30, Len: 500}, nil)
		c.Remove(0, 10, nil)
		c.Remove(5000, 1, nil)
		requireExtents(t, m, base)
		if c.Blocks() == m.Blocks() {
			t.Fatalf("clone Blocks() = %d did not change", c.Blocks())
		}
	})
	t.Run("modify original", func(t *testing.T) {
		m := buildMap(base...)
		c := m.Clone()
		m.Insert(Mapping{V: 1000, P: 1 << 30, Len: 500}, nil)
		m.Remove(0, 10, nil)
		requireExtents(t, c, base)
	})
	t.Run("modify both", func(t *testing.T) {
		m := buildMap(base...)
		c := m.Clone()
		m.Remove(0, 3*n, nil)
		c.Insert(Mapping{V: 0, P: 0, Len: 3 * n}, nil)
		requireExtents(t, m, nil)
		requireExtents(t, c, []Mapping{{V: 0, P: 0, Len: 3 * n}})
	})
	t.Run("clone of clone", func(t *testing.T) {
		m := buildMap(base...)
		c1 := m.Clone()
		c1.Remove(0, 30, nil)
		want1 := extents(c1)
		c2 := c1.Clone()
		c2.Insert(Mapping{V: 0, P: 5, Len: 30}, nil)
		requireExtents(t, m, base)
		requireExtents(t, c1, want1)
		if got := c2.Blocks(); got != sumLen(base)-20+30 {
			t.Fatalf("c2.Blocks() = %d", got)
		}
	})
}

// TestMapCloneConcurrent modifies a map and its clone from two goroutines;
// with -race it checks the promise in the package doc.
func TestMapCloneConcurrent(t *testing.T) {
	m := NewMap()
	model := map[VBlock]PBlock{}
	for i := range 1000 {
		m.Insert(Mapping{V: VBlock(2 * i), P: PBlock(5 * i), Len: 1}, nil)
		model[VBlock(2*i)] = PBlock(5 * i)
	}
	c := m.Clone()
	ms := []*Map{m, c}
	models := []map[VBlock]PBlock{model, maps.Clone(model)}
	var wg sync.WaitGroup
	for k := range ms {
		wg.Go(func() {
			mm, model := ms[k], models[k]
			rng := rand.New(rand.NewPCG(uint64(k), 1))
			for range 2000 {
				v, n := VBlock(rng.IntN(2000)), 1+rng.Uint64N(8)
				if rng.IntN(2) == 0 {
					p := PBlock(rng.IntN(1 << 20))
					mm.Insert(Mapping{V: v, P: p, Len: n}, nil)
					for j := range n {
						model[v+VBlock(j)] = p + PBlock(j)
					}
				} else {
					mm.Remove(v, n, nil)
					for j := range n {
						delete(model, v+VBlock(j))
					}
				}
				mm.Lookup(v, 16, func(Segment) bool { return true })
			}
		})
	}
	wg.Wait()
	for k := range ms {
		checkMap(t, ms[k], models[k], 2100)
	}
}

// checkMap fails unless m maps exactly model, blocks beyond space are
// unmapped, and E1 and E2 hold.
func checkMap(tb testing.TB, m *Map, model map[VBlock]PBlock, space VBlock) {
	tb.Helper()
	checkShape(tb, m, uint64(len(model)), space)
	m.Ascend(func(e Mapping) bool {
		for k := range e.Len {
			v, p := e.V+VBlock(k), e.P+PBlock(k)
			if want, ok := model[v]; !ok || want != p {
				tb.Fatalf("extent %v maps v%d → p%d; model has p%d (mapped %v)", e, v, p, want, ok)
			}
		}
		return true
	})
	// Every extent block is in the model, extents do not overlap and they
	// hold len(model) blocks, so m maps exactly the model.
	checkLookup(tb, m, model, 0, uint64(space))
	checkFind(tb, m, model, space)
}

// checkShape fails unless E1 and E2 hold, m maps blocks blocks, all below
// space, and Blocks and Len agree with Ascend.
func checkShape(tb testing.TB, m *Map, blocks uint64, space VBlock) {
	tb.Helper()
	var total uint64
	var prev Mapping
	i := 0
	m.Ascend(func(e Mapping) bool {
		if e.Len == 0 {
			tb.Fatalf("E1: extent %v has Len 0", e)
		}
		if i > 0 {
			if prev.End() > e.V {
				tb.Fatalf("E1: %v overlaps or precedes %v", prev, e)
			}
			if prev.End() == e.V && prev.PEnd() == e.P {
				tb.Fatalf("E2: %v and %v are not merged", prev, e)
			}
		}
		total += e.Len
		prev = e
		i++
		return true
	})
	if total != blocks {
		tb.Fatalf("extents hold %d blocks, model %d", total, blocks)
	}
	if m.Blocks() != total {
		tb.Fatalf("Blocks() = %d, extents hold %d", m.Blocks(), total)
	}
	if m.Len() != i {
		tb.Fatalf("Len() = %d, Ascend saw %d", m.Len(), i)
	}
	if i > 0 && prev.End() > space {
		tb.Fatalf("extent %v is past the address space %d", prev, space)
	}
}

// checkFind fails unless Find agrees with model for every block below space.
func checkFind(tb testing.TB, m *Map, model map[VBlock]PBlock, space VBlock) {
	tb.Helper()
	for v := range space {
		e, ok := m.Find(v)
		p, want := model[v]
		if ok != want {
			tb.Fatalf("Find(%d) = %v, %v; model mapped %v", v, e, ok, want)
		}
		if ok && (v < e.V || v >= e.End() || e.P+PBlock(v-e.V) != p) {
			tb.Fatalf("Find(%d) = %v; model maps it to p%d", v, e, p)
		}
	}
}

// checkLookup fails unless m.Lookup(v, n) covers [v, v+n) exactly once, in
// order, with segments that agree with model and are as long as possible.
func checkLookup(tb testing.TB, m *Map, model map[VBlock]PBlock, v VBlock, n uint64) {
	tb.Helper()
	segs := lookup(m, v, n)
	cur := v
	for j, s := range segs {
		if s.V != cur || s.Len == 0 {
			tb.Fatalf("Lookup(%d, %d): segment %d is %+v, want one starting at %d with Len ≥ 1", v, n, j, s, cur)
		}
		if j > 0 {
			p := segs[j-1]
			if !p.Mapped && !s.Mapped {
				tb.Fatalf("Lookup(%d, %d): two holes in a row: %+v %+v", v, n, p, s)
			}
			if p.Mapped && s.Mapped && p.P+PBlock(p.Len) == s.P {
				tb.Fatalf("Lookup(%d, %d): contiguous segments not joined: %+v %+v", v, n, p, s)
			}
		}
		if !s.Mapped && s.P != 0 {
			tb.Fatalf("Lookup(%d, %d): hole %+v has a P", v, n, s)
		}
		for k := range s.Len {
			p, ok := model[s.V+VBlock(k)]
			if ok != s.Mapped || (ok && p != s.P+PBlock(k)) {
				tb.Fatalf("Lookup(%d, %d): segment %+v disagrees with model at v%d (p%d, mapped %v)", v, n, s, s.V+VBlock(k), p, ok)
			}
		}
		cur += VBlock(s.Len)
	}
	if cur != v+VBlock(n) {
		tb.Fatalf("Lookup(%d, %d) covered up to %d", v, n, cur)
	}
}

// mapHarness applies operations to a Map and to a model and checks that the
// two agree.
type mapHarness struct {
	tb    testing.TB
	space VBlock // every operation stays below space
	m     *Map
	model map[VBlock]PBlock
	// snaps are frozen copies of earlier states, from Clone.
	snaps []mapSnap
}

type mapSnap struct {
	m     *Map
	model map[VBlock]PBlock
}

func newMapHarness(tb testing.TB, space VBlock) *mapHarness {
	return &mapHarness{tb: tb, space: space, m: NewMap(), model: map[VBlock]PBlock{}}
}

// wantRemoved returns the blocks of [v, v+n) that the model maps, in order,
// as single-block mappings.
func (h *mapHarness) wantRemoved(v VBlock, n uint64) []Mapping {
	var out []Mapping
	for k := range n {
		if p, ok := h.model[v+VBlock(k)]; ok {
			out = append(out, Mapping{V: v + VBlock(k), P: p, Len: 1})
		}
	}
	return out
}

// checkRemoved fails unless the pieces reported are in order, not empty, and
// cover exactly the blocks in want.
func (h *mapHarness) checkRemoved(op string, got, want []Mapping) {
	h.tb.Helper()
	var blocks []Mapping
	for j, e := range got {
		if e.Len == 0 {
			h.tb.Fatalf("%s: removed piece %v has Len 0", op, e)
		}
		if j > 0 && got[j-1].End() > e.V {
			h.tb.Fatalf("%s: removed pieces out of order: %v", op, got)
		}
		for k := range e.Len {
			blocks = append(blocks, Mapping{V: e.V + VBlock(k), P: e.P + PBlock(k), Len: 1})
		}
	}
	if !slices.Equal(blocks, want) {
		h.tb.Fatalf("%s: removed %v, model had %v", op, got, want)
	}
}

func (h *mapHarness) insert(mp Mapping) {
	h.tb.Helper()
	want := h.wantRemoved(mp.V, mp.Len)
	var got []Mapping
	h.m.Insert(mp, collect(&got))
	h.checkRemoved("Insert "+mp.String(), got, want)
	for k := range mp.Len {
		h.model[mp.V+VBlock(k)] = mp.P + PBlock(k)
	}
}

func (h *mapHarness) remove(v VBlock, n uint64) {
	h.tb.Helper()
	want := h.wantRemoved(v, n)
	var got []Mapping
	h.m.Remove(v, n, collect(&got))
	h.checkRemoved("Remove", got, want)
	for k := range n {
		delete(h.model, v+VBlock(k))
	}
}

// clone freezes the current state as a snapshot and carries on with either
// the clone or the original, so that writes to both sides are tested.
func (h *mapHarness) clone(keepOriginal bool) {
	c := h.m.Clone()
	frozen := h.m
	if keepOriginal {
		frozen = c
	} else {
		h.m = c
	}
	h.snaps = append(h.snaps, mapSnap{m: frozen, model: maps.Clone(h.model)})
}

func (h *mapHarness) check() {
	h.tb.Helper()
	checkMap(h.tb, h.m, h.model, h.space)
}

// checkNear is a cheaper check: the invariants everywhere, but the model
// only in and next to [v, v+n), the range the last operation changed.
func (h *mapHarness) checkNear(v VBlock, n uint64) {
	h.tb.Helper()
	checkShape(h.tb, h.m, uint64(len(h.model)), h.space)
	lo := max(v, 1) - 1
	checkLookup(h.tb, h.m, h.model, lo, uint64(min(v+VBlock(n)+1, h.space)-lo))
}

// checkSnaps checks that the snapshots still hold what they held when taken.
func (h *mapHarness) checkSnaps() {
	h.tb.Helper()
	for _, s := range h.snaps {
		checkShape(h.tb, s.m, uint64(len(s.model)), h.space)
		checkLookup(h.tb, s.m, s.model, 0, uint64(h.space))
	}
}

func TestMapRandom(t *testing.T) {
	const (
		space  = 200
		maxLen = 16
	)
	ops := 4000
	if testing.Short() {
		ops = 1000
	}
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0xe7))
			h := newMapHarness(t, space+maxLen)
			i := 0
			defer func() {
				if t.Failed() {
					t.Logf("failed at op %d", i)
				}
			}()
			for ; i < ops; i++ {
				v := VBlock(rng.IntN(space))
				switch r := rng.IntN(100); {
				case r < 55:
					// Bias P so that neighbours often continue each other.
					var p PBlock
					switch rng.IntN(3) {
					case 0:
						p = PBlock(v)
					case 1:
						p = PBlock(v) + 1000
					default:
						p = PBlock(rng.IntN(500))
					}
					h.insert(Mapping{V: v, P: p, Len: rng.Uint64N(maxLen + 1)})
				case r < 99:
					h.remove(v, rng.Uint64N(maxLen*2))
				default:
					if len(h.snaps) < 20 {
						h.clone(rng.IntN(2) == 0)
					}
				}
				h.check()
				// n = 0 is TestMapLookupZeroLength's job.
				checkLookup(t, h.m, h.model, VBlock(rng.IntN(space)), 1+rng.Uint64N(40))
			}
			h.checkSnaps()
		})
	}
}

// runMapOps runs fuzz input as Map operations, four bytes each:
//
//	b[0]: low 2 bits pick insert (0, 1), remove (2) or clone (3); bit 2 makes
//	      an insert's P equal to V plus b[3]
//	b[1]: V
//	b[2]: Len, modulo 32
//	b[3]: P
func runMapOps(t *testing.T, data []byte) {
	const space = 256 + 32
	h := newMapHarness(t, space)
	for len(data) >= 4 {
		op, v, n, p := data[0], VBlock(data[1]), uint64(data[2]%32), PBlock(data[3])
		data = data[4:]
		switch op & 3 {
		case 0, 1:
			if op&4 != 0 {
				p += PBlock(v)
			}
			h.insert(Mapping{V: v, P: p, Len: n})
		case 2:
			h.remove(v, n)
		case 3:
			if len(h.snaps) < 8 {
				h.clone(op&8 != 0)
			}
		}
		// The full check reads the whole model; doing it once at the end
		// keeps the fuzzer (and its minimizer) fast.
		h.checkNear(v, n)
	}
	h.check()
	h.checkSnaps()
}

func FuzzMapOps(f *testing.F) {
	op := func(kind byte, v, n, p byte) []byte { return []byte{kind, v, n, p} }
	f.Add([]byte{})
	f.Add(op(0, 10, 5, 100))
	f.Add(slices.Concat(op(0, 10, 5, 100), op(0, 15, 5, 105), op(0, 5, 5, 95)))  // merges
	f.Add(slices.Concat(op(0, 0, 30, 0), op(0, 10, 5, 200), op(2, 12, 10, 0)))   // split, remove
	f.Add(slices.Concat(op(4, 0, 31, 0), op(3, 0, 0, 0), op(4, 40, 10, 0)))      // clone, insert
	f.Add(slices.Concat(op(4, 0, 31, 7), op(11, 0, 0, 0), op(2, 3, 20, 0)))      // clone, keep original
	f.Add(slices.Concat(op(0, 250, 31, 255), op(0, 0, 0, 0), op(2, 240, 31, 0))) // high addresses, empty ops
	seed := make([]byte, 0, 64*4)
	rng := rand.New(rand.NewPCG(9, 9))
	for range 64 {
		seed = binary.LittleEndian.AppendUint32(seed, rng.Uint32())
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		// Long inputs find little more and make minimizing slow.
		if len(data) > 4*64 {
			data = data[:4*64]
		}
		runMapOps(t, data)
	})
}
