package thinpool_test

// Engine benchmarks. They run on the real disk, in b.TempDir() (under
// $TMPDIR), and need about 16 GiB of free space at their peak
// (BenchmarkMetadata); every pool file is removed when its benchmark ends.
// bench/engine.sh runs them several times and prints the ratios.
//
// Each timed iteration is a batch big enough to give a usable figure with
// -benchtime 1x (as `make bench` runs them): 1 GiB for the sequential
// benchmarks, 1024 writes for CoW, 8 snapshots, one pass over 256 MiB.
// Figures other than ns/op and MB/s are reported with b.ReportMetric:
//
//	cpu-ns/op        CPU time of the process in the timed part (see cpuMeter)
//	iops             4 KiB writes per second (BenchmarkCoWRandom4K)
//	ns/snapshot      time to create one snapshot (BenchmarkSnapshotCreate)
//	plain-commit-ns  the same syncs and write on a plain file (the floor)
//	extents          extents of the device measured
//	meta-*-bytes     metadata sizes (BenchmarkMetadata)
//	ms/open          time to open the pool (BenchmarkOpen)
//	replayed-ops     journal operations that Open replays (BenchmarkOpen)
//
// Targets: SeqWrite thin-fresh >= 0.7x plainfile and thin-overwrite >= 0.9x
// plainfile-overwrite; SeqRead thin >= 0.9x plainfile; SnapshotCreate
// < 1 ms, the same for 1 GiB and 10 GiB; ReadDepth 100 within 10% of depth
// 1; Metadata <= 64 KiB after 10 GiB written sequentially; Open < 2 s with
// 1,000,000 extents.
//
// Wall-clock figures on a virtual machine's disk vary by several times from
// one minute to the next, and other processes on a shared machine slow the
// CPU-bound ones: compare thin with its baseline from the same run, over
// several runs (-count), and look at cpu-ns/op for the engine's own cost.

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thinpool/thinpool/thinpool"
)

const (
	kib = int64(1) << 10
	mib = int64(1) << 20
	gib = int64(1) << 30

	blockSize = thinpool.DefaultBlockSize
	// ioSize is the size of each sequential read and write.
	ioSize = 1 * mib
	// syncEvery is how often the sequential writers sync: thin devices
	// with Thin.Sync, plain files with fdatasync.
	syncEvery = 64 * mib
)

// randBuf returns n bytes of seeded pseudo-random data (not zeros, so no
// layer can skip or compress them).
func randBuf(n int64, seed uint64) []byte {
	var s [32]byte
	s[0] = byte(seed)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(s).Read(b)
	return b
}

// createPool creates a pool in a fresh temp dir; it is closed (and the dir
// removed) when the benchmark ends.
func createPool(b *testing.B, o thinpool.Options) (*thinpool.Pool, string) {
	b.Helper()
	path := filepath.Join(b.TempDir(), "pool")
	p, err := thinpool.Create(path, o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Close() }) // ErrClosed if the benchmark closed it
	return p, path
}

func createThin(b *testing.B, p *thinpool.Pool, name string, size int64) *thinpool.Thin {
	b.Helper()
	t, err := p.CreateThin(name, size, nil)
	if err != nil {
		b.Fatal(err)
	}
	return t
}

func snapshot(b *testing.B, p *thinpool.Pool, origin, name string, readOnly bool) *thinpool.Thin {
	b.Helper()
	t, err := p.Snapshot(origin, name, readOnly)
	if err != nil {
		b.Fatal(err)
	}
	return t
}

// writeSeq writes [0, size) of w in len(buf) pieces, all from buf, calling
// sync after every syncEvery bytes and at the end.
func writeSeq(w io.WriterAt, sync func() error, buf []byte, size int64) error {
	n := int64(len(buf))
	for off := int64(0); off < size; off += n {
		if _, err := w.WriteAt(buf[:min(n, size-off)], off); err != nil {
			return err
		}
		if end := off + n; end%syncEvery == 0 && end < size {
			if err := sync(); err != nil {
				return err
			}
		}
	}
	return sync()
}

// readSeq reads [0, size) of r in len(buf) pieces.
func readSeq(r io.ReaderAt, buf []byte, size int64) error {
	n := int64(len(buf))
	for off := int64(0); off < size; off += n {
		if _, err := r.ReadAt(buf[:min(n, size-off)], off); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
	}
	return nil
}

// plainFile is the baseline: a host file used with pread/pwrite and
// fdatasync, as the pool uses its own file.
type plainFile struct{ *os.File }

func (f plainFile) Sync() error { return unix.Fdatasync(int(f.Fd())) }

// commit does what a pool commit does to its file, on f: fdatasync, write
// rec (a journal entry) at off, fdatasync.
func (f plainFile) commit(rec []byte, off int64) error {
	if err := f.Sync(); err != nil {
		return err
	}
	if _, err := f.WriteAt(rec, off); err != nil {
		return err
	}
	return f.Sync()
}

// punchAll deallocates the whole file, keeping its size, so the next
// writes allocate again as a thin device's first writes do.
func (f plainFile) punchAll(size int64) error {
	return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, size)
}

// createPlain creates a sparse file of size bytes in a fresh temp dir.
func createPlain(b *testing.B, size int64) plainFile {
	b.Helper()
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "plain"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = f.Close() })
	if err := f.Truncate(size); err != nil {
		b.Fatal(err)
	}
	return plainFile{f}
}

// settle commits the host file system holding path (syncfs), so that the
// work a hole punch leaves behind (journal commit, online discard) is done
// before the timer starts rather than during the timed writes.
func settle(b *testing.B, path string) {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		b.Fatal(err)
	}
}

// cpuMeter adds up the CPU time (user and system, all threads of the
// process) used in the timed parts of a benchmark. Other processes on a
// shared machine inflate the wall time but hardly this, so cpu-ns/op shows
// the engine's own cost next to the baseline's. (Writeback by kernel
// threads is not included.)
type cpuMeter struct{ total time.Duration }

func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (m *cpuMeter) run(f func() error) error {
	t0 := cpuTime()
	err := f()
	m.total += cpuTime() - t0
	return err
}

func (m *cpuMeter) report(b *testing.B) {
	b.ReportMetric(float64(m.total.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

func extents(b *testing.B, t *thinpool.Thin) float64 {
	b.Helper()
	u, err := t.Usage()
	if err != nil {
		b.Fatal(err)
	}
	return float64(u.Extents)
}

// BenchmarkSeqWrite writes a 1 GiB device sequentially in 1 MiB writes,
// syncing every 64 MiB and at the end; one op is the whole 1 GiB.
//
//   - thin-fresh: a new device each op, so every block is provisioned
//     (allocated, mapped, journalled). The previous device is deleted
//     outside the timer, which also punches its blocks out of the pool file,
//     so the host file system allocates afresh as well.
//   - thin-overwrite: the same device each op; every block is mapped and
//     not shared, so writes go in place.
//   - plainfile: a sparse host file of the same size, punched whole outside
//     the timer before each op: the baseline for thin-fresh.
//   - plainfile-overwrite: the same host file rewritten: the baseline for
//     thin-overwrite.
//
// Both fresh variants then syncfs (settle) outside the timer, so the host
// file system's work for the punch is not charged to the next op.
func BenchmarkSeqWrite(b *testing.B) {
	const size = 1 * gib
	buf := randBuf(ioSize, 1)
	b.Run("thin-fresh", func(b *testing.B) {
		// One device's worth (and 64 MiB): each device reuses the blocks
		// of the one deleted (and punched) before it, as plainfile rewrites
		// the range it punched.
		p, path := createPool(b, thinpool.Options{DataSize: size + 64*mib})
		var t *thinpool.Thin
		var cpu cpuMeter
		b.SetBytes(size)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			b.StopTimer()
			if t != nil {
				if err := p.Delete(t.Info().Name); err != nil {
					b.Fatal(err)
				}
			}
			t = createThin(b, p, fmt.Sprint("fresh", i), size)
			i++
			settle(b, path)
			b.StartTimer()
			if err := cpu.run(func() error { return writeSeq(t, t.Sync, buf, size) }); err != nil {
				b.Fatal(err)
			}
		}
		cpu.report(b)
		b.ReportMetric(extents(b, t), "extents")
	})
	b.Run("thin-overwrite", func(b *testing.B) {
		p, _ := createPool(b, thinpool.Options{DataSize: size + 64*mib})
		t := createThin(b, p, "a", size)
		if err := writeSeq(t, t.Sync, buf, size); err != nil {
			b.Fatal(err)
		}
		var cpu cpuMeter
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			if err := cpu.run(func() error { return writeSeq(t, t.Sync, buf, size) }); err != nil {
				b.Fatal(err)
			}
		}
		cpu.report(b)
		b.ReportMetric(extents(b, t), "extents")
	})
	b.Run("plainfile", func(b *testing.B) {
		f := createPlain(b, size)
		var cpu cpuMeter
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			if err := f.punchAll(size); err != nil {
				b.Fatal(err)
			}
			settle(b, f.Name())
			b.StartTimer()
			if err := cpu.run(func() error { return writeSeq(f, f.Sync, buf, size) }); err != nil {
				b.Fatal(err)
			}
		}
		cpu.report(b)
	})
	b.Run("plainfile-overwrite", func(b *testing.B) {
		f := createPlain(b, size)
		if err := writeSeq(f, f.Sync, buf, size); err != nil {
			b.Fatal(err)
		}
		var cpu cpuMeter
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			if err := cpu.run(func() error { return writeSeq(f, f.Sync, buf, size) }); err != nil {
				b.Fatal(err)
			}
		}
		cpu.report(b)
	})
}

// BenchmarkSeqRead reads a fully written 1 GiB region in 1 MiB reads; one
// op is the whole 1 GiB.
//
// Both the thin device and the plain file were just written and are read
// once before the timer starts, so both are served from the page cache
// (the machine has far more than 1 GiB of RAM): the benchmark measures the
// engine's per-read overhead (locking, map lookup, pread calls) against a
// bare pread, not the disk. Dropping the cache would need root and would
// measure the disk for both.
func BenchmarkSeqRead(b *testing.B) {
	const size = 1 * gib
	wbuf := randBuf(ioSize, 2)
	b.Run("thin", func(b *testing.B) {
		p, _ := createPool(b, thinpool.Options{DataSize: size + 64*mib})
		t := createThin(b, p, "a", size)
		if err := writeSeq(t, t.Sync, wbuf, size); err != nil {
			b.Fatal(err)
		}
		benchRead(b, t, size)
		b.ReportMetric(extents(b, t), "extents")
	})
	b.Run("plainfile", func(b *testing.B) {
		f := createPlain(b, size)
		if err := writeSeq(f, f.Sync, wbuf, size); err != nil {
			b.Fatal(err)
		}
		benchRead(b, f, size)
	})
}

// benchRead times sequential 1 MiB reads over [0, size) of r, after one
// untimed pass to warm the page cache.
func benchRead(b *testing.B, r io.ReaderAt, size int64) {
	b.Helper()
	buf := make([]byte, ioSize)
	if err := readSeq(r, buf, size); err != nil {
		b.Fatal(err)
	}
	var cpu cpuMeter
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if err := cpu.run(func() error { return readSeq(r, buf, size) }); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}

// BenchmarkCoWRandom4K writes 4 KiB at random offsets into a writable
// snapshot of a fully written 1 GiB origin. One op is 1024 writes and a
// Sync (64 MiB copied, the SeqWrite sync interval); iops counts writes.
//
//   - first-write: each write goes to a 64 KiB block the snapshot has not
//     written yet, so each copies its block (read 64 KiB, write 64 KiB,
//     allocate, map). Blocks are taken in a random order; when all 16384
//     are used the snapshot is replaced, outside the timer.
//   - rewrite: the same writes into blocks the snapshot already owns, which
//     go in place: the cost of a 4 KiB write without copying.
func BenchmarkCoWRandom4K(b *testing.B) {
	const (
		size   = 1 * gib
		batch  = 1024
		nblock = size / blockSize
		wsize  = 4 * kib
	)
	setup := func(b *testing.B) *thinpool.Pool {
		// The origin, plus one snapshot's copies, plus the previous
		// snapshot's copies (freed, reused after they are punched).
		p, _ := createPool(b, thinpool.Options{DataSize: 3*size + 64*mib})
		o := createThin(b, p, "origin", size)
		if err := writeSeq(o, o.Sync, randBuf(ioSize, 3), size); err != nil {
			b.Fatal(err)
		}
		return p
	}
	wbuf := randBuf(wsize, 4)
	rng := rand.New(rand.NewPCG(1, 2))
	// offsets returns one write offset in each of the device's blocks, in
	// a random order.
	offsets := func() []int64 {
		offs := make([]int64, nblock)
		for i, v := range rng.Perm(int(nblock)) {
			offs[i] = int64(v)*blockSize + rng.Int64N(blockSize/wsize)*wsize
		}
		return offs
	}
	var cpu cpuMeter
	writeBatch := func(b *testing.B, t *thinpool.Thin, offs []int64) {
		t0 := cpuTime()
		defer func() { cpu.total += cpuTime() - t0 }()
		for _, off := range offs {
			if _, err := t.WriteAt(wbuf, off); err != nil {
				b.Fatal(err)
			}
		}
		if err := t.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("first-write", func(b *testing.B) {
		p := setup(b)
		cpu = cpuMeter{}
		var t *thinpool.Thin
		var offs []int64
		gen := 0
		b.SetBytes(batch * wsize)
		b.ReportAllocs()
		for b.Loop() {
			if len(offs) == 0 {
				b.StopTimer()
				if t != nil {
					if err := p.Delete(t.Info().Name); err != nil {
						b.Fatal(err)
					}
				}
				t = snapshot(b, p, "origin", fmt.Sprint("snap", gen), false)
				gen++
				offs = offsets()
				b.StartTimer()
			}
			writeBatch(b, t, offs[:batch])
			offs = offs[batch:]
		}
		b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "iops")
		cpu.report(b)
	})
	b.Run("rewrite", func(b *testing.B) {
		p := setup(b)
		t := snapshot(b, p, "origin", "snap", false)
		offs := offsets()
		for i := 0; i < len(offs); i += batch {
			writeBatch(b, t, offs[i:i+batch])
		}
		cpu = cpuMeter{}
		b.SetBytes(batch * wsize)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			writeBatch(b, t, offs[i:i+batch])
			i = (i + batch) % len(offs)
		}
		b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "iops")
		cpu.report(b)
	})
}

// BenchmarkSnapshotCreate takes snapshots of an origin written whole,
// sequentially, so the cost can be compared across origin sizes. One op is
// 8 snapshots; they are deleted outside the timer so every op starts from
// the same state. ns/snapshot is the figure.
//
// A snapshot commits: fdatasync (data before metadata), a 4 KiB journal
// entry written to the next sector of the journal, fdatasync. The disk's flush latency is therefore the floor, and on
// a virtual disk it varies by 10x from minute to minute, so each op is
// followed (outside the timer) by the same sequence on a plain file in the
// same file system, 8 times, reported as plain-commit-ns: compare the two.
func BenchmarkSnapshotCreate(b *testing.B) {
	const batch = 8
	buf := randBuf(ioSize, 5)
	for _, size := range []int64{1 * gib, 10 * gib} {
		b.Run(fmt.Sprintf("%dGiB", size/gib), func(b *testing.B) {
			p, _ := createPool(b, thinpool.Options{DataSize: size + 64*mib})
			o := createThin(b, p, "origin", size)
			// Setup, not timed: 10 GiB takes 30 to 70 s.
			if err := writeSeq(o, o.Sync, buf, size); err != nil {
				b.Fatal(err)
			}
			if u := p.Usage(); u.UsedBlocks != uint64(size/blockSize) {
				b.Fatalf("origin uses %d blocks, want %d", u.UsedBlocks, size/blockSize)
			}
			// Like the journal, the floor writes each record to the next
			// sector of a sparse area, wrapping at its end.
			const floorArea = 4 * mib
			plain := createPlain(b, floorArea)
			floorOff := int64(0)
			var floor time.Duration
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				for range batch {
					snapshot(b, p, "origin", fmt.Sprint("s", n), true)
					n++
				}
				b.StopTimer()
				for k := n - batch; k < n; k++ {
					if err := p.Delete(fmt.Sprint("s", k)); err != nil {
						b.Fatal(err)
					}
				}
				start := time.Now()
				for range batch {
					if err := plain.commit(buf[:4*kib], floorOff); err != nil {
						b.Fatal(err)
					}
					floorOff = (floorOff + 4*kib) % floorArea
				}
				floor += time.Since(start)
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/snapshot")
			b.ReportMetric(float64(floor.Nanoseconds())/float64(b.N*batch), "plain-commit-ns")
			b.ReportMetric(extents(b, o), "extents")
		})
	}
}

// BenchmarkReadDepth reads, in 1 MiB reads over 256 MiB, the last device of
// a chain of writable snapshots: origin -> s1 -> ... -> sDepth, where each
// snapshot gets 4 KiB writes into 4 random blocks before the next is taken
// from it. One op is a pass over the 256 MiB, served from the page cache
// (see BenchmarkSeqRead). A thin device holds its own complete map, so the
// depth costs nothing by itself; what differs is the number of extents,
// which grows with the blocks the chain changed (reported as extents).
func BenchmarkReadDepth(b *testing.B) {
	const (
		size     = 256 * mib
		perLevel = 4
	)
	for _, depth := range []int{1, 100} {
		b.Run(fmt.Sprint(depth), func(b *testing.B) {
			p, _ := createPool(b, thinpool.Options{DataSize: size + 64*mib})
			o := createThin(b, p, "s0", size)
			if err := writeSeq(o, o.Sync, randBuf(ioSize, 6), size); err != nil {
				b.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(3, 4))
			wbuf := randBuf(4*kib, 7)
			var t *thinpool.Thin
			for level := 1; level <= depth; level++ {
				t = snapshot(b, p, fmt.Sprint("s", level-1), fmt.Sprint("s", level), false)
				for range perLevel {
					off := rng.Int64N(size/blockSize)*blockSize + rng.Int64N(blockSize/(4*kib))*4*kib
					if _, err := t.WriteAt(wbuf, off); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := p.Sync(); err != nil {
				b.Fatal(err)
			}
			benchRead(b, t, size)
			b.ReportMetric(extents(b, t), "extents")
		})
	}
}

// BenchmarkMetadata is not a timing benchmark: it reports the metadata a
// pool needs, as Usage gives it, in the loop only reading Usage.
//
//   - seq-10GiB: a 10 GiB device written sequentially in 1 MiB writes,
//     synced every 64 MiB. Target: at most 64 KiB.
//   - random-64KiB: then 100,000 whole-block writes at random block
//     offsets (about 75,000 distinct blocks) into a writable snapshot of
//     it, synced every 1024 writes: the snapshot's map and the reference
//     counts fragment, the realistic worst case (a container's layer).
//
// Metrics: meta-used-bytes is Usage.MetadataUsed after the last Sync (the
// current checkpoint plus the journal written since, so it includes one
// sector per Sync); meta-state-bytes is Usage.MetadataState (the next
// checkpoint's size); meta-reopen-bytes is MetadataUsed after Close and
// Open (the checkpoint alone).
func BenchmarkMetadata(b *testing.B) {
	const (
		size   = 10 * gib
		writes = 100_000
	)
	// Room for the origin and for the snapshot's ~75,000 copied blocks.
	p, path := createPool(b, thinpool.Options{DataSize: size + 5*gib})
	o := createThin(b, p, "seq", size)
	if err := writeSeq(o, o.Sync, randBuf(ioSize, 8), size); err != nil {
		b.Fatal(err)
	}
	// report reopens the pool after recording its usage, and reports both.
	parent := b
	report := func(b *testing.B, dev string) {
		used, state := p.Usage().MetadataUsed, p.Usage().MetadataState
		if err := p.Close(); err != nil {
			b.Fatal(err)
		}
		var err error
		if p, err = thinpool.Open(path); err != nil {
			b.Fatal(err)
		}
		reopened := p
		parent.Cleanup(func() { _ = reopened.Close() })
		t, err := p.Device(dev)
		if err != nil {
			b.Fatal(err)
		}
		var u thinpool.Usage
		for b.Loop() {
			u = p.Usage()
		}
		b.ReportMetric(float64(used), "meta-used-bytes")
		b.ReportMetric(float64(state), "meta-state-bytes")
		b.ReportMetric(float64(u.MetadataUsed), "meta-reopen-bytes")
		b.ReportMetric(extents(b, t), "extents")
	}
	b.Run("seq-10GiB", func(b *testing.B) { report(b, "seq") })

	s := snapshot(b, p, "seq", "rand", false)
	rng := rand.New(rand.NewPCG(5, 6))
	buf := randBuf(blockSize, 9)
	for i := range writes {
		if _, err := s.WriteAt(buf, rng.Int64N(size/blockSize)*blockSize); err != nil {
			b.Fatal(err)
		}
		if (i+1)%1024 == 0 || i == writes-1 {
			if err := s.Sync(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("random-64KiB", func(b *testing.B) { report(b, "rand") })
}

// metaOnlyFile is a pool file that drops writes to the data area (reads
// there return the zeros of the sparse file). Opening a pool reads only
// the superblocks, the checkpoint and the journal, so a pool with 1,000,000
// mapped blocks can be built for BenchmarkOpen without writing 64 GiB.
type metaOnlyFile struct {
	plainFile
	dataOff int64 // writes at or after this offset are dropped
}

var _ thinpool.File = (*metaOnlyFile)(nil)

func (f *metaOnlyFile) WriteAt(b []byte, off int64) (int, error) {
	if off >= f.dataOff {
		return len(b), nil
	}
	return f.plainFile.WriteAt(b, off)
}

func (f *metaOnlyFile) Size() (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (f *metaOnlyFile) PunchHole(off, n int64) error {
	return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}

// BenchmarkOpen times opening a pool whose one device maps 1,000,000
// blocks as 1,000,000 extents: every other block of a 2M-block device,
// written in a random order (the worst case for the map). The pool has the
// default metadata size for its 1M data blocks. It is built once, through
// metaOnlyFile, with a Sync every 4096 writes, and abandoned without Close.
//
//   - unclean: the worst case of recovery, a full journal. The build writes
//     a checkpoint (Pool.Checkpoint) just early enough that the writes
//     after it fill 95% of the journal, so Open decodes a checkpoint of the
//     first extents and then replays one map operation per remaining extent
//     (replayed-ops). Each op opens the file with OpenFile and abandons the
//     pool again (Close would checkpoint it).
//   - clean: after one Open and Close, so Open decodes a checkpoint of
//     1,000,000 extents and an empty journal. Each op is thinpool.Open;
//     Close, which writes a checkpoint, is outside the timer.
func BenchmarkOpen(b *testing.B) {
	const (
		nmapped  = 1_000_000
		devSize  = 2 * nmapped * blockSize
		dataSize = (nmapped + 1024) * blockSize
		perSync  = 4096
		// A Sync of perSync single-block map operations writes a journal
		// entry of 32 + 29*perSync bytes in whole 4 KiB sectors: 30 bytes
		// per operation (FORMAT.md "Journal entry").
		opBytes = 30
	)
	// The journal is an eighth of the metadata area, at most 8 MiB, in
	// whole sectors (FORMAT.md "Sizing the metadata area").
	journal := min(thinpool.DefaultMetadataSize(dataSize, blockSize)/8, 8*mib) &^ (4*kib - 1)
	tail := int(journal*95/100/opBytes) / perSync * perSync
	if tail > nmapped {
		tail = nmapped / perSync * perSync
	}
	path := filepath.Join(b.TempDir(), "pool")
	osf, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	f := &metaOnlyFile{plainFile: plainFile{osf}, dataOff: math.MaxInt64}
	p, err := thinpool.CreateFile(f, thinpool.Options{DataSize: dataSize})
	if err != nil {
		b.Fatal(err)
	}
	f.dataOff = p.Usage().DataOffset
	t := createThin(b, p, "d", devSize)
	buf := make([]byte, blockSize)
	start := time.Now()
	var gen uint64
	unsynced := 0
	for i, v := range rand.New(rand.NewPCG(7, 8)).Perm(nmapped) {
		if i == nmapped-tail {
			if err := p.Checkpoint(); err != nil {
				b.Fatal(err)
			}
			gen, unsynced = p.Usage().Generation, 0
		}
		if _, err := t.WriteAt(buf, 2*int64(v)*blockSize); err != nil {
			b.Fatal(err)
		}
		if unsynced++; unsynced == perSync {
			if err := p.Sync(); err != nil {
				b.Fatal(err)
			}
			unsynced = 0
		}
	}
	if err := p.Sync(); err != nil {
		b.Fatal(err)
	}
	build := time.Since(start)
	u := p.Usage()
	if u.Generation != gen {
		b.Fatalf("a checkpoint was written after the forced one: the journal is smaller than %d bytes", journal)
	}
	if err := osf.Close(); err != nil { // abandon p: no Close, no checkpoint
		b.Fatal(err)
	}
	// check checks that a reopened pool has every extent.
	check := func(b *testing.B, p *thinpool.Pool) {
		b.Helper()
		t, err := p.Device("d")
		if err != nil {
			b.Fatal(err)
		}
		if n := extents(b, t); n != nmapped {
			b.Fatalf("reopened device has %v extents, want %d", n, nmapped)
		}
	}

	b.Run("unclean", func(b *testing.B) {
		var cpu cpuMeter
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			osf, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			t0 := cpuTime()
			p, err := thinpool.OpenFile(&metaOnlyFile{plainFile: plainFile{osf}, dataOff: u.DataOffset})
			cpu.total += cpuTime() - t0
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			check(b, p)
			osf.Close() // abandon p again: the journal stays as it was
			b.StartTimer()
		}
		b.ReportMetric(msPerOp(b), "ms/open")
		cpu.report(b)
		b.ReportMetric(float64(tail), "replayed-ops")
		b.ReportMetric(float64(u.MetadataUsed), "meta-used-bytes")
		b.ReportMetric(build.Seconds(), "build-s")
	})

	p, err = thinpool.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Close(); err != nil {
		b.Fatal(err)
	}
	b.Run("clean", func(b *testing.B) {
		var cpu cpuMeter
		b.ReportAllocs()
		for b.Loop() {
			t0 := cpuTime()
			p, err := thinpool.Open(path)
			cpu.total += cpuTime() - t0
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			check(b, p)
			if err := p.Close(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.ReportMetric(msPerOp(b), "ms/open")
		cpu.report(b)
	})
}

func msPerOp(b *testing.B) float64 {
	return float64(b.Elapsed().Nanoseconds()) / 1e6 / float64(b.N)
}

// BenchmarkSnapshotScale (issue 13) times a snapshot of an origin of 20,000
// extents (every other 64 KiB block of 2.5 GiB, written in random order)
// when N snapshots of it exist already, in format 2 and format 3. Data
// writes are dropped (metaOnlyFile). One op is a batch of 10 snapshots
// (each commits); then, outside the timer, the batch is deleted and a
// Checkpoint, Close and Open are timed once. The metadata area is 4 GiB
// (sparse), so that format 2's whole-state checkpoint of 1000 snapshots
// (about 480 MB) fits.
//
//	ns/snapshot     time per snapshot, its commit included
//	ms/checkpoint   one Checkpoint with N+1 snapshots
//	meta-bytes      Usage.MetadataUsed after that checkpoint (format 3:
//	                nodes in use, counting the two page slots of every
//	                group whether written or not)
//	file-bytes      space the pool file takes on the host (data writes
//	                are dropped, so: the metadata written, journal included)
//	ms/open         OpenFile of the closed pool
func BenchmarkSnapshotScale(b *testing.B) {
	const (
		nmapped  = 20_000
		devSize  = 2 * nmapped * blockSize
		dataSize = devSize + 64*mib
		batch    = 10
	)
	for _, format := range []int{2, 3} {
		for _, n := range []int{10, 100, 1000} {
			b.Run(fmt.Sprintf("format=%d/snapshots=%d", format, n), func(b *testing.B) {
				path := filepath.Join(b.TempDir(), "pool")
				osf, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
				if err != nil {
					b.Fatal(err)
				}
				f := &metaOnlyFile{plainFile: plainFile{osf}, dataOff: math.MaxInt64}
				p, err := thinpool.CreateFile(f, thinpool.Options{DataSize: dataSize, MetadataSize: 4 * gib, FormatVersion: format})
				if err != nil {
					b.Fatal(err)
				}
				f.dataOff = p.Usage().DataOffset
				o := createThin(b, p, "origin", devSize)
				buf := make([]byte, blockSize)
				for i, v := range rand.New(rand.NewPCG(7, 8)).Perm(nmapped) {
					if _, err := o.WriteAt(buf, 2*int64(v)*blockSize); err != nil {
						b.Fatal(err)
					}
					if i%4096 == 4095 {
						if err := p.Sync(); err != nil {
							b.Fatal(err)
						}
					}
				}
				for i := range n {
					snapshot(b, p, "origin", fmt.Sprint("old", i), true)
				}
				if err := p.Checkpoint(); err != nil {
					b.Fatal(err)
				}
				k := 0
				for b.Loop() {
					for range batch {
						snapshot(b, p, "origin", fmt.Sprint("s", k), true)
						k++
					}
					b.StopTimer()
					for i := k - batch; i < k; i++ {
						if err := p.Delete(fmt.Sprint("s", i)); err != nil {
							b.Fatal(err)
						}
					}
					b.StartTimer()
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(k), "ns/snapshot")
				snapshot(b, p, "origin", "last", true)
				start := time.Now()
				if err := p.Checkpoint(); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(time.Since(start).Microseconds())/1000, "ms/checkpoint")
				b.ReportMetric(float64(p.Usage().MetadataUsed), "meta-bytes")
				var st unix.Stat_t
				if err := unix.Stat(path, &st); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(st.Blocks*512), "file-bytes")
				if err := p.Close(); err != nil {
					b.Fatal(err)
				}
				osf, err = os.OpenFile(path, os.O_RDWR, 0)
				if err != nil {
					b.Fatal(err)
				}
				f = &metaOnlyFile{plainFile: plainFile{osf}, dataOff: f.dataOff}
				start = time.Now()
				q, err := thinpool.OpenFile(f)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(time.Since(start).Microseconds())/1000, "ms/open")
				if got := len(q.Devices()); got != n+2 {
					b.Fatalf("reopened pool has %d devices, want %d", got, n+2)
				}
				if err := q.Close(); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}
