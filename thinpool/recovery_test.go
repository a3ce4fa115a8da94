package thinpool_test

// Recovery after a process death (issue 10, bug 1). A process that dies
// leaves its unsynced writes in the host page cache: the next process to
// open the pool reads them, and a power loss afterwards may still lose any
// of them. The tests model the death by abandoning the pool, without
// Close, on a faultfile.File whose injected fault stops every later
// operation, while the Mem underneath keeps its unsynced writes; the next
// process opens the same Mem. Recovery must not act (replay, punch holes,
// reuse blocks, write journal entries) on metadata that a power loss can
// still take back.
//
// TestRecoveryUnsynced kills the first process between a commit's write
// and its fdatasync, recovers, acts without syncing, and cuts the power
// (Mem.CrashRandom) once per seed. TestCrashDoubleRandom does the same at
// a random operation of a random workload: THINPOOL_DOUBLE_CRASH_SEEDS
// sets how many (default doubleCrashSeeds, 100 with -short).

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"

	"github.com/thinpool/thinpool/test/faultfile"
	"github.com/thinpool/thinpool/thinpool"
)

// doubleCrashSeeds is the default number of TestCrashDoubleRandom seeds.
const doubleCrashSeeds = 1000

// metaStart is the offset of the metadata area (FORMAT.md "File layout").
const metaStart = 64 << 10

// failSyncAfter returns an Injector that, once *armed, fails the first Sync
// after a write for which isWrite holds: the process dies between a
// commit's write and its fdatasync, and the write stays unsynced in the
// Mem.
func failSyncAfter(armed *bool, isWrite func(op faultfile.Op) bool) faultfile.Injector {
	wrote := false
	return faultfile.InjectorFunc(func(op faultfile.Op) bool {
		switch {
		case !*armed:
		case op.Kind == faultfile.OpWrite && isWrite(op):
			wrote = true
		case op.Kind == faultfile.OpSync:
			return wrote
		}
		return false
	})
}

// isJournalWrite reports whether op writes the journal or a checkpoint of a
// pool whose data area starts at dataOff.
func isJournalWrite(dataOff int64) func(faultfile.Op) bool {
	return func(op faultfile.Op) bool { return op.Off >= metaStart && op.Off < dataOff }
}

// isSuperblockWrite reports whether op writes a superblock slot.
func isSuperblockWrite(op faultfile.Op) bool { return op.Off < 2*4096 }

// recoverRun opens the pool that a dead process left in mem, as the next
// process does. The pool must open (unless an alternative is a pool never
// created: then it returns nil), pass Check and match one of alts, the
// models the dead process may have left. It returns a run on the recovered
// pool that starts from the matching model, with write generations and
// writer ids after those of prev. Once *armed, its file fails the first
// Sync, and every operation after it.
func recoverRun(t testing.TB, mem *faultfile.Mem, alts []*model, prev *crashRun, armed *bool, what string) *crashRun {
	t.Helper()
	f := faultfile.Wrap(mem, faultfile.InjectorFunc(func(op faultfile.Op) bool {
		return *armed && op.Kind == faultfile.OpSync
	}))
	p, err := thinpool.OpenFile(f)
	if err != nil {
		for _, m := range alts {
			if !m.created && errors.Is(err, thinpool.ErrCorrupt) {
				return nil
			}
		}
		t.Fatalf("%s: recovery: %v", what, err)
	}
	m := verifyPool(t, p, alts, what+", recovered").clone()
	r := newCrashRun(t, f)
	r.p, r.m, r.gen, r.writers, r.noAck = p, m, prev.gen, prev.writers, true
	r.dataOff = p.Usage().DataOffset
	for _, n := range m.names() {
		if r.thins[n], err = p.Device(n); err != nil {
			t.Fatalf("%s: recovered device %s: %v", what, n, err)
		}
	}
	return r
}

// afterRecovery returns the models the disk may match after a power loss
// that ends the recovering run r: one the dead process may have left
// (alts), with any of r's writes, or, if r died in a metadata call, that
// call's outcome.
func afterRecovery(alts []*model, r *crashRun) []*model {
	var out []*model
	for _, m := range alts {
		out = append(out, withWrites(m.clone(), r.log))
	}
	if r.err != nil {
		out = append(out, r.alts...)
	}
	return out
}

// TestRecoveryUnsynced kills a process between a commit's write and its
// fdatasync, recovers the pool in a second process, lets it act without
// syncing, and cuts the power. After the power loss the pool must hold the
// devices of before or of after the unsynced commit, every synced write,
// and never another device's data. Each case runs 64 power losses
// (seeds), as subtests.
func TestRecoveryUnsynced(t *testing.T) {
	const seeds = 64
	var (
		sBlocks map[uint64]bool // blocks of s before the delete
		gen     uint64          // generation before the checkpoint
	)
	tests := []struct {
		name string
		// setup runs the first process up to the commit that dies.
		setup func(t *testing.T, r *crashRun)
		// dies picks the write whose fdatasync fails, in a pool whose
		// data area starts at dataOff; commit runs that commit.
		dies   func(dataOff int64) func(faultfile.Op) bool
		commit func(r *crashRun)
		// act runs in the recovering process, where every sync fails.
		act func(t *testing.T, r *crashRun)
	}{
		{
			// (a) The delete is replayed and s's blocks punched; a power
			// loss must not keep the punch and lose the delete.
			name:   "delete",
			setup:  deleteSetup(&sBlocks),
			dies:   isJournalWrite,
			commit: func(r *crashRun) { r.remove("s") },
			act: func(t *testing.T, r *crashRun) {
				if !punched(t, r, sBlocks) {
					t.Fatalf("recovery did not punch s's blocks %v", sBlocks)
				}
			},
		},
		{
			// (b) As (a), and d writes into s's freed blocks: s must not
			// come back holding d's data.
			name:   "delete and reuse",
			setup:  deleteSetup(&sBlocks),
			dies:   isJournalWrite,
			commit: func(r *crashRun) { r.remove("s") },
			act: func(t *testing.T, r *crashRun) {
				r.write("d", 16, 48) // three fresh blocks
				if r.err != nil {
					t.Fatal(r.err)
				}
				if !mapsAny(t, r.p, "d", sBlocks) {
					t.Fatalf("d maps none of s's blocks %v", sBlocks)
				}
			},
		},
		{
			// (c) The checkpoint's superblock is in the page cache only:
			// the recovered pool must not write the new epoch's first
			// entry over the journal that the older superblock needs for d.
			name: "checkpoint",
			setup: func(t *testing.T, r *crashRun) {
				r.createThin("d", 256<<10, nil)
				r.write("d", 0, 20)
				r.sync()
				gen = r.p.Usage().Generation
			},
			dies:   func(int64) func(faultfile.Op) bool { return isSuperblockWrite },
			commit: func(r *crashRun) { r.checkpoint() },
			act: func(t *testing.T, r *crashRun) {
				if got := r.p.Usage().Generation; got != gen+1 {
					t.Fatalf("recovered generation %d, want the unsynced %d", got, gen+1)
				}
				r.createThin("e", 128<<10, nil) // an entry, no data sync before it
				if r.err == nil {
					t.Fatal("create e synced")
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The first process, the same for every seed.
			armed := false
			var isWrite func(faultfile.Op) bool
			f := faultfile.Wrap(faultfile.NewMem(), failSyncAfter(&armed, func(op faultfile.Op) bool { return isWrite(op) }))
			r := newCrashRun(t, f)
			r.create(crashOptions)
			tc.setup(t, r)
			if r.err != nil {
				t.Fatal(r.err)
			}
			isWrite, armed = tc.dies(r.p.Usage().DataOffset), true
			tc.commit(r)
			if r.err == nil {
				t.Fatal("the commit did not fail")
			}
			// The process dies: its pool is abandoned, unsynced writes stay.
			alts, mem := r.alts, f.Mem()
			if mem.Unsynced() == 0 {
				t.Fatal("nothing unsynced: the process did not die before the fdatasync")
			}
			for seed := range uint64(seeds) {
				t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
					what := fmt.Sprintf("%s (%s), recovered", tc.name, r.failed)
					armed := false
					r2 := recoverRun(t, mem.Clone(), alts, r, &armed, what)
					armed = true
					tc.act(t, r2)
					r2.f.CrashRandom(rand.New(rand.NewPCG(seed, 0xb0b1)))
					verifyCrash(t, r2.f.Mem(), afterRecovery(alts, r2), what+", then a power loss")
				})
			}
		})
	}
}

// deleteSetup returns the setup of the delete cases: s and d, written and
// synced. It stores the blocks that s maps in *blocks.
func deleteSetup(blocks *map[uint64]bool) func(t *testing.T, r *crashRun) {
	return func(t *testing.T, r *crashRun) {
		r.createThin("s", 512<<10, nil)
		r.write("s", 0, 40) // the pool's first three blocks
		r.createThin("d", 256<<10, nil)
		r.write("d", 0, 16)
		r.sync()
		if r.err != nil {
			t.Fatal(r.err)
		}
		*blocks = map[uint64]bool{}
		maps, err := r.p.Mappings("s")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range maps {
			for b := uint64(m.P); b < uint64(m.PEnd()); b++ {
				(*blocks)[b] = true
			}
		}
	}
}

// punched reports whether every page of blocks reads as zeros in the file
// of r.
func punched(t *testing.T, r *crashRun, blocks map[uint64]bool) bool {
	t.Helper()
	bs := r.p.BlockSize()
	buf := make([]byte, bs)
	for b := range blocks {
		if _, err := r.f.Mem().ReadAt(buf, r.dataOff+int64(b)*bs); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, make([]byte, bs)) {
			return false
		}
	}
	return true
}

// mapsAny reports whether device name maps any of blocks.
func mapsAny(t *testing.T, p *thinpool.Pool, name string, blocks map[uint64]bool) bool {
	t.Helper()
	maps, err := p.Mappings(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range maps {
		for b := uint64(m.P); b < uint64(m.PEnd()); b++ {
			if blocks[b] {
				return true
			}
		}
	}
	return false
}

// doubleCrashIters returns THINPOOL_DOUBLE_CRASH_SEEDS or def.
func doubleCrashIters(t *testing.T, def int) int {
	s := os.Getenv("THINPOOL_DOUBLE_CRASH_SEEDS")
	if s == "" {
		if testing.Short() {
			return def / 10
		}
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("THINPOOL_DOUBLE_CRASH_SEEDS=%q: want a count", s)
	}
	return n
}

// TestCrashDoubleRandom crashes twice. A small seeded random workload runs
// in a first process, and the states just before two of its operations are
// sampled: one drawn from all operations, one from the fdatasyncs that
// follow a metadata write (a journal entry, checkpoint or superblock). In
// each, the process dies: its unsynced writes stay in the Mem. A second
// process recovers the pool, which must match what the first may have
// committed, runs a few random steps that stop at the first sync, which
// fails, and the power fails (one time in four every unsynced change is
// lost, else Mem.CrashRandom). The pool must then hold what the first
// process may have committed, with any of either process's unsynced
// writes, or the second process's last metadata change.
func TestCrashDoubleRandom(t *testing.T) {
	forEachFormat(t, func(t *testing.T, format int) {
		for it := range doubleCrashIters(t, doubleCrashSeeds) {
			t.Run(fmt.Sprintf("seed=%d", it), func(t *testing.T) { doubleCrash(t, format, uint64(it)) })
		}
	})
}

// doubleCrash runs one seed of TestCrashDoubleRandom.
func doubleCrash(t *testing.T, format int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0xdead))
	var r *crashRun
	afterMeta := false
	afterMetaSync := func(op faultfile.Op) bool {
		picked := op.Kind == faultfile.OpSync && afterMeta
		afterMeta = op.Kind == faultfile.OpWrite && (r.dataOff == 0 || op.Off < r.dataOff)
		return picked
	}
	var anyOp, syncOp []crashSample
	sampleAny := sampler(&r, rng, 1, &anyOp, nil)
	sampleSync := sampler(&r, rng, 1, &syncOp, afterMetaSync)
	f := faultfile.Wrap(faultfile.NewMem(), faultfile.InjectorFunc(func(op faultfile.Op) bool {
		sampleAny(op)
		sampleSync(op)
		return false
	}))
	r = newCrashRun(t, f)
	r.format = format
	smallWorkload(r, seed)
	for _, smp := range slices.Concat(anyOp, syncOp) {
		recoverAndCrash(t, r, smp, rng, fmt.Sprintf("seed %d, the process dies (%s)", seed, smp.what))
	}
}

// recoverAndCrash recovers the pool that the first process r left in
// smp.mem when it died, runs a few steps without a sync, cuts the power
// and verifies the pool.
func recoverAndCrash(t *testing.T, r *crashRun, smp crashSample, rng *rand.Rand, what string) {
	t.Helper()
	armed := false
	r2 := recoverRun(t, smp.mem, smp.alts, r, &armed, what)
	if r2 == nil {
		return // died before the pool existed
	}
	armed = true
	names := 1000 // new names do not clash with the first process's
	if rng.IntN(2) == 0 {
		// A metadata change first: its journal entry goes out with no
		// data fdatasync before it.
		names = metaStep(r2, rng, names)
	}
	for range rng.IntN(6) {
		if !r2.live() {
			break
		}
		names = randomStep(r2, rng, names)
	}
	ops := r2.f.Ops()
	mode := crashTorn
	if rng.IntN(4) == 0 {
		mode = crashDrop
	}
	crash(r2.f, mode, rng.Uint64())
	verifyCrash(t, smp.mem, afterRecovery(smp.alts, r2),
		fmt.Sprintf("%s, recovered, %d steps and %d ops (%s: %v), %s power loss", what, r2.steps, ops, r2.failed, r2.err, mode))
}

// smallWorkload is a random workload of 4 to 19 steps, one in four of
// them a step that frees blocks or writes a checkpoint.
func smallWorkload(r *crashRun, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x5a11))
	o := thinpool.Options{DataSize: 64 << 20, MetadataSize: 1 << 20, BlockSize: []int64{0, 128 << 10}[rng.IntN(2)]}
	r.create(o)
	r.createThin("d0", randomSize(rng), randomLabels(rng))
	names := 1
	for range 4 + rng.IntN(16) {
		if !r.live() {
			return
		}
		if rng.IntN(4) == 0 {
			freeStep(r, rng)
		} else {
			names = randomStep(r, rng, names)
		}
	}
}

// freeStep commits a change that frees blocks (a delete, or a discard),
// or writes a checkpoint.
func freeStep(r *crashRun, rng *rand.Rand) {
	all := r.m.names()
	switch x := rng.IntN(3); {
	case x == 0 && len(all) > 1:
		r.remove(all[rng.IntN(len(all))])
	case x == 1 && len(all) > 0:
		n := all[rng.IntN(len(all))]
		if r.m.devs[n].ro {
			return
		}
		np := int64(len(r.m.devs[n].pages))
		p0 := rng.Int64N(np)
		r.discard(n, p0, 1+rng.Int64N(np-p0))
		r.sync()
	default:
		r.checkpoint()
	}
}

// metaStep runs a random metadata change; names counts the names used.
func metaStep(r *crashRun, rng *rand.Rand, names int) int {
	all := r.m.names()
	switch x := rng.IntN(4); {
	case x == 0 && len(all) > 1:
		r.remove(all[rng.IntN(len(all))])
	case x == 1 && len(all) > 0:
		r.setLabels(all[rng.IntN(len(all))], randomLabels(rng))
	case x == 2 && len(all) > 0:
		names++
		r.snapshot(all[rng.IntN(len(all))], "d"+strconv.Itoa(names-1), false)
	default:
		names++
		r.createThin("d"+strconv.Itoa(names-1), randomSize(rng), nil)
	}
	return names
}
