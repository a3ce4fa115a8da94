package extent

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchMap returns a map of n single-block extents that do not merge, at
// every other virtual block.
func benchMap(n int) *Map {
	m := NewMap()
	for i := range n {
		m.Insert(Mapping{V: VBlock(2 * i), P: PBlock(3 * i), Len: 1}, nil)
	}
	return m
}

// randomMappings returns n mappings of 1 to 16 blocks in [0, space) that
// rarely continue each other.
func randomMappings(n int, space uint64) []Mapping {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]Mapping, n)
	for i := range out {
		out[i] = Mapping{V: VBlock(rng.Uint64N(space)), P: PBlock(rng.Uint64N(1 << 40)), Len: 1 + rng.Uint64N(16)}
	}
	return out
}

// BenchmarkMapInsertSequential appends extents that merge with the last one,
// as a sequentially written device does; the map stays one extent.
func BenchmarkMapInsertSequential(b *testing.B) {
	b.ReportAllocs()
	m := NewMap()
	var v VBlock
	for b.Loop() {
		m.Insert(Mapping{V: v, P: PBlock(v) + 1000, Len: 16}, nil)
		v += 16
	}
	if m.Len() != 1 {
		b.Fatalf("map has %d extents, want 1", m.Len())
	}
}

// BenchmarkMapInsertRandom overwrites random ranges of a 1M-block device.
func BenchmarkMapInsertRandom(b *testing.B) {
	b.ReportAllocs()
	ms := randomMappings(1<<16, 1<<20)
	m := NewMap()
	i := 0
	for b.Loop() {
		m.Insert(ms[i%len(ms)], nil)
		i++
	}
}

// BenchmarkMapLookup looks up 8-block ranges in a map of 1e5 extents.
func BenchmarkMapLookup(b *testing.B) {
	const n = 100_000
	b.ReportAllocs()
	m := benchMap(n)
	rng := rand.New(rand.NewPCG(3, 4))
	vs := make([]VBlock, 1<<16)
	for i := range vs {
		vs[i] = VBlock(rng.IntN(2 * n))
	}
	var segs int
	i := 0
	for b.Loop() {
		m.Lookup(vs[i%len(vs)], 8, func(Segment) bool {
			segs++
			return true
		})
		i++
	}
	if segs == 0 {
		b.Fatal("no segments")
	}
}

// BenchmarkMapClone takes a snapshot before every write, as btree's
// CloneEachTime does: each write copies one path of the tree.
func BenchmarkMapClone(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprint("extents=", n), func(b *testing.B) {
			b.ReportAllocs()
			m := benchMap(n)
			ms := randomMappings(1<<16, uint64(2*n))
			i := 0
			for b.Loop() {
				m = m.Clone()
				m.Insert(ms[i%len(ms)], nil)
				i++
			}
		})
	}
}

// BenchmarkRefCountsInc adds references to 16-block ranges: sequential ones
// that extend a single run, and random ones over 1M blocks that fragment it.
func BenchmarkRefCountsInc(b *testing.B) {
	b.Run("sequential", func(b *testing.B) {
		b.ReportAllocs()
		r := NewRefCounts()
		var p PBlock
		for b.Loop() {
			r.Inc(p, 16)
			p += 16
		}
	})
	b.Run("random", func(b *testing.B) {
		b.ReportAllocs()
		rng := rand.New(rand.NewPCG(5, 6))
		ps := make([]PBlock, 1<<16)
		for i := range ps {
			ps[i] = PBlock(rng.IntN(1 << 20))
		}
		r := NewRefCounts()
		i := 0
		for b.Loop() {
			r.Inc(ps[i%len(ps)], 16)
			i++
		}
	})
}
