package thinpool

import (
	"cmp"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thinpool/thinpool/errdefs"
	"github.com/thinpool/thinpool/extent"
)

// Options configure a new pool.
type Options struct {
	// DataSize is the capacity of the data area in bytes, rounded down to
	// whole blocks. The file stays sparse: only written blocks use space.
	DataSize int64
	// BlockSize is the data block size: a power of two from 64 KiB to 1 GiB.
	// 0 means DefaultBlockSize.
	BlockSize int64
	// MetadataSize is the usable size of the metadata area; 0 means
	// DefaultMetadataSize(DataSize, BlockSize).
	MetadataSize int64
	// FormatVersion is the on-disk format: 0 or 2 for format 2 (the
	// default), 3 for format 3, whose state lives in copy-on-write B+trees
	// (docs/metadata-v3.md). Format 3 is opt-in while upgrade, Check,
	// Repair and dumps do not support it yet.
	FormatVersion int
}

// DefaultMetadataSize is the metadata area for a pool: 160 bytes per data
// block, rounded up to 1 MiB, from 4 MiB to 16 GiB. The journal takes an
// eighth (at most 8 MiB) and the state may use a third of the rest (M1):
// about 47 to 53 bytes per block up to 7.7 TiB of data, room for one extent
// (24 bytes) and one reference run (20 bytes) per block, the worst case of a
// pool written in random order without snapshots. Larger pools are clamped
// at 16 GiB and need fewer, longer extents. The area is sparse: only what is
// used takes space on the host.
func DefaultMetadataSize(dataSize, blockSize int64) int64 {
	if blockSize <= 0 {
		blockSize = DefaultBlockSize
	}
	n := dataSize / blockSize * 160
	n = (n + 1<<20 - 1) &^ (1<<20 - 1)
	return min(max(n, 4<<20), maxMetadataSize)
}

// layout computes the superblock of a new pool.
func layout(o Options) (*superblock, error) {
	bs := o.BlockSize
	if bs == 0 {
		bs = DefaultBlockSize
	}
	if bs < MinBlockSize || bs > MaxBlockSize || bs&(bs-1) != 0 {
		return nil, invalidf("block size %d is not a power of two from 64 KiB to 1 GiB", bs)
	}
	nr := o.DataSize / bs
	if o.DataSize <= 0 || nr == 0 {
		return nil, invalidf("data size %d is smaller than one block (%d)", o.DataSize, bs)
	}
	if nr > maxDataBlocks || o.DataSize > maxDataBytes {
		return nil, invalidf("data size %d is more than %d blocks", o.DataSize, int64(maxDataBlocks))
	}
	meta := o.MetadataSize
	if meta == 0 {
		meta = DefaultMetadataSize(o.DataSize, bs)
	}
	if meta < minMetadataSize || meta > maxMetadataSize {
		return nil, invalidf("metadata size %d is not from 1 MiB to 16 GiB", meta)
	}
	meta = meta &^ (metaSectorSize - 1)
	if o.FormatVersion != 0 && o.FormatVersion != formatVersion && o.FormatVersion != formatV3 {
		return nil, invalidf("format version %d is not %d or %d", o.FormatVersion, formatVersion, formatV3)
	}
	reserve := max(meta, min(max(4*meta, 1<<30), maxMetadataSize))
	journal := min(max(meta/8, 64<<10), maxJournalSize) &^ (metaSectorSize - 1)
	sb := &superblock{
		version:      formatVersion,
		generation:   1,
		seal:         newSeal(),
		blockSize:    uint32(bs),
		nrDataBlocks: uint64(nr),
		metaOffset:   metaOffset,
		metaSize:     uint64(meta),
		metaReserve:  uint64(reserve),
		journalSize:  uint64(journal),
		ckptOffset:   uint64(journal),
		dataOffset:   uint64((metaOffset + reserve + bs - 1) / bs * bs),
		created:      time.Now().UnixNano(),
	}
	if _, err := rand.Read(sb.uuid[:]); err != nil {
		return nil, err
	}
	if o.FormatVersion == formatV3 {
		sb.version, sb.ckptOffset = formatV3, 0
		sb.nrNodes = (sb.metaSize - sb.journalSize) / metaSectorSize
		sb.seed = le.Uint64(sb.uuid[:8]) ^ le.Uint64(sb.uuid[8:])
		sb.nextID = 1
	}
	return sb, nil
}

// Pool is an open thin pool. All its methods are safe for concurrent use.
type Pool struct {
	path string
	f    File
	bs   int64 // data block size in bytes
	// dataOffset is the file offset of data block 0, fixed at creation: I/O
	// reads it without the lock, while checkpoints replace sb.
	dataOffset int64

	blocks sync.Pool // of *[]byte, one block each, for partial-block writes

	// syncMu serialises commits and checkpoints; journalOff (the offset of
	// the next journal entry, relative to the journal) is guarded by it.
	syncMu     sync.Mutex
	journalOff int64

	// ioGate is held shared by every data read and write for its duration.
	// Blocks freed by a commit become allocatable only after the gate has
	// been taken exclusively once (R2 in doc.go), so no I/O that looked up a
	// block before it was freed can touch it after it is reused.
	ioGate sync.RWMutex

	// dataDirty is set by every data write when it completes and cleared
	// by the commit that syncs it.
	dataDirty atomic.Bool

	// releaseMu serialises releaseFrees.
	releaseMu sync.Mutex

	// mu guards everything below and the state.
	mu        sync.RWMutex
	sb        superblock
	st        *state
	free      *extent.FreeSpace
	reserved  uint64       // blocks allocated to writes in flight
	pending   []extent.Run // freed in the open transaction (R1)
	committed []extent.Run // freed by a committed transaction, not yet free
	batch     []op         // the open transaction
	// committing holds st.unshared of the transaction being committed.
	committing *extent.RefCounts
	cursor     extent.PBlock
	failed     error
	closed     bool
}

// Create makes a new pool file at path (which must not exist) and opens it.
func Create(path string, o Options) (*Pool, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	}
	f, err := openLocked(path, os.O_RDWR|os.O_CREATE|os.O_EXCL)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, errdefs.Newf(ErrExists, "pool %s already exists", path)
		}
		return nil, err
	}
	p, err := CreateFile(f, o)
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	p.path = path
	return p, nil
}

// Open opens the pool file at path, recovering it after a crash, and locks it
// against other processes. Its errors name the pool: `pool /x does not
// exist` (errdefs.ErrNotFound and fs.ErrNotExist), `pool /x is in use by pid
// N` (ErrLocked), `pool /x is corrupt: …` (a *CorruptionError with Path set).
func Open(path string) (*Pool, error) {
	f, err := openLocked(path, os.O_RDWR)
	if err != nil {
		return nil, err
	}
	p, err := OpenFile(f)
	if err != nil {
		f.Close()
		if ce := (*CorruptionError)(nil); errors.As(err, &ce) {
			ce.Path = path
		}
		return nil, err
	}
	p.path = path
	return p, nil
}

// CreateFile writes a new, empty pool into f, erasing what it held. The pool
// owns f from then on, even on error.
func CreateFile(f File, o Options) (*Pool, error) {
	sb, err := layout(o)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(0); err != nil {
		return nil, err
	}
	if err := f.Truncate(sb.fileSize()); err != nil {
		return nil, err
	}
	if sb.version == formatV3 {
		return createTrees(f, sb)
	}
	st := newState(uint64(sb.blockSize), sb.nrDataBlocks)
	ck := st.image(sb.generation).encode()
	sb.ckptLen = uint64(len(ck))
	if uint64(len(ck)) > sb.metaSize-sb.journalSize {
		return nil, invalidf("metadata size %d is too small", sb.metaSize)
	}
	if _, err := f.WriteAt(ck, int64(sb.metaOffset+sb.ckptOffset)); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	if _, err := f.WriteAt(sb.encode(), int64(sb.generation%superSlots)*metaSectorSize); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	return newPool(f, sb, st, 0, nil)
}

func newPool(f File, sb *superblock, st *state, journalOff int64, replayFreed []extent.Run) (*Pool, error) {
	p := &Pool{f: f, bs: int64(sb.blockSize), dataOffset: int64(sb.dataOffset), sb: *sb, st: st, journalOff: journalOff}
	st.unshared = extent.NewRefCounts()
	if st.trees != nil {
		free, err := st.trees.ds.FreeSpace(sb.nrDataBlocks)
		if err != nil {
			return nil, treeErr(sb, err)
		}
		p.free = free
	} else {
		p.free = extent.NewFreeSpace()
		var next extent.PBlock
		add := func(end extent.PBlock) {
			if end > next {
				_ = p.free.Add(next, uint64(end-next))
			}
		}
		st.memRefs().Ascend(func(r extent.RefRun) bool {
			add(r.P)
			next = r.End()
			return true
		})
		add(extent.PBlock(sb.nrDataBlocks))
	}
	// Blocks freed by replayed transactions may still hold data: return
	// their space to the host (they are zeroed on reuse in any case, Z1).
	for _, r := range replayFreed {
		p.free.Ascend(func(fr extent.Run) bool {
			lo, hi := max(fr.P, r.P), min(fr.End(), r.End())
			if lo < hi {
				_ = f.PunchHole(p.dataOff(lo), int64(hi-lo)*p.bs)
			}
			return fr.P < r.End()
		})
	}
	return p, nil
}

// OpenFile opens the pool held in f, recovering it after a crash: the newest
// valid superblock, its checkpoint, then every journal entry up to the first
// that is torn or missing. The pool owns f from then on, even on error.
func OpenFile(f File) (*Pool, error) {
	// What the previous process wrote may still sit in the host page cache
	// only (it died between a write and its fdatasync). Make it durable
	// before acting on it: recovery punches the blocks that replayed entries
	// free, and new entries and data follow what it read, so acting on a
	// state that a power loss could still undo would lose data or show one
	// device's data in another.
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("sync before recovery: %w", err)
	}
	sb, err := readSuperblock(f)
	if err != nil {
		return nil, err
	}
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	if size < sb.fileSize() {
		return nil, corruptf(-1, "pool file is truncated: %d bytes, expected %d", size, sb.fileSize())
	}
	var st *state
	if sb.version == formatV3 {
		if st, err = openTrees(f, sb); err != nil {
			return nil, err
		}
	} else {
		ckOff := int64(sb.metaOffset + sb.ckptOffset)
		var gen uint64
		st, gen, err = readCheckpoint(f, ckOff, sb.ckptLen, uint64(sb.blockSize), sb.nrDataBlocks)
		if err != nil {
			return nil, err
		}
		if gen != sb.generation {
			return nil, corruptf(ckOff, "checkpoint generation %d, superblock %d", gen, sb.generation)
		}
	}
	off, freed, torn, err := replay(f, sb, st)
	if err != nil {
		return nil, err
	}
	if torn > 0 {
		if _, err := f.WriteAt(make([]byte, torn), int64(sb.metaOffset)+off); err != nil {
			return nil, fmt.Errorf("erase torn journal entry: %w", err)
		}
		if err := f.Sync(); err != nil {
			return nil, err
		}
	}
	p, err := newPool(f, sb, st, off, freed)
	if err != nil {
		return nil, err
	}
	if sb.version < formatVersion {
		// The upgrade: a checkpoint folds the old journal into the state
		// and writes a superblock of the current version, whose journal
		// is sealed. Until it is durable, the old superblock still rules.
		if err := p.Checkpoint(); err != nil {
			return nil, fmt.Errorf("upgrade pool from format v%d to v%d: %w", sb.version, formatVersion, err)
		}
	}
	return p, nil
}

// readSuperblock returns the valid superblock with the highest generation.
func readSuperblock(f File) (*superblock, error) {
	var best *superblock
	var firstErr error
	for i := int64(0); i < superSlots; i++ {
		b := make([]byte, superblockV3Size)
		if _, err := f.ReadAt(b, i*metaSectorSize); err != nil {
			firstErr = cmpErr(firstErr, corruptf(i*metaSectorSize, "cannot read superblock: %v", err))
			continue
		}
		sb, err := decodeSuperblock(b, i*metaSectorSize)
		if err != nil {
			firstErr = cmpErr(firstErr, err)
			continue
		}
		if sb.generation%superSlots != uint64(i) {
			firstErr = cmpErr(firstErr, corruptf(i*metaSectorSize, "superblock generation %d in slot %d", sb.generation, i))
			continue
		}
		if best == nil || sb.generation > best.generation {
			best = sb
		}
	}
	if best == nil {
		return nil, firstErr
	}
	return best, nil
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// replay applies the journal entries that follow the checkpoint to st and
// returns the offset after the last one and the runs they freed.
func replay(f File, sb *superblock, st *state) (off int64, freed []extent.Run, torn int64, err error) {
	collect := func(r extent.Run) { freed = append(freed, r) }
	jsize := int64(sb.journalSize)
	for off+metaSectorSize <= jsize {
		pos := int64(sb.metaOffset) + off
		head := make([]byte, metaSectorSize)
		if _, err := f.ReadAt(head, pos); err != nil {
			return 0, nil, 0, fmt.Errorf("read journal: %w", err)
		}
		h, ok := decodeEntryHeader(head)
		if !ok || h.epoch != sb.generation || h.seq != st.tid+1 || off+int64(h.size()) > jsize {
			break
		}
		b := head
		if h.size() > metaSectorSize {
			b = make([]byte, h.size())
			if _, err := f.ReadAt(b, pos); err != nil {
				return 0, nil, 0, fmt.Errorf("read journal: %w", err)
			}
		}
		ops, ok, err := decodeEntry(b, h, sb, off)
		if err != nil {
			return 0, nil, 0, err
		}
		if !ok {
			// A torn entry: the journal ends here. Its tail is erased at
			// open so that no stale bytes after a shorter rewrite of this
			// entry can ever pass for the entry after it.
			torn = int64(h.size())
			break
		}
		for i := range ops {
			if err := st.apply(&ops[i], collect); err != nil {
				return 0, nil, 0, corruptf(pos, "journal entry %d operation %d (%s): %v", h.seq, i, ops[i].kind, err)
			}
		}
		st.tid = h.seq
		off += int64(h.size())
	}
	return off, freed, torn, nil
}

// dataOff is the file offset of pool block b.
func (p *Pool) dataOff(b extent.PBlock) int64 {
	return p.dataOffset + int64(b)*p.bs
}

// BlockSize is the data block size in bytes.
func (p *Pool) BlockSize() int64 { return p.bs }

// Path is the pool file's path, or "" for a pool opened with OpenFile.
func (p *Pool) Path() string { return p.path }

// UUID returns the pool's identity.
func (p *Pool) UUID() [16]byte {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.sb.uuid
}

// usable returns an error if the pool cannot be changed. Called with mu held.
func (p *Pool) usable() error {
	if p.closed {
		return ErrClosed
	}
	if p.failed != nil {
		return failedErr(p.failed)
	}
	return nil
}

// failedErr is the ErrFailed of a pool that failed with err.
func failedErr(err error) error {
	return errdefs.Newf(ErrFailed, "pool failed, reopen it: %w", err)
}

// fail puts the pool in the failed state after a metadata write error.
func (p *Pool) fail(err error) error {
	p.mu.Lock()
	if p.failed == nil {
		p.failed = err
	}
	p.mu.Unlock()
	return failedErr(err)
}

// log appends o to the open transaction, merging it into the previous
// operation when it continues it. Called with mu held, after apply.
func (p *Pool) log(o op) {
	if n := len(p.batch); n > 0 {
		last := &p.batch[n-1]
		if last.kind == o.kind && last.dev == o.dev && last.v+extent.VBlock(last.n) == o.v {
			switch {
			case o.kind == opMap && last.p+extent.PBlock(last.n) == o.p, o.kind == opUnmap:
				last.n += o.n
				return
			}
		}
	}
	p.batch = append(p.batch, o)
}

// applyLocked applies o to the state and logs it. Called with mu held.
func (p *Pool) applyLocked(o op) error {
	if err := p.st.apply(&o, func(r extent.Run) { p.pending = append(p.pending, r) }); err != nil {
		p.failOnTree(err)
		return err
	}
	p.log(o)
	return nil
}

// failOnTree puts the pool in the failed state if err is an error of
// format 3's trees, which may have left a tree half changed. Called with
// mu held.
func (p *Pool) failOnTree(err error) {
	if te := (*treeError)(nil); errors.As(err, &te) && p.failed == nil {
		p.failed = err
	}
}

// checkpointCap is the largest checkpoint the metadata area always has room
// for: with two-ended placement, a third of the checkpoint area (M1).
func (p *Pool) checkpointCap() int {
	return int((p.sb.metaSize - p.sb.journalSize) / 3)
}

// Worst-case growth of the checkpoint per change, for admission (M1).
const (
	// A mapped run can split one extent in three and split a reference run
	// at both ends of its old and of its new pool range.
	growMap = 2*mappingSize + 4*refRunSize
	// An unmapped run can split one extent in two; each mapped segment it
	// removes can split a reference run at both ends.
	growUnmap    = mappingSize
	growSegment  = 2 * refRunSize
	growSnapshot = mappingSize + 2*refRunSize // per extent of the origin
)

// admit returns ErrMetadataFull if the state cannot grow by extra bytes
// (format 2) or if the trees might not find the nodes for a change that
// maps or unmaps runs runs and adds extra bytes of device records (format
// 3). Called with mu held.
func (p *Pool) admit(extra, runs int) error {
	if p.st.trees != nil {
		return p.admitNodes(extra, runs)
	}
	if p.st.checkpointSize()+extra+metaSectorSize > p.checkpointCap() {
		return fmt.Errorf("%w: %d bytes of metadata would exceed the limit of %d", ErrMetadataFull, p.st.checkpointSize()+extra, p.checkpointCap())
	}
	return nil
}

// Sync commits the open transaction: it makes every write that completed
// before the call durable, then the metadata that maps it (D1).
func (p *Pool) Sync() error {
	if err := p.commit(false, nil); err != nil {
		return err
	}
	return p.releaseFrees()
}

// Dirty reports whether metadata changes wait for a commit, or freed blocks
// for their release.
func (p *Pool) Dirty() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.batch) > 0 || len(p.committed) > 0
}

// Checkpoint commits and then writes the whole state as a new checkpoint,
// emptying the journal.
func (p *Pool) Checkpoint() error {
	if err := p.commit(true, nil); err != nil {
		return err
	}
	return p.releaseFrees()
}

// commit writes the open transaction to the journal, or a checkpoint when
// forced or when the journal is full. change, if not nil, edits the next
// superblock (and forces a checkpoint).
func (p *Pool) commit(force bool, change func(*superblock)) error {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	return p.commitLocked(force, change)
}

// commitLocked is commit, called with syncMu held.
func (p *Pool) commitLocked(force bool, change func(*superblock)) error {
	p.mu.Lock()
	if err := p.usable(); err != nil {
		p.mu.Unlock()
		return err
	}
	ops, frees := p.batch, p.pending
	p.batch, p.pending = nil, nil
	p.committing, p.st.unshared = p.st.unshared, extent.NewRefCounts()
	var entry []byte
	var img *ckptImage
	if len(ops) > 0 {
		p.st.tid++
		entry = encodeEntry(&p.sb, p.journalOff, p.st.tid, ops)
	}
	if force || change != nil || p.journalOff+int64(len(entry)) > int64(p.sb.journalSize) {
		if p.st.trees != nil {
			// Format 3 writes the trees as they are now, so nothing may
			// change until the superblock names them: mu stays held.
			err := p.checkpointTrees(change)
			if err == nil {
				p.committed = append(p.committed, frees...)
			}
			p.committing = nil
			p.mu.Unlock()
			return err
		}
		img, entry = p.st.image(p.sb.generation+1), nil
	}
	sb := p.sb
	p.mu.Unlock()

	// Data before the metadata that maps it (D1). Every data write sets
	// dataDirty when it completes, before its mapping joins a batch; commits
	// are serialised, so a clear flag means an earlier commit synced it.
	// With nothing to write, sync anyway: Sync must report a dead disk.
	if p.dataDirty.Swap(false) || (entry == nil && img == nil) {
		if err := p.f.Sync(); err != nil {
			return p.fail(err)
		}
	}
	if entry != nil {
		if _, err := p.f.WriteAt(entry, int64(sb.metaOffset)+p.journalOff); err != nil {
			return p.fail(err)
		}
		if err := p.f.Sync(); err != nil {
			return p.fail(err)
		}
		p.journalOff += int64(len(entry))
	}
	if img != nil {
		if change != nil {
			change(&sb)
		}
		if err := p.writeCheckpoint(img, sb); err != nil {
			return err
		}
	}
	p.mu.Lock()
	p.committed = append(p.committed, frees...)
	p.committing = nil
	if invariants {
		p.checkInvariants()
	}
	p.mu.Unlock()
	return nil
}

// checkInvariants panics if the state breaks I1 (a count below its
// mappings), I2 or I3: a bug in the engine, not in the file. It walks every
// mapping, so only builds with -tags invariants run it, after each commit.
// Called with mu held.
func (p *Pool) checkInvariants() {
	r := &CheckReport{}
	p.checkRefs(r, p.checkDevices(r))
	if len(r.Errors) > 0 {
		panic(fmt.Sprintf("thinpool: invariant broken after transaction %d: %q", p.st.tid, r.Errors))
	}
}

// writeCheckpoint writes img where it overlaps neither the journal nor the
// current checkpoint, then the superblock sb that points at it. Called with
// syncMu held.
func (p *Pool) writeCheckpoint(img *ckptImage, sb superblock) error {
	b := img.encode()
	size := uint64(alignUp(len(b), metaSectorSize))
	curEnd := uint64(alignUp(int(sb.ckptOffset+sb.ckptLen), metaSectorSize))
	var off uint64
	switch {
	case sb.journalSize+size <= sb.ckptOffset:
		off = sb.journalSize
	case curEnd+size <= sb.metaSize:
		off = curEnd
	default:
		return p.fail(fmt.Errorf("%w: checkpoint of %d bytes does not fit", ErrMetadataFull, len(b)))
	}
	if _, err := p.f.WriteAt(b, int64(sb.metaOffset+off)); err != nil {
		return p.fail(err)
	}
	if err := p.f.Sync(); err != nil {
		return p.fail(err)
	}
	sb.version, sb.generation, sb.seal = formatVersion, img.generation, newSeal()
	sb.ckptOffset, sb.ckptLen = off, uint64(len(b))
	if _, err := p.f.WriteAt(sb.encode(), int64(sb.generation%superSlots)*metaSectorSize); err != nil {
		return p.fail(err)
	}
	if err := p.f.Sync(); err != nil {
		return p.fail(err)
	}
	p.mu.Lock()
	p.sb = sb
	p.mu.Unlock()
	p.journalOff = 0
	return nil
}

// releaseFrees makes the blocks freed by committed transactions allocatable,
// once no I/O that started before the commit is still running (R2), and
// returns their space to the host file system. A block that is free
// already (a corrupt state) puts the pool in the failed state, and the
// error says so.
func (p *Pool) releaseFrees() error {
	p.releaseMu.Lock()
	defer p.releaseMu.Unlock()
	// The runs stay in committed until they are free, so that every block
	// is always accounted for (A1).
	p.mu.Lock()
	runs := p.committed[:len(p.committed):len(p.committed)]
	p.mu.Unlock()
	if len(runs) == 0 {
		return nil
	}
	p.ioGate.Lock()
	//lint:ignore SA2001 an empty critical section is the barrier: it waits for the I/O in flight
	p.ioGate.Unlock()
	// Punch merged runs: mkfs frees thousands of neighbouring runs.
	merged := slices.SortedFunc(slices.Values(runs), func(a, b extent.Run) int { return cmp.Compare(a.P, b.P) })
	out := merged[:0]
	for _, r := range merged {
		if k := len(out) - 1; k >= 0 && out[k].End() == r.P {
			out[k].Len += r.Len
			continue
		}
		out = append(out, r)
	}
	for _, r := range out {
		// Best effort: blocks are zeroed on reuse whether or not this works.
		_ = p.f.PunchHole(p.dataOff(r.P), int64(r.Len)*p.bs)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var failed error
	for _, r := range runs {
		if err := p.free.Add(r.P, r.Len); err != nil && failed == nil {
			// A block freed twice: the state is broken. Stop the pool.
			failed = corruptf(-1, "release of freed blocks: %v", err)
		}
	}
	p.committed = append([]extent.Run(nil), p.committed[len(runs):]...)
	if failed == nil {
		return nil
	}
	if p.failed == nil {
		p.failed = failed
	}
	return failedErr(failed)
}

// Close commits, writes a checkpoint and closes the file. Handles to the
// pool's devices fail afterwards.
func (p *Pool) Close() error {
	p.mu.RLock()
	closed, failed := p.closed, p.failed
	p.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	var err error
	if failed == nil {
		err = p.Checkpoint()
	}
	p.syncMu.Lock()
	p.mu.Lock()
	closed = p.closed
	p.closed = true
	p.mu.Unlock()
	p.syncMu.Unlock()
	if closed { // a concurrent Close won
		return ErrClosed
	}
	// New reads and writes fail with ErrClosed from now on; wait for
	// those in flight before closing the file under them.
	p.ioGate.Lock()
	defer p.ioGate.Unlock()
	return errors.Join(err, p.f.Close())
}

// Grow enlarges the data area to dataSize bytes (rounded down to blocks).
// Grows are serialised with each other and with commits, so the size only
// ever grows, whatever the order of concurrent calls.
func (p *Pool) Grow(dataSize int64) error {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	p.mu.RLock()
	old, err := p.sb.nrDataBlocks, p.usable()
	p.mu.RUnlock()
	if err != nil {
		return err
	}
	nr := uint64(dataSize / p.bs)
	if dataSize < 0 || nr <= old {
		return invalidf("new data size %d is not larger than the current %d", dataSize, int64(old)*p.bs)
	}
	if nr > maxDataBlocks || dataSize > maxDataBytes {
		return invalidf("data size %d is more than %d blocks", dataSize, int64(maxDataBlocks))
	}
	if err := p.f.Truncate(p.dataOffset + int64(nr)*p.bs); err != nil {
		return err
	}
	if err := p.commitLocked(true, func(sb *superblock) { sb.nrDataBlocks = nr }); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.st.nrBlocks = nr
	return p.free.Add(extent.PBlock(old), nr-old)
}

// GrowMetadata enlarges the usable metadata area to size bytes, up to the
// reserve fixed when the pool was created. Like Grow, it never shrinks the
// area, whatever the order of concurrent calls.
func (p *Pool) GrowMetadata(size int64) error {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	p.mu.RLock()
	sb, err := p.sb, p.usable()
	p.mu.RUnlock()
	if err != nil {
		return err
	}
	size &^= metaSectorSize - 1
	if size <= int64(sb.metaSize) {
		return invalidf("new metadata size %d is not larger than the current %d", size, sb.metaSize)
	}
	if size > int64(sb.metaReserve) {
		return invalidf("metadata can grow to at most %d bytes (reserved when the pool was created)", sb.metaReserve)
	}
	return p.commitLocked(true, func(sb *superblock) { sb.metaSize = uint64(size) })
}
