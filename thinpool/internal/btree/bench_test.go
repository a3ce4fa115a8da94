package btree

import (
	"fmt"
	"testing"

	"github.com/thinpool/thinpool/extent"
)

// benchOrigin returns a world whose device 0 maps 20,000 single-block
// extents (every other block, written in random order, pool blocks
// allocated next-fit as the engine does), committed: the origin of issue
// 13's scale workload.
func benchOrigin(b *testing.B) *world {
	b.Helper()
	w := newWorld(b, 1, 3000, 1<<17, 40000)
	w.nextFit = true
	w.create()
	w.prefill(0, 20000)
	return w
}

// BenchmarkSnapshot: a snapshot of a 20,000-extent origin with 10, 100 and
// 1000 snapshots already there, committed (Flush writes one space-map page).
func BenchmarkSnapshot(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			w := benchOrigin(b)
			for range n {
				w.snapshot(0)
			}
			w.fatal(w.commit())
			writes := w.s.Stats().Writes
			ops := 0
			for b.Loop() {
				if _, err := w.devs[0].Snapshot(); err != nil {
					b.Fatal(err)
				}
				commit(b, w.s, w.st)
				ops++
			}
			b.ReportMetric(float64(w.s.Stats().Writes-writes)/float64(ops), "nodes-written/op")
		})
	}
}

// BenchmarkFirstWrite: the first write of one block into a new snapshot of
// the 20,000-extent origin shadows the path to its leaf (the leaf's runs
// gain a reference in the data space map); timed alone, without the
// snapshot, the commits and the cleanup.
func BenchmarkFirstWrite(b *testing.B) {
	w := benchOrigin(b)
	shadowed, ops := uint64(0), 0
	for b.Loop() {
		b.StopTimer()
		id := w.snapshot(0)
		w.fatal(w.commit())
		before := w.s.Stats().Shadowed
		v := extent.VBlock(2 * w.rng.Uint64N(20000))
		b.StartTimer()
		w.fatal(w.write(id, v, 1))
		b.StopTimer()
		shadowed += w.s.Stats().Shadowed - before
		ops++
		w.delete(id)
		w.fatal(w.commit())
		b.StartTimer()
	}
	b.ReportMetric(float64(shadowed)/float64(ops), "nodes-shadowed/op")
}

// BenchmarkFlush: Flush and Committed after 100 random one-block writes to
// the origin (timed alone).
func BenchmarkFlush(b *testing.B) {
	w := benchOrigin(b)
	written, ops := uint64(0), 0
	for b.Loop() {
		b.StopTimer()
		for range 100 {
			w.fatal(w.write(0, extent.VBlock(2*w.rng.Uint64N(20000)), 1))
		}
		before := w.s.Stats().Writes
		b.StartTimer()
		w.fatal(w.commit())
		b.StopTimer()
		written += w.s.Stats().Writes - before
		ops++
		b.StartTimer()
	}
	b.ReportMetric(float64(written)/float64(ops), "nodes-written/op")
}
