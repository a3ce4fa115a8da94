// Package faultfile provides thinpool.File implementations for crash and
// fault-injection tests, after pebble's errorfs:
//
//   - Mem is an in-memory file that models the host page cache in front of
//     a disk with a volatile write cache. Reads see every write; Sync makes
//     them durable; Crash loses whatever was not synced, and CrashRandom
//     leaves each page that changed since the last Sync in one of the states
//     it really had, as page-cache writeback cut short by a power loss may
//     (see "Crash model").
//   - File wraps any thinpool.File, counts the operations that change it,
//     and fails the one an Injector picks and every one after it, like a
//     disk that died.
//
// A crash test runs a workload on Wrap(NewMem(), OnIndex(i)) for i = 0, 1,
// 2, ... until the workload completes without reaching the fault, crashes
// the Mem after each run, and reopens the pool on it.
//
// A process that dies without a power loss is modelled by leaving the Mem
// alone: its unsynced changes stay readable, as in the page cache, and the
// next process to open it sees them.
//
// # Crash model
//
// The kernel writes dirty pages back whole, in any order, and the disk's
// cache may keep or lose each write it has not flushed. A power loss can
// therefore leave each page in any state that page had since the last
// Sync, independently of every other page, but never with a later change
// to a page without the earlier ones to that page. CrashRandom picks such a
// state for each page, and may tear a page between two consecutive states
// at SectorSize boundaries, as a write interrupted part-way leaves it on a
// disk that writes sectors atomically. It never builds a sector that the
// file did not hold at some point, so a crash test that fails on it shows
// a real bug, not an artefact of the simulation.
//
// Mem and File are safe for concurrent use.
package faultfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/thinpool/thinpool/thinpool"
)

// PageSize is the unit in which Mem stores data. Pages that were never
// written, or were punched or truncated away, read as zeros and use no
// memory, so a sparse file of gigabytes costs only what was written.
const PageSize = 4096

// SectorSize is the unit of atomic writes: CrashRandom tears a page only at
// a multiple of SectorSize bytes from its start.
const SectorSize = 512

var (
	// ErrInjected is returned (wrapped) by a File for the operation its
	// Injector picked and for every operation after it.
	ErrInjected = errors.New("faultfile: injected fault")
	// ErrCrashed is returned (wrapped) by a File after Crash or
	// CrashRandom, so a pool left open on it cannot touch the Mem that a
	// test reopens.
	ErrCrashed = errors.New("faultfile: file crashed")
	// errNegative is returned for a negative offset or size, as by os.File.
	errNegative = errors.New("faultfile: negative offset")
)

// OpKind is the type of an operation a File counts.
type OpKind uint8

// The operations that change a file. Reads are not counted.
const (
	OpInvalid OpKind = iota
	OpWrite
	OpSync
	OpPunchHole
	OpTruncate
)

var opKindNames = [...]string{"invalid", "write", "sync", "punch-hole", "truncate"}

func (k OpKind) String() string {
	if int(k) < len(opKindNames) {
		return opKindNames[k]
	}
	return fmt.Sprintf("OpKind(%d)", k)
}

// page is one PageSize unit of file data. A page is never modified once an
// image holds it: a change stores a new page, so images and unsynced
// changes can share pages, and Sync, Crash and Clone copy pointers only.
type page = [PageSize]byte

var zeroPage page

// pageRef is the page a change left at index idx (nil: zeros).
type pageRef struct {
	idx int64
	pg  *page
}

// image is the contents of a file: its size and its non-zero pages.
type image struct {
	size  int64
	pages map[int64]*page // page index -> contents; a missing page is zeros
}

func newImage() *image { return &image{pages: map[int64]*page{}} }

// clone returns a copy of im that shares its (immutable) pages.
func (im *image) clone() *image {
	c := &image{size: im.size, pages: make(map[int64]*page, len(im.pages))}
	for i, pg := range im.pages {
		c.pages[i] = pg
	}
	return c
}

// readAt reads like os.File.ReadAt: a read that reaches past the end
// returns the bytes before it and io.EOF.
func (im *image) readAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errNegative
	}
	if len(b) == 0 {
		return 0, nil
	}
	if off >= im.size {
		return 0, io.EOF
	}
	n := len(b)
	var err error
	if int64(n) > im.size-off {
		n, err = int(im.size-off), io.EOF
	}
	for done := 0; done < n; {
		pos := off + int64(done)
		idx, in := pos/PageSize, int(pos%PageSize)
		k := min(PageSize-in, n-done)
		if pg := im.pages[idx]; pg != nil {
			copy(b[done:done+k], pg[in:in+k])
		} else {
			clear(b[done : done+k])
		}
		done += k
	}
	return n, err
}

// set stores pg (nil or all zeros: drops the page) at idx.
func (im *image) set(idx int64, pg *page) *page {
	if pg == nil || *pg == zeroPage {
		delete(im.pages, idx)
		return nil
	}
	im.pages[idx] = pg
	return pg
}

// edit replaces bytes [lo, hi) of page idx: with src, or zeros if src is
// nil. It returns the page it leaves there.
func (im *image) edit(idx int64, lo, hi int, src []byte) *page {
	old := im.pages[idx]
	if old == nil && (src == nil || bytes.Equal(src, zeroPage[:hi-lo])) {
		return nil // zeros over zeros
	}
	np := new(page)
	if old != nil && (lo > 0 || hi < PageSize) {
		*np = *old
	}
	if src != nil {
		copy(np[lo:hi], src)
	} else {
		clear(np[lo:hi])
	}
	return im.set(idx, np)
}

// writeAt writes b at off, extending the file if it ends past the end, and
// returns the pages it changed.
func (im *image) writeAt(b []byte, off int64) []pageRef {
	refs := make([]pageRef, 0, (len(b)+PageSize-1)/PageSize+1)
	for done := 0; done < len(b); {
		pos := off + int64(done)
		idx, in := pos/PageSize, int(pos%PageSize)
		k := min(PageSize-in, len(b)-done)
		refs = append(refs, pageRef{idx, im.edit(idx, in, in+k, b[done:done+k])})
		done += k
	}
	im.size = max(im.size, off+int64(len(b)))
	return refs
}

// zero makes [off, end) read as zeros and returns the pages it changed.
func (im *image) zero(off, end int64) []pageRef {
	if off >= end {
		return nil
	}
	var refs []pageRef
	one := func(idx int64) {
		lo, hi := max(off, idx*PageSize), min(end, (idx+1)*PageSize)
		if lo < hi && im.pages[idx] != nil {
			refs = append(refs, pageRef{idx, im.edit(idx, int(lo-idx*PageSize), int(hi-idx*PageSize), nil)})
		}
	}
	if (end-off)/PageSize > int64(2*len(im.pages)) {
		// A large range over a sparse file: visit the pages that exist.
		for _, idx := range slices.Sorted(maps.Keys(im.pages)) {
			one(idx)
		}
		return refs
	}
	for idx := off / PageSize; idx*PageSize < end; idx++ {
		one(idx)
	}
	return refs
}

// punch deallocates [off, off+n) within the file; the size is unchanged.
func (im *image) punch(off, n int64) []pageRef { return im.zero(off, min(off+n, im.size)) }

// truncate sets the size; bytes past a shrink read as zeros if it grows again.
func (im *image) truncate(size int64) []pageRef {
	var refs []pageRef
	if size < im.size {
		refs = im.zero(size, im.size)
	}
	im.size = size
	return refs
}

// change is one unsynced operation: a write, punch or truncate.
type change struct {
	// size is the file size after the change and refs the pages it left,
	// in order: applying them to the image the change was made on gives
	// the image after it.
	size int64
	refs []pageRef
}

// commit applies c to im, which must hold every change before c.
func (c *change) commit(im *image) {
	for _, r := range c.refs {
		im.set(r.idx, r.pg)
	}
	im.size = c.size
}

// cut sets the size to size and drops what lies past it: whole pages, and
// the end of the page that holds the new end of file.
func (im *image) cut(size int64) {
	for idx, pg := range im.pages {
		switch lo := size - idx*PageSize; {
		case lo <= 0:
			delete(im.pages, idx)
		case lo < PageSize && !bytes.Equal(pg[lo:], zeroPage[lo:]):
			im.edit(idx, int(lo), PageSize, nil)
		}
	}
	im.size = size
}

// tear returns a page whose every sector comes from from or from to
// (nil: zeros), chosen independently: a write of to over from cut short.
func tear(rng *rand.Rand, from, to *page) *page {
	if from == nil {
		from = &zeroPage
	}
	if to == nil {
		to = &zeroPage
	}
	pg := new(page)
	for lo := 0; lo < PageSize; lo += SectorSize {
		src := from
		if rng.IntN(2) == 0 {
			src = to
		}
		copy(pg[lo:lo+SectorSize], src[lo:lo+SectorSize])
	}
	return pg
}

// Mem is an in-memory thinpool.File with a volatile write cache: reads see
// every completed write, punch and truncate; Sync makes them durable; Crash
// drops what Sync has not made durable, and CrashRandom keeps part of it
// (see "Crash model" in the package doc). Close does nothing, so a test can
// open a pool on the same Mem again after a crash, or after the process
// that had it open died: then the unsynced changes are still there.
//
// Mem is safe for concurrent use. It holds the pages written and not
// since overwritten or punched, durable or not, whatever the file size.
type Mem struct {
	mu      sync.RWMutex
	cur     *image   // what reads see: durable with pending applied
	durable *image   // what survives a crash
	pending []change // changes since the last Sync, oldest first
}

var _ thinpool.File = (*Mem)(nil)

// NewMem returns an empty Mem.
func NewMem() *Mem { return &Mem{cur: newImage(), durable: newImage()} }

// ReadAt reads what the last write of each byte left there, durable or not.
func (m *Mem) ReadAt(b []byte, off int64) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.cur.readAt(b, off)
}

// WriteAt writes b at off, extending the file if needed. The write is
// volatile until the next Sync.
func (m *Mem) WriteAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errNegative
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	refs := m.cur.writeAt(b, off)
	m.pending = append(m.pending, change{size: m.cur.size, refs: refs})
	return len(b), nil
}

// PunchHole makes [off, off+n) read as zeros and frees its memory. It is
// volatile until the next Sync.
func (m *Mem) PunchHole(off, n int64) error {
	if off < 0 || n < 0 {
		return errNegative
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	refs := m.cur.punch(off, n)
	m.pending = append(m.pending, change{size: m.cur.size, refs: refs})
	return nil
}

// Truncate sets the size of the file. It is volatile until the next Sync.
func (m *Mem) Truncate(size int64) error {
	if size < 0 {
		return errNegative
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	refs := m.cur.truncate(size)
	m.pending = append(m.pending, change{size: size, refs: refs})
	return nil
}

// Size returns the current size, durable or not.
func (m *Mem) Size() (int64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.cur.size, nil
}

// Sync makes every change so far durable.
func (m *Mem) Sync() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.pending {
		m.pending[i].commit(m.durable)
	}
	m.pending = nil
	return nil
}

// Close does nothing: the Mem keeps its contents and stays usable.
func (m *Mem) Close() error { return nil }

// Unsynced returns the number of changes since the last Sync.
func (m *Mem) Unsynced() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.pending)
}

// Pages returns the number of pages that hold data, now and durably.
func (m *Mem) Pages() (cur, durable int) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.cur.pages), len(m.durable.pages)
}

// Crash simulates a power loss: every change since the last Sync is lost,
// and reads see the durable image.
func (m *Mem) Crash() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pending = nil
	m.cur = m.durable.clone()
}

// CrashRandom simulates a power loss after the page cache wrote back part
// of what changed since the last Sync (see "Crash model" in the package
// doc), with choices drawn from rng:
//
//   - Each page that one or more of those changes touched ends,
//     independently of the other pages, in the state it had after the
//     first k of them, k uniform from 0 (its durable state) to all.
//   - A page left in a state k ≥ 1 is torn with probability 1/4: each of
//     its sectors holds, independently, what it held in state k or in
//     state k−1. A torn page thus never holds a sector the page did not
//     hold at some point.
//   - The file size is the size after the first j changes, j uniform from
//     0 (the durable size) to all of them, on its own, as a file system
//     that logs the size apart from the data may leave it. Whatever lies
//     past that size is dropped: it reads as zeros if the file grows again.
//
// Afterwards reads see the resulting image, and nothing is unsynced. It
// returns the number of pages left in a state newer than their durable one
// (k ≥ 1, torn or not, before the size cut); 0 means that nothing
// unsynced survived but perhaps the size.
func (m *Mem) CrashRandom(rng *rand.Rand) (kept int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	states := map[int64][]*page{} // page index -> its states after each change, oldest first
	var order []int64             // page indexes in the order first touched, for determinism
	for _, c := range m.pending {
		for _, r := range c.refs {
			if _, ok := states[r.idx]; !ok {
				order = append(order, r.idx)
			}
			states[r.idx] = append(states[r.idx], r.pg)
		}
	}
	im := m.durable
	for _, idx := range order {
		after := states[idx]
		k := rng.IntN(len(after) + 1)
		if k == 0 {
			continue
		}
		kept++
		pg, prev := after[k-1], im.pages[idx]
		if k >= 2 {
			prev = after[k-2]
		}
		if rng.IntN(4) == 0 {
			pg = tear(rng, prev, pg)
		}
		im.set(idx, pg)
	}
	size := im.size
	if j := rng.IntN(len(m.pending) + 1); j > 0 {
		size = m.pending[j-1].size
	}
	im.cut(size)
	m.pending = nil
	m.cur = im.clone()
	return kept
}

// Clone returns an independent copy of m, unsynced changes included, so
// several crashes can be tried on one state.
func (m *Mem) Clone() *Mem {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return &Mem{cur: m.cur.clone(), durable: m.durable.clone(), pending: slices.Clone(m.pending)}
}

// Op is an operation a File counts.
type Op struct {
	Index int // 0 for the first counted operation
	Kind  OpKind
	Off   int64 // OpWrite, OpPunchHole: offset; OpTruncate: the new size
	Len   int64 // OpWrite, OpPunchHole: length in bytes
}

func (op Op) String() string {
	return fmt.Sprintf("#%d %s off=%d len=%d", op.Index, op.Kind, op.Off, op.Len)
}

// Injector decides which operation of a File fails.
type Injector interface {
	// Inject reports whether op fails. It is called with the File's lock
	// held, once per counted operation in index order, until it returns
	// true (and again after Revive). It must not call the File.
	Inject(op Op) bool
}

// InjectorFunc is an Injector in a function.
type InjectorFunc func(Op) bool

// Inject calls f.
func (f InjectorFunc) Inject(op Op) bool { return f(op) }

// OnIndex fails the i-th counted operation (from 0).
func OnIndex(i int) Injector { return InjectorFunc(func(op Op) bool { return op.Index == i }) }

// Never fails nothing: the File only counts.
func Never() Injector { return InjectorFunc(func(Op) bool { return false }) }

// File wraps a thinpool.File and fails operations as its Injector decides.
// Each WriteAt, Sync, PunchHole and Truncate counts as one operation. The
// first one the Injector picks fails without reaching the wrapped file, and
// so does every operation after it, reads included, as on a dead disk, until
// Revive. Close is passed through (a Mem ignores it).
//
// File is safe for concurrent use; operations are numbered in the order
// they start.
type File struct {
	f   thinpool.File
	inj Injector

	mu    sync.Mutex
	n     int   // operations counted so far
	fired int   // index of the operation the Injector picked, or -1
	dead  error // set once an operation was failed, or by Crash
}

var _ thinpool.File = (*File)(nil)

// Wrap returns f counting its operations and failing the one inj picks.
// A nil inj is Never().
func Wrap(f thinpool.File, inj Injector) *File {
	if inj == nil {
		inj = Never()
	}
	return &File{f: f, inj: inj, fired: -1}
}

// begin counts an operation and returns the error it must fail with.
func (w *File) begin(kind OpKind, off, n int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dead != nil {
		return w.dead
	}
	op := Op{Index: w.n, Kind: kind, Off: off, Len: n}
	w.n++
	if w.inj.Inject(op) {
		w.fired = op.Index
		w.dead = fmt.Errorf("%w at %v", ErrInjected, op)
	}
	return w.dead
}

// err returns the error a read must fail with, if the file is dead.
func (w *File) err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dead
}

// ReadAt reads from the wrapped file unless the file is dead.
func (w *File) ReadAt(b []byte, off int64) (int, error) {
	if err := w.err(); err != nil {
		return 0, err
	}
	return w.f.ReadAt(b, off)
}

// WriteAt is one operation.
func (w *File) WriteAt(b []byte, off int64) (int, error) {
	if err := w.begin(OpWrite, off, int64(len(b))); err != nil {
		return 0, err
	}
	return w.f.WriteAt(b, off)
}

// Sync is one operation.
func (w *File) Sync() error {
	if err := w.begin(OpSync, 0, 0); err != nil {
		return err
	}
	return w.f.Sync()
}

// PunchHole is one operation.
func (w *File) PunchHole(off, n int64) error {
	if err := w.begin(OpPunchHole, off, n); err != nil {
		return err
	}
	return w.f.PunchHole(off, n)
}

// Truncate is one operation.
func (w *File) Truncate(size int64) error {
	if err := w.begin(OpTruncate, size, 0); err != nil {
		return err
	}
	return w.f.Truncate(size)
}

// Size returns the wrapped file's size unless the file is dead.
func (w *File) Size() (int64, error) {
	if err := w.err(); err != nil {
		return 0, err
	}
	return w.f.Size()
}

// Close closes the wrapped file, dead or not. Closing a Mem does nothing.
func (w *File) Close() error { return w.f.Close() }

// Ops returns the number of operations counted so far.
func (w *File) Ops() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// Fired returns the index of the operation the Injector failed, and
// whether it did.
func (w *File) Fired() (index int, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fired, w.fired >= 0
}

// Revive brings a dead File back: operations reach the wrapped file again
// and the Injector is consulted again from the next index. It models a
// transient error.
func (w *File) Revive() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.dead = nil
}

// Mem returns the wrapped file if it is a *Mem, or nil.
func (w *File) Mem() *Mem {
	m, _ := w.f.(*Mem)
	return m
}

// kill makes every later operation fail with ErrCrashed.
func (w *File) kill() *Mem {
	m := w.Mem()
	if m == nil {
		panic("faultfile: Crash of a File that does not wrap a *Mem")
	}
	w.mu.Lock()
	w.dead = ErrCrashed
	w.mu.Unlock()
	return m
}

// Crash kills the File (see ErrCrashed) and crashes its Mem (Mem.Crash).
// Open the pool again on Mem().
func (w *File) Crash() { w.kill().Crash() }

// CrashRandom kills the File and crashes its Mem with Mem.CrashRandom.
func (w *File) CrashRandom(rng *rand.Rand) int { return w.kill().CrashRandom(rng) }
