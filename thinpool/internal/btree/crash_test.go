package btree

import (
	"errors"
	"testing"
)

// TestCrash runs random snapshot-heavy workloads that commit at random
// points and crash at random moments: in the middle of a Flush (a write
// fails and the store is dropped), after the Flush but before the
// superblock, after the superblock but before Committed, or between
// commits. A crash keeps a random subset of the unsynced writes. After
// each crash the pool reopens at the last superblock and must equal the
// model of that commit, with N1, N2, N4 and B1 (also after a commit with
// no changes, which must not revive a page of the flush the crash cut
// short); the workload then goes on from there, several crashes per run.
func TestCrash(t *testing.T) {
	for seed := range uint64(ops(80)) {
		w := newWorld(t, seed, 4000, 1<<16, 3000)
		w.s.SetCacheBytes(64 * NodeSize)
		w.create()
		w.prefill(0, 300+int(seed%5)*300)
		crashes := 0
		for op := 0; crashes < 4; op++ {
			if err := w.step(); err != nil {
				t.Fatalf("seed %d op %d: %v", seed, op, err)
			}
			if w.rng.IntN(20) != 0 {
				continue
			}
			if w.rng.IntN(8) == 0 { // GrowMetadata: the superblock names the new size
				n := w.s.Nodes() + 1 + w.rng.Uint64N(groupNodes)
				w.st.grow(testBase + int64(n)*NodeSize)
				w.s.Grow(n)
			}
			x := w.rng.IntN(10)
			switch {
			case x < 4: // a clean commit
				w.fatal(w.commit())
				continue
			case x < 6: // a write of the flush fails
				w.st.failAfter = w.rng.IntN(len(w.s.dirty) + len(w.s.dirtyGroups) + 1)
				if err := w.commit(); err != nil && !errors.Is(err, errInjected) {
					t.Fatalf("seed %d: %v", seed, err)
				}
			case x < 8: // flushed, no superblock
				w.fatal(w.s.Flush(w.s.Gen()))
				if w.rng.IntN(2) == 0 {
					w.st.Sync()
				}
			case x < 9: // superblock written, Committed not called
				g := w.s.Gen()
				w.fatal(w.s.Flush(g))
				w.st.Sync()
				w.sb = w.snapshotSuperblock(g)
			default: // between commits
			}
			w.st.crash(w.rng)
			w.reopen()
			w.check()
			if w.rng.IntN(3) == 0 { // a commit without changes (Close after Open)
				w.fatal(w.commit())
				w.reopen()
				w.check()
			}
			crashes++
		}
	}
}
