package thinpool

// Regression tests for issue 10's concurrency and range bugs: I/O racing
// commits and record changes (run under -race, as make test does), reads
// near math.MaxInt64, and concurrent Grow and GrowMetadata.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"testing"
)

// TestRaceIOAgainstCommits runs reads and writes while other goroutines
// checkpoint, sync, rename, relabel, snapshot and grow the pool, and ask
// devices for their id. Under -race it fails if any of these reads pool or
// device state that another replaces without the lock (the superblock
// during a checkpoint, a device record during Rename or SetLabels).
func TestRaceIOAgainstCommits(t *testing.T) { forEachFormat(t, raceIOAgainstCommits) }

func raceIOAgainstCommits(t *testing.T, format int) {
	const blk = DefaultBlockSize
	store := newPageStore()
	p, err := CreateFile(store.open(), Options{DataSize: 256 * blk, FormatVersion: format})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		mustCheck(t, p)
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	}()
	d := mustThin(t, p, "d", 16*blk)
	mustWrite(t, d, pattern(1, 16*blk), 0)

	const rounds = 60
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	run := func(name string, fn func(i int) error) {
		wg.Go(func() {
			for i := range rounds {
				if err := fn(i); err != nil {
					errs <- fmt.Errorf("%s round %d: %w", name, i, err)
					return
				}
			}
		})
	}
	run("write", func(i int) error {
		_, err := d.WriteAt(pattern(byte(i), 4096), int64(i%16)*blk)
		return err
	})
	run("read", func(i int) error {
		_, err := d.ReadAt(make([]byte, 8192), int64(i%16)*blk)
		return err
	})
	run("read past end", func(i int) error {
		// An error path that names the device.
		if _, err := d.ReadAt(make([]byte, 10), -1); !errors.Is(err, ErrOutOfRange) {
			return fmt.Errorf("negative offset: %v", err)
		}
		return nil
	})
	run("id", func(int) error {
		if d.ID() != 1 {
			return fmt.Errorf("id %d", d.ID())
		}
		return nil
	})
	run("checkpoint", func(int) error { return p.Checkpoint() })
	run("sync", func(int) error { return d.Sync() })
	run("rename", func(i int) error {
		if i%2 == 0 {
			return p.Rename("d", "e")
		}
		return p.Rename("e", "d")
	})
	run("labels", func(i int) error {
		name := "d"
		if i%2 == 1 {
			name = "e"
		}
		err := p.SetLabels(name, map[string]string{"round": fmt.Sprint(i)})
		if errors.Is(err, ErrNotFound) { // renamed under us
			err = nil
		}
		return err
	})
	run("snapshot", func(i int) error {
		for _, origin := range []string{"d", "e"} {
			s, err := p.SnapshotLabeled(origin, fmt.Sprintf("s%d", i), true, nil)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			_ = s.ID()
			return p.Delete(fmt.Sprintf("s%d", i))
		}
		return nil
	})
	run("grow", func(i int) error {
		if i%10 != 0 {
			return nil
		}
		return p.Grow(int64(256+i+1) * blk)
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestReadAtHugeOffset reads near math.MaxInt64, where off+len overflows:
// it is past the end, so io.EOF and no bytes, as for any offset past the end.
func TestReadAtHugeOffset(t *testing.T) {
	p, _ := mustCreatePool(t, 64*DefaultBlockSize)
	d := mustThin(t, p, "d", 256<<10)
	for _, tc := range []struct {
		name string
		off  int64
		n    int
	}{
		{"MaxInt64-10", math.MaxInt64 - 10, 100},
		{"MaxInt64", math.MaxInt64, 1},
		{"MaxInt64-len+1", math.MaxInt64 - 99, 100},
		{"at the end", 256 << 10, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := d.ReadAt(make([]byte, tc.n), tc.off)
			if n != 0 || err != io.EOF {
				t.Fatalf("ReadAt(%d bytes at %d) = %d, %v; want 0, io.EOF", tc.n, tc.off, n, err)
			}
		})
	}
	// The last bytes still read, with io.EOF for the part past the end.
	if n, err := d.ReadAt(make([]byte, 20), 256<<10-10); n != 10 || err != io.EOF {
		t.Fatalf("read across the end = %d, %v; want 10, io.EOF", n, err)
	}
	if n, err := d.ReadAt(nil, 256<<10); n != 0 || err != nil {
		t.Fatalf("empty read at the end = %d, %v; want 0, nil", n, err)
	}
}

// TestConcurrentGrow races two Grows (and two GrowMetadatas) from the same
// size: the larger must win whatever the order, the pool must never shrink,
// and it must reopen with the size it reports.
func TestConcurrentGrow(t *testing.T) { forEachFormat(t, concurrentGrow) }

func concurrentGrow(t *testing.T, format int) {
	const blk = DefaultBlockSize
	rounds := 150
	if testing.Short() {
		rounds = 20
	}
	for i := range rounds {
		store := newPageStore()
		p, err := CreateFile(store.open(), Options{DataSize: 16 * blk, MetadataSize: 1 << 20, FormatVersion: format})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		growErr := make([]error, 4)
		for j, size := range []int64{32 * blk, 48 * blk} {
			wg.Go(func() { growErr[j] = p.Grow(size) })
		}
		for j, size := range []int64{2 << 20, 3 << 20} {
			wg.Go(func() { growErr[2+j] = p.GrowMetadata(size) })
		}
		wg.Wait()
		for j, err := range growErr {
			// The smaller one may lose the race to the larger and be
			// refused as not growing; nothing else may fail.
			if err != nil && (j%2 == 1 || !errors.Is(err, ErrInvalid)) {
				t.Fatalf("round %d: grow %d: %v", i, j, err)
			}
		}
		u := p.Usage()
		if u.DataBlocks != 48 {
			t.Fatalf("round %d: %d data blocks after growing to 32 and 48", i, u.DataBlocks)
		}
		if u.MetadataSize != 3<<20 {
			t.Fatalf("round %d: metadata size %d after growing to 2 and 3 MiB", i, u.MetadataSize)
		}
		d := mustThin(t, p, "d", 48*blk)
		mustWrite(t, d, pattern(byte(i), 48*blk), 0) // every block, the last ones too
		mustCheck(t, p)
		if err := p.Close(); err != nil {
			t.Fatalf("round %d: close: %v", i, err)
		}
		q, err := OpenFile(store.open())
		if err != nil {
			t.Fatalf("round %d: reopen: %v", i, err)
		}
		if u := q.Usage(); u.DataBlocks != 48 || u.MetadataSize != 3<<20 {
			t.Fatalf("round %d: reopened with %d blocks and %d metadata bytes", i, u.DataBlocks, u.MetadataSize)
		}
		mustCheck(t, q)
		q.Close()
	}
}

// TestForgedJournalEntry stores, in a label value, bytes that form a
// well-formed journal entry of the next epoch (checksummed as a v1 entry
// is), placed so that they land on a sector boundary of the journal: the
// second sector of the entry that carries the label. After a checkpoint,
// one small commit (one sector, at journal offset 0) and an unclean
// shutdown, recovery reads the sector after that commit's entry: the stale
// label bytes. They must not replay: the forged entry maps a block of
// device b into device a, which would then read b's data.
func TestForgedJournalEntry(t *testing.T) {
	const blk = DefaultBlockSize
	store := newPageStore()
	file := store.open()
	p, err := CreateFile(file, Options{DataSize: 64 * blk})
	if err != nil {
		t.Fatal(err)
	}
	a := mustThin(t, p, "a", 4*blk)
	b := mustThin(t, p, "b", 4*blk)
	secret := bytes.Repeat([]byte("b's secret|"), blk/11+1)[:blk]
	mustWrite(t, b, secret, 0)
	bm, err := p.Mappings("b")
	if err != nil || len(bm) != 1 {
		t.Fatalf("mappings of b: %v, %v", bm, err)
	}
	if err := p.Checkpoint(); err != nil { // the label's entry goes to journal offset 0
		t.Fatal(err)
	}

	// The label entry: header, update op kind, record up to the value.
	p.mu.RLock()
	gen, tid, aID := p.sb.generation, p.st.tid, a.d.meta.id
	p.mu.RUnlock()
	valueAt := entryHeaderSize + 1 + 28 + (2 + len("a")) + 2 + (2 + len("k")) + 2
	forged := encodeEntry(&superblock{version: formatV1, generation: gen + 1}, 0, tid+3,
		[]op{{kind: opMap, dev: aID, v: 1, p: bm[0].P, n: 1}})
	forged = forged[:entryHeaderSize+le.Uint32(forged[24:])]
	value := make([]byte, metaSectorSize-valueAt+len(forged))
	copy(value[metaSectorSize-valueAt:], forged)
	if err := p.SetLabels("a", map[string]string{"k": string(value)}); err != nil { // seq tid+1
		t.Fatal(err)
	}
	if got := le.Uint32(readFile(t, store, metaOffset+metaSectorSize, 4)); got != journalMagic {
		t.Fatalf("the forged entry is not at journal offset %d (found %#x)", metaSectorSize, got)
	}
	if err := p.Checkpoint(); err != nil { // epoch gen+1 starts at journal offset 0
		t.Fatal(err)
	}
	mustWrite(t, a, pattern(7, 4096), 0)
	if err := p.Sync(); err != nil { // seq tid+2 at offset 0, one sector
		t.Fatal(err)
	}
	file.abandon() // unclean shutdown

	q, err := OpenFile(store.open())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	mustCheck(t, q)
	qa, err := q.Device("a")
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, qa, blk, blk); !allZero(got) {
		t.Fatalf("a's block 1 reads %q...: the forged journal entry was replayed", got[:22])
	}
	mustEqual(t, "a's block 0", mustRead(t, qa, 0, 4096), pattern(7, 4096))
}

// TestJournalSealChanges checks that every checkpoint picks a new seal, so
// an entry of one epoch never checks out in another, even at the same
// offset with the same sequence number.
func TestJournalSealChanges(t *testing.T) {
	p, _ := mustCreatePool(t, 16*DefaultBlockSize)
	seen := map[uint32]bool{}
	for range 20 {
		p.mu.RLock()
		sb := p.sb
		p.mu.RUnlock()
		if sb.version != formatVersion {
			t.Fatalf("superblock version %d", sb.version)
		}
		seen[sb.seal] = true
		if err := p.Checkpoint(); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) < 19 { // two equal random u32s in 20 draws: about 1 in 10^7
		t.Fatalf("20 checkpoints used %d seals", len(seen))
	}
}

func readFile(t testing.TB, s *pageStore, off int64, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := s.open().ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRaceIOAgainstClose closes the pool while reads and writes run: each
// either completes or fails with ErrClosed, and -race sees no unlocked
// access to what Close's final checkpoint changes.
func TestRaceIOAgainstClose(t *testing.T) { forEachFormat(t, raceIOAgainstClose) }

func raceIOAgainstClose(t *testing.T, format int) {
	const blk = DefaultBlockSize
	for round := range 20 {
		p, err := CreateFile(newPageStore().open(), Options{DataSize: 64 * blk, FormatVersion: format})
		if err != nil {
			t.Fatal(err)
		}
		d := mustThin(t, p, "d", 8*blk)
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for w := range 4 {
			wg.Go(func() {
				for i := 0; ; i++ {
					var err error
					if w%2 == 0 {
						_, err = d.WriteAt(pattern(byte(i), 4096), int64((i+w)%8)*blk)
					} else {
						_, err = d.ReadAt(make([]byte, 4096), int64((i+w)%8)*blk)
					}
					if errors.Is(err, ErrClosed) {
						return
					}
					if err != nil {
						errs <- fmt.Errorf("round %d worker %d: %w", round, w, err)
						return
					}
				}
			})
		}
		if err := p.Close(); err != nil {
			t.Fatalf("round %d: close: %v", round, err)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
}

// TestCheckInvariantsPanics breaks I1 in memory: the check that builds
// with -tags invariants run after every commit must catch it.
func TestCheckInvariantsPanics(t *testing.T) {
	p, _ := mustCreatePool(t, 16*DefaultBlockSize)
	d := mustThin(t, p, "d", DefaultBlockSize)
	mustWrite(t, d, pattern(1, 4096), 0)
	p.mu.Lock()
	p.checkInvariants() // a sound state: no panic
	ms, _ := p.st.devs[d.d.meta.id].mem().Last()
	p.st.memRefs().Set(ms.P, ms.Len, 0)
	defer func() {
		p.st.memRefs().Set(ms.P, ms.Len, 1)
		p.mu.Unlock()
		if recover() == nil {
			t.Fatal("checkInvariants did not panic on a block mapped without a reference")
		}
	}()
	p.checkInvariants()
}
