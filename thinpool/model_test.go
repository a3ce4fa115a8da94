package thinpool

// Property tests: random operation sequences checked against an in-memory
// model (TestModel, and FuzzPoolOps driving the same interpreter with fuzz
// input), and concurrency tests (TestConcurrentIO, TestConcurrentCoWSingleCopy;
// run them with -race).
//
// The model keeps, per device, its bytes (a []byte of its size), name,
// labels and flags and, for space accounting, one token per virtual block
// that names the pool block behind it: blocks shared by snapshots share a
// token. From the tokens it predicts exactly which writes copy (C1, C2),
// which fail with ErrNoSpace, and UsedBlocks, FreeBlocks and PendingBlocks;
// it checks that Mappings shares pool blocks exactly where the tokens do.
//
// For crash recovery ("crash": open the file again without closing the
// pool) the model remembers, for every block changed since the last commit,
// each state the block has had since then. After recovery each such block
// must read as one of them, and every other block exactly as before.
//
// THINPOOL_MODEL=seeds,ops runs TestModel longer; a failure prints the seed
// (the subtest name) and the last operations.

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thinpool/thinpool/extent"
)

// pageStore is a sparse in-memory file: pages that were never written, or
// were punched, read as zeros. It is safe for concurrent use.
type pageStore struct {
	mu    sync.Mutex
	size  int64
	pages map[int64][]byte // page index -> storePage bytes
}

const storePage = 64 << 10

func newPageStore() *pageStore { return &pageStore{pages: map[int64][]byte{}} }

// open returns a new handle on s. Closing it does not affect other handles.
func (s *pageStore) open() *pageFile { return &pageFile{s: s} }

// pageFile is one open handle on a pageStore. After Close (or abandon, which
// simulates the process dying) every call fails.
type pageFile struct {
	s      *pageStore
	closed atomic.Bool
}

var _ File = (*pageFile)(nil)

func (f *pageFile) check(off int64) error {
	if f.closed.Load() {
		return os.ErrClosed
	}
	if off < 0 {
		return fmt.Errorf("pagefile: negative offset %d", off)
	}
	return nil
}

func (f *pageFile) ReadAt(b []byte, off int64) (int, error) {
	if err := f.check(off); err != nil {
		return 0, err
	}
	s := f.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if off >= s.size {
		return 0, io.EOF
	}
	n, err := int64(len(b)), error(nil)
	if off+n > s.size {
		n, err = s.size-off, io.EOF
	}
	for i := int64(0); i < n; {
		pi, po := (off+i)/storePage, (off+i)%storePage
		k := min(n-i, storePage-po)
		if pg := s.pages[pi]; pg != nil {
			copy(b[i:i+k], pg[po:po+k])
		} else {
			clear(b[i : i+k])
		}
		i += k
	}
	return int(n), err
}

func (f *pageFile) WriteAt(b []byte, off int64) (int, error) {
	if err := f.check(off); err != nil {
		return 0, err
	}
	s := f.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.write(b, off)
	return len(b), nil
}

// write copies b to off. Called with mu held.
func (s *pageStore) write(b []byte, off int64) {
	n := int64(len(b))
	for i := int64(0); i < n; {
		pi, po := (off+i)/storePage, (off+i)%storePage
		k := min(n-i, storePage-po)
		pg := s.pages[pi]
		if pg == nil {
			pg = make([]byte, storePage)
			s.pages[pi] = pg
		}
		copy(pg[po:po+k], b[i:i+k])
		i += k
	}
	s.size = max(s.size, off+n)
}

func (f *pageFile) Sync() error {
	return f.check(0)
}

func (f *pageFile) Truncate(size int64) error {
	if err := f.check(size); err != nil {
		return err
	}
	s := f.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if size < s.size {
		s.zero(size, s.size-size)
	}
	s.size = size
	return nil
}

func (f *pageFile) Size() (int64, error) {
	if err := f.check(0); err != nil {
		return 0, err
	}
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	return f.s.size, nil
}

func (f *pageFile) PunchHole(off, n int64) error {
	if err := f.check(off); err != nil {
		return err
	}
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	f.s.zero(off, n)
	return nil
}

// zero drops or clears the pages of [off, off+n). Called with mu held.
func (s *pageStore) zero(off, n int64) {
	for i := int64(0); i < n; {
		pi, po := (off+i)/storePage, (off+i)%storePage
		k := min(n-i, storePage-po)
		if k == storePage {
			delete(s.pages, pi)
		} else if pg := s.pages[pi]; pg != nil {
			clear(pg[po : po+k])
		}
		i += k
	}
}

func (f *pageFile) Close() error {
	if f.closed.Swap(true) {
		return os.ErrClosed
	}
	return nil
}

// abandon makes every later call on f fail, as if its process had died.
func (f *pageFile) abandon() { f.closed.Store(true) }

// chooser makes the random decisions of the model interpreter.
type chooser interface {
	// intn returns a number in [0, n); n > 0.
	intn(n int) int
	// exhausted reports that the chooser has run out of input.
	exhausted() bool
}

type randChooser struct{ r *rand.Rand }

func (c randChooser) intn(n int) int     { return c.r.IntN(n) }
func (c randChooser) exhausted() bool    { return false }
func newRandChooser(seed uint64) chooser { return randChooser{rand.New(rand.NewPCG(seed, 0x7468696e))} }

// byteChooser takes its decisions from fuzz input; once the input is used
// up every decision is 0.
type byteChooser struct{ b []byte }

func (c *byteChooser) intn(n int) int {
	if n <= 1 {
		return 0
	}
	var v uint
	for k := n - 1; k > 0; k >>= 8 {
		v <<= 8
		if len(c.b) > 0 {
			v |= uint(c.b[0])
			c.b = c.b[1:]
		}
	}
	return int(v % uint(n))
}

func (c *byteChooser) exhausted() bool { return len(c.b) == 0 }

// modelConfig sizes a model run.
type modelConfig struct {
	noCrash      bool  // leave out the crash operation
	dataBlocks   int64 // pool size in blocks
	maxDevBlocks int64 // largest device created, in blocks
	maxDevs      int   // most live devices
	verifyEvery  int   // verify everything every this many operations
	format       int   // Options.FormatVersion
}

// modelDev is the model of one thin device.
type modelDev struct {
	id      DevID
	name    string
	origin  DevID
	ro      bool
	labels  map[string]string
	created int64
	// data is the device's contents; len(data) is its size.
	data []byte
	// toks[v] names the pool block behind virtual block v, 0 if unmapped.
	// ctoks is toks at the last commit.
	toks, ctoks []uint64
	// hist[v] is every state (hash) block v has had since the last commit,
	// for the blocks changed since then.
	hist map[int64][]uint64
	h    *Thin
	// dirty is set when data changed since the last verification.
	dirty bool
}

func (d *modelDev) size() int64 { return int64(len(d.data)) }

// modelHarness runs operations on a pool and on the model side by side.
type modelHarness struct {
	t       testing.TB
	cfg     modelConfig
	c       chooser
	payload *rand.ChaCha8
	store   *pageStore
	file    *pageFile
	p       *Pool
	bs      int64

	devs    map[DevID]*modelDev
	nextID  DevID
	nextTok uint64
	pending int64 // blocks freed since the last commit
	// dropped are the tokens that lost a reference since the last commit.
	dropped map[uint64]bool
	stale   []*Thin // handles of deleted devices
	trace   []string
	nops    int
	stats   map[string]int // operation outcomes, for -v
	// verifies counts verifications; every fourth one, and the first after
	// a reopen (allDirty), reads every device, the others only those that
	// changed.
	verifies int
	allDirty bool
	readBuf  []byte
}

var modelHashSeed = maphash.MakeSeed()

func newModelHarness(t testing.TB, cfg modelConfig, c chooser, seed uint64) *modelHarness {
	t.Helper()
	var key [32]byte
	copy(key[:], strconv.FormatUint(seed, 10))
	h := &modelHarness{t: t, cfg: cfg, c: c, payload: rand.NewChaCha8(key), store: newPageStore(),
		devs: map[DevID]*modelDev{}, nextID: 1, stats: map[string]int{}, dropped: map[uint64]bool{}}
	h.file = h.store.open()
	p, err := CreateFile(h.file, Options{DataSize: cfg.dataBlocks * DefaultBlockSize, FormatVersion: cfg.format})
	if err != nil {
		t.Fatalf("create pool: %v", err)
	}
	h.p, h.bs = p, p.BlockSize()
	t.Cleanup(func() {
		if !h.file.closed.Load() {
			h.p.Close()
		}
	})
	return h
}

func (h *modelHarness) logf(format string, args ...any) {
	h.trace = append(h.trace, fmt.Sprintf("%d: ", h.nops)+fmt.Sprintf(format, args...))
	if len(h.trace) > 40 {
		h.trace = h.trace[len(h.trace)-40:]
	}
}

func (h *modelHarness) fatalf(format string, args ...any) {
	h.t.Helper()
	h.t.Fatalf("%s\nlast operations:\n  %s", fmt.Sprintf(format, args...), strings.Join(h.trace, "\n  "))
}

// expect fails unless err matches want (nil means success).
func (h *modelHarness) expect(what string, err, want error) {
	h.t.Helper()
	if (want == nil) != (err == nil) || want != nil && !errors.Is(err, want) {
		h.fatalf("%s: got error %v, want %v", what, err, want)
	}
	op, _, _ := strings.Cut(what, " ")
	if want == nil {
		h.stats[op+" ok"]++
	} else {
		h.stats[op+" "+strings.TrimPrefix(want.Error(), "thinpool: ")]++
	}
}

func (h *modelHarness) blocksOf(size int64) int64 { return (size + h.bs - 1) / h.bs }

// refs counts the references of each token.
func (h *modelHarness) refs() map[uint64]int {
	r := map[uint64]int{}
	for _, d := range h.devs {
		for _, tok := range d.toks {
			if tok != 0 {
				r[tok]++
			}
		}
	}
	return r
}

func (h *modelHarness) used() int64 { return int64(len(h.refs())) }

func (h *modelHarness) free() int64 { return h.cfg.dataBlocks - h.used() - h.pending }

// blockRange is the virtual blocks [v0, v1) that [off, off+n) touches.
func (h *modelHarness) blockRange(off, n int64) (v0, v1 int64) {
	return off / h.bs, (off + n + h.bs - 1) / h.bs
}

func (h *modelHarness) blockBytes(data []byte, v int64) []byte {
	return data[v*h.bs : min((v+1)*h.bs, int64(len(data)))]
}

func (h *modelHarness) blockHash(d *modelDev, v int64) uint64 {
	return maphash.Bytes(modelHashSeed, h.blockBytes(d.data, v))
}

// touch records block v's state before a change, if it is the first change
// since the last commit.
func (h *modelHarness) touch(d *modelDev, v int64) {
	if d.hist == nil {
		d.hist = map[int64][]uint64{}
	}
	if _, ok := d.hist[v]; !ok {
		d.hist[v] = []uint64{h.blockHash(d, v)}
	}
}

// record adds block v's current state to its history.
func (h *modelHarness) record(d *modelDev, v int64) {
	d.hist[v] = append(d.hist[v], h.blockHash(d, v))
}

// commit is the model side of a successful commit: the open transaction
// becomes durable.
func (h *modelHarness) commit() {
	h.pending = 0
	clear(h.dropped)
	for _, d := range h.devs {
		d.ctoks = slices.Clone(d.toks)
		d.hist = nil
	}
}

// writeErr is the error a write of n bytes at off must fail with, or nil.
func (h *modelHarness) writeErr(d *modelDev, off, n int64) error {
	switch {
	case d.ro:
		return ErrReadOnly
	case off < 0 || n < 0 || off+n > d.size():
		return ErrOutOfRange
	case n == 0:
		return nil
	}
	refs := h.refs()
	need := int64(0)
	v0, v1 := h.blockRange(off, n)
	for v := v0; v < v1; v++ {
		if h.needsBlock(refs, d.toks[v]) {
			need++
		}
	}
	if need > h.free() {
		return ErrNoSpace
	}
	return nil
}

// needsBlock reports whether a write to a block backed by tok takes a new
// pool block: it is unmapped, shared (C1), or lost a reference since the
// last commit (C2), so a crash would share it again.
func (h *modelHarness) needsBlock(refs map[uint64]int, tok uint64) bool {
	return tok == 0 || refs[tok] > 1 || h.dropped[tok]
}

// applyWrite is the model side of a successful write: blocks that need a
// new pool block get one, the others are written in place.
func (h *modelHarness) applyWrite(d *modelDev, off int64, b []byte) {
	if len(b) == 0 {
		return
	}
	refs := h.refs()
	v0, v1 := h.blockRange(off, int64(len(b)))
	for v := v0; v < v1; v++ {
		h.touch(d, v)
		tok := d.toks[v]
		if !h.needsBlock(refs, tok) {
			continue
		}
		switch {
		case tok == 0:
		case refs[tok] > 1:
			h.dropped[tok] = true
			h.stats["copy-on-write"]++
		default:
			h.pending++ // its only reference moves to the copy
			h.stats["copy of a block unshared since the commit"]++
		}
		h.nextTok++
		d.toks[v] = h.nextTok
	}
	copy(d.data[off:], b)
	for v := v0; v < v1; v++ {
		h.record(d, v)
	}
	d.dirty = true
}

// unmapRange is the whole blocks that Discard(off, n) unmaps.
func (h *modelHarness) unmapRange(d *modelDev, off, n int64) (v0, v1 int64) {
	v0, v1 = (off+h.bs-1)/h.bs, (off+n)/h.bs
	if off+n == d.size() {
		v1 = h.blocksOf(d.size())
	}
	return v0, max(v0, v1)
}

func (h *modelHarness) rangeErr(d *modelDev, off, n int64) error {
	switch {
	case d.ro:
		return ErrReadOnly
	case off < 0 || n < 0 || off+n > d.size():
		return ErrOutOfRange
	}
	return nil
}

// applyUnmap is the model side of unmapping blocks [v0, v1).
func (h *modelHarness) applyUnmap(d *modelDev, v0, v1 int64) {
	refs := h.refs()
	for v := v0; v < v1; v++ {
		tok := d.toks[v]
		if tok == 0 {
			continue
		}
		h.touch(d, v)
		d.toks[v] = 0
		if refs[tok]--; refs[tok] == 0 {
			h.pending++
		}
		h.dropped[tok] = true
		clear(h.blockBytes(d.data, v))
		h.record(d, v)
		d.dirty = true
	}
}

// zeroMapped is the model of Thin.zeroMapped: zeros written over [lo, hi)
// unless none of its blocks is mapped.
func (h *modelHarness) zeroMapped(d *modelDev, lo, hi int64) error {
	if hi <= lo {
		return nil
	}
	v0, v1 := h.blockRange(lo, hi-lo)
	mapped := false
	for v := v0; v < v1; v++ {
		mapped = mapped || d.toks[v] != 0
	}
	if !mapped {
		return nil
	}
	if err := h.writeErr(d, lo, hi-lo); err != nil {
		return err
	}
	h.applyWrite(d, lo, make([]byte, hi-lo))
	return nil
}

// pickDev returns a random live device, or nil.
func (h *modelHarness) pickDev() *modelDev {
	if len(h.devs) == 0 {
		return nil
	}
	ids := slices.Sorted(maps.Keys(h.devs))
	return h.devs[ids[h.c.intn(len(ids))]]
}

// pickWritable returns a random live device, mostly a writable one.
func (h *modelHarness) pickWritable() *modelDev {
	var ids []DevID
	for _, id := range slices.Sorted(maps.Keys(h.devs)) {
		if !h.devs[id].ro {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 || h.c.intn(8) == 0 {
		return h.pickDev()
	}
	return h.devs[ids[h.c.intn(len(ids))]]
}

func (h *modelHarness) byName(name string) *modelDev {
	for _, d := range h.devs {
		if d.name == name {
			return d
		}
	}
	return nil
}

var badNames = []string{"", "a/b", "..", ".", "two words", "tab\there", strings.Repeat("n", MaxNameLen+1), "bad\xffutf8"}

// pickName returns a device name: mostly one of a few valid names, live or
// not, sometimes an invalid one.
func (h *modelHarness) pickName() string {
	if h.c.intn(16) == 0 {
		return badNames[h.c.intn(len(badNames))]
	}
	return "d" + strconv.Itoa(h.c.intn(h.cfg.maxDevs+2))
}

// pickSize returns a device size: whole blocks, or a few sectors short of
// them, sometimes invalid.
func (h *modelHarness) pickSize() int64 {
	if h.c.intn(20) == 0 {
		return []int64{0, -SectorSize, 1000, MaxDeviceSize + SectorSize}[h.c.intn(4)]
	}
	size := (1 + int64(h.c.intn(int(h.cfg.maxDevBlocks)))) * h.bs
	if h.c.intn(2) == 0 {
		size -= SectorSize * int64(1+h.c.intn(int(h.bs/SectorSize)-1))
	}
	return size
}

var labelKeys = []string{"app", "tier", "ver", "os.release", "k"}

// pickLabels returns a label set, sometimes empty or invalid.
func (h *modelHarness) pickLabels() (map[string]string, error) {
	switch h.c.intn(12) {
	case 0:
		return nil, nil
	case 1:
		return map[string]string{}, nil
	case 2:
		return map[string]string{"": "empty key"}, ErrInvalid
	case 3:
		return map[string]string{"big": strings.Repeat("v", MaxLabelValueLen+1)}, ErrInvalid
	}
	l := map[string]string{}
	for range 1 + h.c.intn(3) {
		l[labelKeys[h.c.intn(len(labelKeys))]] = "v" + strconv.Itoa(h.c.intn(1000))
	}
	return l, nil
}

// pickRange returns a byte range of a device of size bytes, mostly in
// range: partial, whole and multi-block, the last partial block, sector
// aligned, empty, or past the end.
func (h *modelHarness) pickRange(size int64) (off, n int64) {
	bs := h.bs
	nblocks := h.blocksOf(size)
	switch h.c.intn(16) {
	case 0, 1, 2: // inside one block
		off = int64(h.c.intn(int(nblocks)))*bs + int64(h.c.intn(int(bs)))
		off = min(off, size-1)
		room := min(bs-off%bs, size-off)
		return off, 1 + int64(h.c.intn(int(room)))
	case 3, 4, 5: // whole blocks
		off = int64(h.c.intn(int(nblocks))) * bs
		return off, min(int64(1+h.c.intn(3))*bs, size-off)
	case 6, 7, 8: // anywhere, up to four blocks
		off = int64(h.c.intn(int(size)))
		return off, 1 + int64(h.c.intn(int(min(4*bs, size-off))))
	case 9, 10: // the end of the device
		last := (nblocks - 1) * bs
		off = last + int64(h.c.intn(int(size-last)))
		return off, size - off
	case 11, 12: // sectors
		off = int64(h.c.intn(int(size/SectorSize))) * SectorSize
		return off, min(int64(1+h.c.intn(16))*SectorSize, size-off)
	case 13: // empty
		return int64(h.c.intn(int(size + 1))), 0
	case 14: // across the end
		off = size - int64(h.c.intn(int(min(size, bs))+1))
		return off, size - off + 1 + int64(h.c.intn(int(bs)))
	default: // before the start, or past the end
		if h.c.intn(2) == 0 {
			return -int64(1 + h.c.intn(int(bs))), int64(h.c.intn(int(bs)))
		}
		return size + int64(h.c.intn(int(bs))), int64(h.c.intn(2))
	}
}

// data returns n bytes of fresh random data.
func (h *modelHarness) data(n int64) []byte {
	b := make([]byte, max(n, 0))
	h.payload.Read(b)
	return b
}

type modelOp struct {
	name   string
	weight int
	fn     func(*modelHarness)
}

var modelOps = []modelOp{
	{"write", 30, (*modelHarness).opWrite},
	{"fill", 5, (*modelHarness).opFill},
	{"read", 5, (*modelHarness).opRead},
	{"discard", 6, (*modelHarness).opDiscard},
	{"zeroes", 6, (*modelHarness).opWriteZeroes},
	{"create", 6, (*modelHarness).opCreate},
	{"snapshot", 6, (*modelHarness).opSnapshot},
	{"delete", 2, (*modelHarness).opDelete},
	{"rename", 2, (*modelHarness).opRename},
	{"resize", 2, (*modelHarness).opResize},
	{"labels", 2, (*modelHarness).opSetLabels},
	{"readonly", 1, (*modelHarness).opSetReadOnly},
	{"stale", 1, (*modelHarness).opStale},
	{"sync", 4, (*modelHarness).opSync},
	{"checkpoint", 1, (*modelHarness).opCheckpoint},
	{"reopen", 1, (*modelHarness).opReopen},
	{"crash", 2, (*modelHarness).opCrash},
}

var modelOpsWeight = func() int {
	n := 0
	for _, o := range modelOps {
		n += o.weight
	}
	return n
}()

// step runs one random operation.
func (h *modelHarness) step() {
	h.t.Helper()
	h.nops++
	k := h.c.intn(modelOpsWeight)
	for _, o := range modelOps {
		if k < o.weight {
			o.fn(h)
			return
		}
		k -= o.weight
	}
}

// run does n operations (fewer if the chooser runs out), verifying
// everything every cfg.verifyEvery operations and at the end.
func (h *modelHarness) run(n int) {
	h.t.Helper()
	for i := 0; i < n && !h.c.exhausted(); i++ {
		h.step()
		if h.cfg.verifyEvery > 0 && (i+1)%h.cfg.verifyEvery == 0 {
			h.verify()
		}
	}
	h.verify()
}

func (h *modelHarness) opWrite() {
	d := h.pickWritable()
	if d == nil {
		h.opCreate()
		return
	}
	off, n := h.pickRange(d.size())
	h.write(d, off, h.data(n))
}

// opFill writes a whole device, to run the pool out of space.
func (h *modelHarness) opFill() {
	if d := h.pickWritable(); d != nil {
		h.write(d, 0, h.data(d.size()))
	}
}

func (h *modelHarness) write(d *modelDev, off int64, b []byte) {
	h.t.Helper()
	n := int64(len(b))
	want := h.writeErr(d, off, n)
	h.logf("write %q off=%d n=%d (size %d) want %v", d.name, off, n, d.size(), want)
	got, err := d.h.WriteAt(b, off)
	h.expect(fmt.Sprintf("write %q at %d+%d", d.name, off, n), err, want)
	if want != nil {
		if got != 0 {
			h.fatalf("failed write returned n=%d", got)
		}
		return
	}
	if got != len(b) {
		h.fatalf("write %q at %d+%d returned n=%d", d.name, off, n, got)
	}
	h.applyWrite(d, off, b)
}

func (h *modelHarness) opRead() {
	d := h.pickDev()
	if d == nil {
		return
	}
	off, n := h.pickRange(d.size())
	if off < 0 && h.c.intn(2) == 0 {
		n = 0
	}
	buf := h.data(n)
	h.logf("read %q off=%d n=%d (size %d)", d.name, off, n, d.size())
	got, err := d.h.ReadAt(buf, off)
	switch {
	case off < 0:
		h.expect("read at a negative offset", err, ErrOutOfRange)
		return
	case off+n > d.size():
		if err != io.EOF {
			h.fatalf("read %q at %d+%d past the end (size %d): err %v, want io.EOF", d.name, off, n, d.size(), err)
		}
		n = max(0, d.size()-off)
	case err != nil:
		h.fatalf("read %q at %d+%d: %v", d.name, off, n, err)
	}
	if int64(got) != n {
		h.fatalf("read %q at %d: n=%d, want %d", d.name, off, got, n)
	}
	if n > 0 && !bytes.Equal(buf[:n], d.data[off:off+n]) {
		h.fatalf("read %q at %d+%d: contents differ from the model", d.name, off, n)
	}
}

func (h *modelHarness) opDiscard() {
	d := h.pickWritable()
	if d == nil {
		return
	}
	off, n := h.pickRange(d.size())
	want := h.rangeErr(d, off, n)
	h.logf("discard %q off=%d n=%d (size %d) want %v", d.name, off, n, d.size(), want)
	err := d.h.Discard(off, n)
	h.expect(fmt.Sprintf("discard %q at %d+%d", d.name, off, n), err, want)
	if want == nil {
		v0, v1 := h.unmapRange(d, off, n)
		h.applyUnmap(d, v0, v1)
	}
}

func (h *modelHarness) opWriteZeroes() {
	d := h.pickWritable()
	if d == nil {
		return
	}
	off, n := h.pickRange(d.size())
	want := h.rangeErr(d, off, n)
	if b0, b1 := off/h.bs, (off+n-1)/h.bs; want == nil && n > 0 && b0 != b1 && off%h.bs != 0 &&
		(off+n)%h.bs != 0 && off+n != d.size() && (d.toks[b0] == 0) != (d.toks[b1] == 0) {
		// Two partial blocks, one mapped: WriteZeroes allocates the other
		// (TestWriteZeroesUnmappedPartialBlock). Keep to the first block.
		n = b1*h.bs - off
	}
	if want == nil {
		// The model of WriteZeroes: unmap the whole blocks, then zero the
		// mapped partial blocks at either end.
		v0, v1 := h.unmapRange(d, off, n)
		h.applyUnmap(d, v0, v1)
		end := off + n
		if v1 <= v0 {
			want = h.zeroMapped(d, off, end)
		} else if want = h.zeroMapped(d, off, min(v0*h.bs, end)); want == nil {
			want = h.zeroMapped(d, max(v1*h.bs, off), end)
		}
	}
	h.logf("writezeroes %q off=%d n=%d (size %d) want %v", d.name, off, n, d.size(), want)
	err := d.h.WriteZeroes(off, n)
	h.expect(fmt.Sprintf("write zeroes %q at %d+%d", d.name, off, n), err, want)
}

func (h *modelHarness) canAdd() bool { return len(h.devs) < h.cfg.maxDevs }

// newErr is the error that creating a device called name must fail with.
func (h *modelHarness) newErr(name string) error {
	if ValidateName(name) != nil {
		return ErrInvalid
	}
	if h.byName(name) != nil {
		return ErrExists
	}
	return nil
}

func (h *modelHarness) opCreate() {
	name, size := h.pickName(), h.pickSize()
	labels, labelErr := h.pickLabels()
	var want error
	if checkSize(size) != nil {
		want = ErrInvalid
	} else {
		want = h.newErr(name)
	}
	if want == nil {
		want = labelErr
	}
	if want == nil && !h.canAdd() {
		return
	}
	h.logf("create %q size=%d labels=%v want %v", name, size, labels, want)
	th, err := h.p.CreateThin(name, size, labels)
	h.expect(fmt.Sprintf("create %q", name), err, want)
	if want != nil {
		return
	}
	d := &modelDev{id: h.nextID, name: name, labels: maps.Clone(labels), created: th.Info().Created.UnixNano(),
		data: make([]byte, size), toks: make([]uint64, h.blocksOf(size)), h: th, dirty: true}
	h.nextID++
	h.devs[d.id] = d
	h.commit()
}

func (h *modelHarness) opSnapshot() {
	origin := h.pickDev()
	originName := "nosuch"
	if origin != nil && h.c.intn(20) != 0 {
		originName = origin.name
	} else {
		origin = nil
	}
	name, ro := h.pickName(), h.c.intn(3) == 0
	want := error(nil)
	if origin == nil {
		want = ErrNotFound
	} else {
		want = h.newErr(name)
	}
	if want == nil && !h.canAdd() {
		return
	}
	h.logf("snapshot %q -> %q ro=%v want %v", originName, name, ro, want)
	th, err := h.p.Snapshot(originName, name, ro)
	h.expect(fmt.Sprintf("snapshot %q as %q", originName, name), err, want)
	if want != nil {
		return
	}
	d := &modelDev{id: h.nextID, name: name, origin: origin.id, ro: ro, created: th.Info().Created.UnixNano(),
		data: slices.Clone(origin.data), toks: slices.Clone(origin.toks), h: th, dirty: true}
	h.nextID++
	h.devs[d.id] = d
	h.commit()
}

// pickTarget returns the name of a live device, or sometimes of none.
func (h *modelHarness) pickTarget() (string, *modelDev) {
	d := h.pickDev()
	if d == nil || h.c.intn(20) == 0 {
		return "nosuch", nil
	}
	return d.name, d
}

func (h *modelHarness) opDelete() {
	name, d := h.pickTarget()
	want := error(nil)
	if d == nil {
		want = ErrNotFound
	}
	h.logf("delete %q want %v", name, want)
	h.expect(fmt.Sprintf("delete %q", name), h.p.Delete(name), want)
	if d == nil {
		return
	}
	for _, o := range h.devs {
		if o.origin == d.id {
			h.stats["delete of an origin with live snapshots"]++
			break
		}
	}
	delete(h.devs, d.id)
	h.stale = append(h.stale, d.h)
	h.commit()
}

func (h *modelHarness) opRename() {
	name, d := h.pickTarget()
	newName := h.pickName()
	var want error
	switch {
	case ValidateName(newName) != nil:
		want = ErrInvalid
	case d == nil:
		want = ErrNotFound
	case newName != name && h.byName(newName) != nil:
		want = ErrExists
	}
	h.logf("rename %q -> %q want %v", name, newName, want)
	h.expect(fmt.Sprintf("rename %q to %q", name, newName), h.p.Rename(name, newName), want)
	if want == nil {
		d.name = newName
		h.commit()
	}
}

func (h *modelHarness) opResize() {
	name, d := h.pickTarget()
	size := h.pickSize()
	if d != nil && h.c.intn(4) != 0 {
		// Mostly grow, by up to two blocks and some sectors.
		size = d.size() + int64(h.c.intn(3))*h.bs + SectorSize*int64(h.c.intn(int(h.bs/SectorSize)))
		if size > h.cfg.maxDevBlocks*h.bs*3/2 {
			size = d.size()
		}
	}
	var want error
	switch {
	case checkSize(size) != nil:
		want = ErrInvalid
	case d == nil:
		want = ErrNotFound
	case size < d.size():
		want = ErrInvalid
	case d.ro:
		want = ErrReadOnly
	}
	h.logf("resize %q to %d want %v", name, size, want)
	h.expect(fmt.Sprintf("resize %q to %d", name, size), h.p.Resize(name, size), want)
	if want != nil {
		return
	}
	d.data = append(d.data, make([]byte, size-d.size())...)
	d.toks = append(d.toks, make([]uint64, h.blocksOf(size)-int64(len(d.toks)))...)
	d.dirty = true
	h.commit()
}

func (h *modelHarness) opSetLabels() {
	name, d := h.pickTarget()
	labels, want := h.pickLabels()
	if want == nil && d == nil {
		want = ErrNotFound
	}
	h.logf("labels %q %v want %v", name, labels, want)
	h.expect(fmt.Sprintf("set labels of %q", name), h.p.SetLabels(name, labels), want)
	if want == nil {
		d.labels = maps.Clone(labels)
		h.commit()
	}
}

func (h *modelHarness) opSetReadOnly() {
	name, d := h.pickTarget()
	ro := h.c.intn(3) == 0
	want := error(nil)
	if d == nil {
		want = ErrNotFound
	}
	h.logf("readonly %q %v want %v", name, ro, want)
	h.expect(fmt.Sprintf("set read-only %q", name), h.p.SetReadOnly(name, ro), want)
	if want == nil {
		d.ro = ro
		h.commit()
	}
}

// opStale uses the handle of a deleted device.
func (h *modelHarness) opStale() {
	if len(h.stale) == 0 {
		return
	}
	th := h.stale[h.c.intn(len(h.stale))]
	h.logf("stale handle %d", th.ID())
	_, err := th.WriteAt([]byte{1}, 0)
	h.expect("write to a deleted device", err, ErrNotFound)
	_, err = th.ReadAt(make([]byte, 1), 0)
	h.expect("read of a deleted device", err, ErrNotFound)
	h.expect("discard of a deleted device", th.Discard(0, 1), ErrNotFound)
}

func (h *modelHarness) opSync() {
	h.logf("sync")
	h.expect("sync", h.p.Sync(), nil)
	h.commit()
}

func (h *modelHarness) opCheckpoint() {
	h.logf("checkpoint")
	h.expect("checkpoint", h.p.Checkpoint(), nil)
	h.commit()
}

// reopen opens the pool file again, after closing the pool or, when crash
// is set, abandoning it.
func (h *modelHarness) reopen(crash bool) {
	h.t.Helper()
	old := h.p
	if crash {
		h.file.abandon()
	} else if err := h.p.Close(); err != nil {
		h.fatalf("close: %v", err)
	}
	h.file = h.store.open()
	p, err := OpenFile(h.file)
	if err != nil {
		h.fatalf("open after %s: %v", map[bool]string{false: "close", true: "crash"}[crash], err)
	}
	h.p = p
	if !crash {
		if _, err := old.Device("x"); !errors.Is(err, ErrClosed) {
			h.fatalf("closed pool: Device returned %v, want ErrClosed", err)
		}
		for _, d := range h.devs {
			_, err := d.h.ReadAt(make([]byte, 1), 0)
			h.expect("read through a handle of a closed pool", err, ErrClosed)
			break
		}
	}
	h.stale = nil
	h.allDirty = true
	for _, d := range h.devs {
		th, err := p.DeviceByID(d.id)
		if err != nil {
			h.fatalf("device %d (%q) after reopen: %v", d.id, d.name, err)
		}
		d.h = th
	}
}

func (h *modelHarness) opReopen() {
	h.logf("reopen")
	h.reopen(false)
	h.commit()
}

// opCrash abandons the pool without closing it and recovers the file. Every
// block changed since the last commit must read as one of the states it had
// since then; the model then takes the recovered contents.
func (h *modelHarness) opCrash() {
	if h.cfg.noCrash {
		h.opReopen()
		return
	}
	h.logf("crash")
	h.stats["crash"]++
	h.reopen(true)
	for _, id := range slices.Sorted(maps.Keys(h.devs)) {
		d := h.devs[id]
		got := make([]byte, d.size())
		if _, err := d.h.ReadAt(got, 0); err != nil {
			h.fatalf("read %q after crash: %v", d.name, err)
		}
		for v := range h.blocksOf(d.size()) {
			blk := h.blockBytes(got, v)
			if hs, ok := d.hist[v]; ok {
				if !slices.Contains(hs, maphash.Bytes(modelHashSeed, blk)) {
					h.fatalf("device %q block %d after crash recovery holds data it never had since the last commit (%d states)",
						d.name, v, len(hs))
				}
			} else if !bytes.Equal(blk, h.blockBytes(d.data, v)) {
				h.fatalf("device %q block %d changed by crash recovery, unchanged since the last commit", d.name, v)
			}
		}
		d.data = got
		d.toks = slices.Clone(d.ctoks)
	}
	h.commit()
}

// verify checks the whole pool against the model.
func (h *modelHarness) verify() {
	h.t.Helper()
	h.verifyDevices()
	h.verifyContents()
	h.verifyUsage()
	h.verifyMappings()
	r, err := h.p.Check()
	if err != nil {
		h.fatalf("check: %v", err)
	}
	if !r.OK() || r.Devices != len(h.devs) {
		h.fatalf("check: %d devices (model %d), errors %q, leaks %q", r.Devices, len(h.devs), r.Errors, r.Leaks)
	}
}

func labelsEqual(a, b map[string]string) bool {
	return len(a) == len(b) && maps.Equal(a, b)
}

func (h *modelHarness) verifyDevices() {
	h.t.Helper()
	infos := h.p.Devices()
	if len(infos) != len(h.devs) {
		h.fatalf("Devices: %d devices, model has %d", len(infos), len(h.devs))
	}
	for i, id := range slices.Sorted(maps.Keys(h.devs)) {
		d, info := h.devs[id], infos[i]
		originName := ""
		if o := h.devs[d.origin]; o != nil {
			originName = o.name
		}
		want := DeviceInfo{ID: d.id, Name: d.name, Size: d.size(), Origin: d.origin, OriginName: originName,
			ReadOnly: d.ro, Created: time.Unix(0, d.created), Labels: d.labels}
		if info.ID != want.ID || info.Name != want.Name || info.Size != want.Size || info.Origin != want.Origin ||
			info.OriginName != want.OriginName || info.ReadOnly != want.ReadOnly ||
			!info.Created.Equal(want.Created) || !labelsEqual(info.Labels, want.Labels) {
			h.fatalf("Devices()[%d] = %+v, model %+v", i, info, want)
		}
		if hi := d.h.Info(); hi.Name != d.name || hi.Size != d.size() {
			h.fatalf("handle of device %d: Info %+v", d.id, hi)
		}
		if sz := d.h.Size(); sz != d.size() {
			h.fatalf("handle of device %q: Size %d, model %d", d.name, sz, d.size())
		}
	}
}

func (h *modelHarness) verifyContents() {
	h.t.Helper()
	h.verifies++
	all := h.allDirty || h.verifies%4 == 0
	h.allDirty = false
	for _, id := range slices.Sorted(maps.Keys(h.devs)) {
		d := h.devs[id]
		if !d.dirty && !all {
			continue
		}
		d.dirty = false
		if int64(cap(h.readBuf)) < d.size() {
			h.readBuf = make([]byte, d.size())
		}
		got := h.readBuf[:d.size()]
		n, err := d.h.ReadAt(got, 0)
		if err != nil || n != len(got) {
			h.fatalf("read all of %q: n=%d err=%v", d.name, n, err)
		}
		if !bytes.Equal(got, d.data) {
			i := 0
			for got[i] == d.data[i] {
				i++
			}
			h.fatalf("device %q (size %d) differs from the model at byte %d (block %d)", d.name, d.size(), i, int64(i)/h.bs)
		}
	}
}

func (h *modelHarness) verifyUsage() {
	h.t.Helper()
	u := h.p.Usage()
	used := h.used()
	h.stats["max used blocks"] = max(h.stats["max used blocks"], int(used))
	if u.DataBlocks != uint64(h.cfg.dataBlocks) || u.UsedBlocks+u.FreeBlocks+u.PendingBlocks != u.DataBlocks {
		h.fatalf("Usage: %d used + %d free + %d pending != %d blocks (want %d)",
			u.UsedBlocks, u.FreeBlocks, u.PendingBlocks, u.DataBlocks, h.cfg.dataBlocks)
	}
	if u.UsedBlocks != uint64(used) || u.PendingBlocks != uint64(h.pending) || u.FreeBlocks != uint64(h.free()) {
		h.fatalf("Usage: %d used, %d free, %d pending; model %d, %d, %d",
			u.UsedBlocks, u.FreeBlocks, u.PendingBlocks, used, h.free(), h.pending)
	}
	if u.Devices != len(h.devs) {
		h.fatalf("Usage: %d devices, model %d", u.Devices, len(h.devs))
	}
	refs := h.refs()
	for _, d := range h.devs {
		var want DeviceUsage
		for v, tok := range d.toks {
			if tok == 0 {
				continue
			}
			want.Mapped++
			if refs[tok] > 1 {
				want.Shared++
			}
			want.HighestMapped = uint64(v + 1)
		}
		want.Exclusive = want.Mapped - want.Shared
		got, err := d.h.Usage()
		if err != nil {
			h.fatalf("usage of %q: %v", d.name, err)
		}
		got.Extents = 0
		if got != want {
			h.fatalf("usage of %q: %+v, model %+v", d.name, got, want)
		}
	}
}

// verifyMappings checks that devices share pool blocks exactly where the
// model's tokens say they do.
func (h *modelHarness) verifyMappings() {
	h.t.Helper()
	tokOf := map[extent.PBlock]uint64{}
	blockOf := map[uint64]extent.PBlock{}
	for _, d := range h.devs {
		ms, err := h.p.Mappings(d.name)
		if err != nil {
			h.fatalf("mappings of %q: %v", d.name, err)
		}
		mapped := make([]bool, len(d.toks))
		for _, m := range ms {
			for i := range m.Len {
				v, pb := int64(m.V)+int64(i), m.P+extent.PBlock(i)
				if v >= int64(len(d.toks)) || d.toks[v] == 0 {
					h.fatalf("device %q maps block %d, which the model has unmapped", d.name, v)
				}
				tok := d.toks[v]
				mapped[v] = true
				if t, ok := tokOf[pb]; ok && t != tok {
					h.fatalf("pool block %d is shared by blocks the model keeps apart (device %q block %d)", pb, d.name, v)
				}
				if b, ok := blockOf[tok]; ok && b != pb {
					h.fatalf("device %q block %d: pool block %d, another device has the same data in %d", d.name, v, pb, b)
				}
				tokOf[pb], blockOf[tok] = tok, pb
			}
		}
		for v, tok := range d.toks {
			if tok != 0 && !mapped[v] {
				h.fatalf("device %q block %d is not mapped; the model has it mapped", d.name, v)
			}
		}
	}
}

// raceEnabled reports whether the test binary was built with -race, which
// makes copying data about fifty times slower.
var raceEnabled = func() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}()

// modelRuns is how many seeds and operations TestModel runs: fewer with
// -race or -short; THINPOOL_MODEL=seeds,ops sets them.
func modelRuns(t *testing.T) (seeds, ops int) {
	seeds, ops = 8, 600
	switch {
	case testing.Short():
		seeds, ops = 2, 150
	case raceEnabled:
		seeds, ops = 4, 250
	}
	if s := os.Getenv("THINPOOL_MODEL"); s != "" {
		a, b, _ := strings.Cut(s, ",")
		var err1, err2 error
		seeds, err1 = strconv.Atoi(a)
		ops, err2 = strconv.Atoi(b)
		if err1 != nil || err2 != nil {
			t.Fatalf("THINPOOL_MODEL=%q: want seeds,ops", s)
		}
	}
	return seeds, ops
}

// TestModel runs random operation sequences against the model, on a pool
// of 256 blocks (even seeds) and one of 64 that runs out of space often (odd
// seeds). THINPOOL_MODEL_NOCRASH=1 leaves out crash recovery.
func TestModel(t *testing.T) {
	forEachFormat(t, testModel)
}

func testModel(t *testing.T, format int) {
	seeds, ops := modelRuns(t)
	if format == formatV3 && (testing.Short() || raceEnabled) {
		seeds = max(seeds/2, 2)
	}
	var noSpace, crashes atomic.Int64
	t.Run("seeds", func(t *testing.T) {
		for seed := range uint64(seeds) {
			cfg := modelConfig{noCrash: os.Getenv("THINPOOL_MODEL_NOCRASH") != "",
				dataBlocks: 256, maxDevBlocks: 40, maxDevs: 10, verifyEvery: 6, format: format}
			if seed%2 == 1 {
				cfg.dataBlocks = 64
			}
			t.Run(fmt.Sprintf("seed=%d/blocks=%d", seed, cfg.dataBlocks), func(t *testing.T) {
				t.Parallel()
				h := newModelHarness(t, cfg, newRandChooser(seed), seed)
				h.run(ops)
				t.Logf("outcomes: %v", h.stats)
				for k, n := range h.stats {
					if strings.HasSuffix(k, "no free data blocks") {
						noSpace.Add(int64(n))
					}
				}
				crashes.Add(int64(h.stats["crash"]))
			})
		}
	})
	if !t.Failed() && seeds >= 2 && ops >= 100 && noSpace.Load() == 0 {
		t.Error("no operation ran out of space: the model no longer covers ErrNoSpace")
	}
	t.Logf("%d operations ran out of space, %d crashes", noSpace.Load(), crashes.Load())
}

// TestModelCrashAfterUnshare is the shortest sequence behind the crash
// recovery failure that TestModel found before C2: a snapshot's write copies
// a shared block (or a discard drops it), leaving the origin the only user
// of the old block, and the origin then overwrote that block in place. The
// snapshot's change was not committed, so a crash took the snapshot back to
// the old block, which held the origin's write.
func TestModelCrashAfterUnshare(t *testing.T) {
	for _, tc := range []struct {
		name    string
		unshare func(t *testing.T, s *Thin)
	}{
		{"write", func(t *testing.T, s *Thin) { mustWrite(t, s, []byte("snap"), 0) }},
		{"discard", func(t *testing.T, s *Thin) {
			if err := s.Discard(0, DefaultBlockSize); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := newPageStore()
			f := store.open()
			p, err := CreateFile(f, Options{DataSize: 64 * DefaultBlockSize})
			if err != nil {
				t.Fatal(err)
			}
			o := mustThin(t, p, "o", 4*DefaultBlockSize)
			orig := bytes.Repeat([]byte("O"), DefaultBlockSize)
			mustWrite(t, o, orig, 0)
			s, err := p.Snapshot("o", "s", false)
			if err != nil { // commits the write as well
				t.Fatal(err)
			}
			tc.unshare(t, s)                  // s gets its own block, or none; o is the only user of the old one
			mustWrite(t, o, []byte("new"), 0) // in place: o's reference is the only one now
			f.abandon()                       // crash: nothing since the snapshot is committed

			p2, err := OpenFile(store.open())
			if err != nil {
				t.Fatal(err)
			}
			defer p2.Close()
			mustCheck(t, p2)
			s2, err := p2.Device("s")
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 8)
			if _, err := s2.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			// s never held "new": it must read as committed ("OOOO...") or
			// as it was before the crash ("snap" or zeros).
			if bytes.HasPrefix(got, []byte("new")) {
				t.Fatalf("after crash recovery snapshot s reads %q: the origin's uncommitted write went into the block s still maps", got)
			}
		})
	}
}

// TestWriteZeroesUnmappedPartialBlock zeroes a range that covers no block
// whole and straddles a mapped and an unmapped block. WriteZeroes documents
// that partial blocks are zeroed "where they are mapped", so the unmapped
// one must stay unmapped: it costs no space and cannot fail with ErrNoSpace.
func TestWriteZeroesUnmappedPartialBlock(t *testing.T) {
	const blk = DefaultBlockSize
	for _, tc := range []struct {
		name   string
		blocks int64 // pool size
	}{
		{"full pool", 2},
		{"free blocks", 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := CreateFile(newPageStore().open(), Options{DataSize: tc.blocks * blk})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			d := mustThin(t, p, "d", 4*blk)
			mustWrite(t, d, bytes.Repeat([]byte{7}, blk), 0)     // block 0 mapped
			mustWrite(t, d, bytes.Repeat([]byte{8}, blk), 3*blk) // and block 3
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
			// [blk/2, 3*blk/2): half of block 0 (mapped), half of block 1 (not).
			if err := d.WriteZeroes(blk/2, blk); err != nil {
				t.Errorf("WriteZeroes over a mapped and an unmapped partial block: %v", err)
			}
			u, err := d.Usage()
			if err != nil {
				t.Fatal(err)
			}
			if u.Mapped != 2 {
				t.Errorf("%d blocks mapped after WriteZeroes, want 2: the unmapped partial block was allocated", u.Mapped)
			}
			want := append(bytes.Repeat([]byte{7}, blk/2), make([]byte, 3*blk/2)...)
			mustEqual(t, "blocks 0-1", mustRead(t, d, 0, 2*blk), want)
			mustCheck(t, p)
		})
	}
}

// FuzzPoolOps drives the model interpreter with fuzz input, one byte or two
// per decision, on a small pool so that it runs out of space.
func FuzzPoolOps(f *testing.F) {
	for seed := range uint64(8) {
		r := rand.New(rand.NewPCG(seed, 1))
		b := make([]byte, 64+r.IntN(256))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0x10, 0x00, 0x80}, 40))
	cfg := modelConfig{dataBlocks: 24, maxDevBlocks: 6, maxDevs: 5, verifyEvery: 4}
	f.Fuzz(func(t *testing.T, in []byte) {
		// Only the first bytes count: Go's minimizer is quadratic in the
		// input length, and one run of this target takes milliseconds.
		h := newModelHarness(t, cfg, &byteChooser{b: in[:min(len(in), 96)]}, 1)
		h.run(32)
	})
}

// TestConcurrentIO runs writers, readers, snapshots, syncs, discards and
// checks at the same time. Each writer owns a region that nobody else
// writes, so it can check every read of it; two writers share each block of
// one region, each owning half of every block. Snapshots taken meanwhile
// must hold, for each region, a state its owner produced.
func TestConcurrentIO(t *testing.T) {
	const (
		blk    = DefaultBlockSize
		nblk   = 64
		rounds = 40
	)
	store := newPageStore()
	p, err := CreateFile(store.open(), Options{DataSize: 1024 * blk})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	}()
	o := mustThin(t, p, "o", nblk*blk)
	base := make([]byte, nblk*blk)
	rand.NewChaCha8([32]byte{1}).Read(base)
	mustWrite(t, o, base, 0)
	s, err := p.Snapshot("o", "s", false)
	if err != nil {
		t.Fatal(err)
	}

	// A region is bytes [off, off+len(data)) of dev, owned by one writer.
	// states holds the hash of every state the writer has produced or is
	// about to produce.
	type region struct {
		name    string
		dev     *Thin
		off     int64
		n       int    // len(data), for the other goroutines
		data    []byte // the region's contents; only its writer uses it
		discard bool   // the owner also discards and writes zeroes
		mu      sync.Mutex
		states  map[uint64]bool
	}
	newRegion := func(name string, dev *Thin, off, n int64, discard bool) *region {
		r := &region{name: name, dev: dev, off: off, n: int(n), data: slices.Clone(base[off : off+n]), discard: discard,
			states: map[uint64]bool{}}
		r.states[maphash.Bytes(modelHashSeed, r.data)] = true
		return r
	}
	var oRegions []*region // regions of o, checked in o's snapshots
	var regions []*region
	for i := range int64(4) { // o blocks 0-31, eight each
		r := newRegion(fmt.Sprintf("o%d", i), o, i*8*blk, 8*blk, i%2 == 1)
		oRegions, regions = append(oRegions, r), append(regions, r)
	}
	for i := range int64(2) { // s blocks 32-47
		regions = append(regions, newRegion(fmt.Sprintf("s%d", i), s, (32+i*8)*blk, 8*blk, true))
	}
	// o blocks 48-55: two writers per block, one per half; as regions they
	// are the halves, so a region is not contiguous: handle them apart.
	type halfWriter struct {
		name   string
		half   int64
		data   []byte // the half of each block, concatenated
		mu     sync.Mutex
		states map[uint64]bool
	}
	halves := make([]*halfWriter, 2)
	for i := range halves {
		hw := &halfWriter{name: fmt.Sprintf("half%d", i), half: int64(i), states: map[uint64]bool{}}
		for b := int64(48); b < 56; b++ {
			start := b*blk + hw.half*blk/2
			hw.data = append(hw.data, base[start:start+blk/2]...)
		}
		hw.states[maphash.Bytes(modelHashSeed, hw.data)] = true
		halves[i] = hw
	}
	// readHalves reads one half of each of o's blocks 48-55; nil on error.
	readHalves := func(dev *Thin, half int64) []byte {
		var out []byte
		for b := int64(48); b < 56; b++ {
			got := mustReadNoFatal(dev, b*blk+half*blk/2, blk/2)
			if got == nil {
				return nil
			}
			out = append(out, got...)
		}
		return out
	}

	var (
		wg       sync.WaitGroup
		stop     atomic.Bool
		failOnce sync.Once
		failure  atomic.Value
	)
	fail := func(format string, args ...any) {
		failOnce.Do(func() { failure.Store(fmt.Sprintf(format, args...)) })
		stop.Store(true)
	}
	check := func(what string, err error) bool {
		if err != nil {
			fail("%s: %v", what, err)
			return false
		}
		return true
	}
	var writers sync.WaitGroup

	for i, r := range regions {
		writers.Add(1)
		go func() {
			defer writers.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 2))
			n := int64(len(r.data))
			for k := 0; k < rounds && !stop.Load(); k++ {
				// Plan the next state, record it, then make it.
				off := rng.Int64N(n)
				ln := 1 + rng.Int64N(min(n-off, 3*blk))
				if rng.IntN(3) == 0 { // whole blocks
					off = rng.Int64N(n/blk) * blk
					ln = min(n-off, (1+rng.Int64N(2))*blk)
				}
				op := 0
				if r.discard {
					op = rng.IntN(4) // 0,1: write, 2: discard, 3: write zeroes
				}
				var next [][]byte // states the op passes through
				buf := make([]byte, ln)
				switch op {
				case 0, 1:
					rand.NewChaCha8([32]byte{byte(i), byte(k), 7}).Read(buf)
					st := slices.Clone(r.data)
					copy(st[off:], buf)
					next = append(next, st)
				case 2, 3:
					abs := r.off + off
					v0, v1 := (abs+blk-1)/blk, (abs+ln)/blk
					st := slices.Clone(r.data)
					for v := v0; v < v1; v++ {
						clear(st[v*blk-r.off : (v+1)*blk-r.off])
					}
					next = append(next, st)
					if op == 3 {
						// WriteZeroes unmaps the whole blocks, then zeroes
						// the partial ones, in steps that each change whole
						// blocks: a snapshot may see any subset of the
						// blocks done. The final state goes last.
						final := slices.Clone(r.data)
						clear(final[off : off+ln])
						b0, b1 := off/blk, (off+ln-1)/blk
						for mask := 1; mask < 1<<(b1-b0+1); mask++ {
							st := slices.Clone(r.data)
							for b := b0; b <= b1; b++ {
								if mask&(1<<(b-b0)) != 0 {
									copy(st[b*blk:(b+1)*blk], final[b*blk:(b+1)*blk])
								}
							}
							next = append(next, st)
						}
					}
				}
				r.mu.Lock()
				for _, st := range next {
					r.states[maphash.Bytes(modelHashSeed, st)] = true
				}
				r.mu.Unlock()
				var err error
				switch op {
				case 0, 1:
					_, err = r.dev.WriteAt(buf, r.off+off)
				case 2:
					err = r.dev.Discard(r.off+off, ln)
				case 3:
					err = r.dev.WriteZeroes(r.off+off, ln)
				}
				if !check(fmt.Sprintf("%s op %d at %d+%d", r.name, op, r.off+off, ln), err) {
					return
				}
				r.data = next[len(next)-1]
				// Read back a random part of the region: nobody else writes it.
				roff := rng.Int64N(n)
				rln := 1 + rng.Int64N(min(n-roff, 2*blk))
				got := make([]byte, rln)
				if _, err := r.dev.ReadAt(got, r.off+roff); !check("read "+r.name, err) {
					return
				}
				if !bytes.Equal(got, r.data[roff:roff+rln]) {
					fail("%s: read at %d+%d differs from what its owner wrote", r.name, r.off+roff, rln)
					return
				}
			}
		}()
	}
	for _, hw := range halves {
		writers.Add(1)
		go func() {
			defer writers.Done()
			rng := rand.New(rand.NewPCG(uint64(hw.half), 3))
			for k := 0; k < rounds && !stop.Load(); k++ {
				b := rng.Int64N(8)
				off := rng.Int64N(blk / 2)
				ln := 1 + rng.Int64N(blk/2-off)
				buf := make([]byte, ln)
				rand.NewChaCha8([32]byte{byte(hw.half), byte(k), 9}).Read(buf)
				st := slices.Clone(hw.data)
				copy(st[b*blk/2+off:], buf)
				hw.mu.Lock()
				hw.states[maphash.Bytes(modelHashSeed, st)] = true
				hw.mu.Unlock()
				if _, err := o.WriteAt(buf, (48+b)*blk+hw.half*blk/2+off); !check(hw.name, err) {
					return
				}
				hw.data = st
				if !bytes.Equal(readHalves(o, hw.half), hw.data) {
					fail("%s: its halves differ from what it wrote", hw.name)
					return
				}
			}
		}()
	}

	// Readers: the whole of o and s (contents racy, no errors), and the
	// blocks nobody writes: o and s 56-63 and s 48-55 keep the base data.
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 4))
			buf := make([]byte, 3*blk)
			for !stop.Load() {
				dev := []*Thin{o, s}[rng.IntN(2)]
				off := rng.Int64N(nblk*blk - int64(len(buf)))
				if _, err := dev.ReadAt(buf, off); !check("reader", err) {
					return
				}
				for _, c := range []struct {
					dev  *Thin
					from int64
				}{{o, 56}, {s, 48}, {s, 56}} {
					got := mustReadNoFatal(c.dev, c.from*blk, 8*blk)
					if !bytes.Equal(got, base[c.from*blk:(c.from+8)*blk]) {
						fail("blocks %d-%d that nobody writes changed", c.from, c.from+7)
						return
					}
				}
				time.Sleep(500 * time.Microsecond)
			}
		}()
	}
	// Snapshots of o: each region must be in a state its owner made.
	var snaps atomic.Int32
	wg.Add(1)
	go func() {
		defer wg.Done()
		var live []string
		for i := 0; !stop.Load(); i++ {
			name := fmt.Sprintf("snap%d", i)
			sn, err := p.Snapshot("o", name, i%2 == 0)
			if !check("snapshot", err) {
				return
			}
			snaps.Add(1)
			live = append(live, name)
			for _, r := range oRegions {
				got := mustReadNoFatal(sn, r.off, r.n)
				r.mu.Lock()
				ok := r.states[maphash.Bytes(modelHashSeed, got)]
				r.mu.Unlock()
				if !ok {
					fail("snapshot %s: region %s is in a state its owner never made", name, r.name)
					return
				}
			}
			for _, hw := range halves {
				got := readHalves(sn, hw.half)
				hw.mu.Lock()
				ok := hw.states[maphash.Bytes(modelHashSeed, got)]
				hw.mu.Unlock()
				if !ok {
					fail("snapshot %s: %s is in a state its owner never made", name, hw.name)
					return
				}
			}
			if len(live) > 3 {
				if !check("delete snapshot", p.Delete(live[0])) {
					return
				}
				live = live[1:]
			}
			time.Sleep(time.Millisecond)
		}
	}()
	// Syncs, and checks of the whole pool while I/O runs.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			if !check("sync", p.Sync()) {
				return
			}
			if i%8 == 0 {
				r, err := p.Check()
				if !check("check", err) {
					return
				}
				if !r.OK() {
					fail("check during I/O: errors %q leaks %q", r.Errors, r.Leaks)
					return
				}
				u := p.Usage()
				if u.UsedBlocks+u.FreeBlocks+u.PendingBlocks != u.DataBlocks {
					fail("usage during I/O: %+v", u)
					return
				}
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()

	writers.Wait()
	stop.Store(true)
	wg.Wait()
	if msg := failure.Load(); msg != nil {
		t.Fatal(msg)
	}
	if snaps.Load() == 0 {
		t.Error("no snapshot was taken while the writers ran")
	}
	t.Logf("%d snapshots taken and checked while the writers ran", snaps.Load())
	mustCheck(t, p)
	verifyRegions := func(p *Pool) {
		o, err := p.Device("o")
		if err != nil {
			t.Fatal(err)
		}
		s, err := p.Device("s")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range regions {
			dev := o
			if r.dev.ID() == s.ID() {
				dev = s
			}
			mustEqual(t, "region "+r.name, mustRead(t, dev, r.off, len(r.data)), r.data)
		}
		for _, hw := range halves {
			mustEqual(t, hw.name, readHalves(o, hw.half), hw.data)
		}
		mustEqual(t, "s blocks 48-63", mustRead(t, s, 48*blk, 16*blk), base[48*blk:])
		mustEqual(t, "o blocks 56-63", mustRead(t, o, 56*blk, 8*blk), base[56*blk:])
	}
	verifyRegions(p)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p, err = OpenFile(store.open())
	if err != nil {
		t.Fatal(err)
	}
	mustCheck(t, p)
	verifyRegions(p)
}

// mustReadNoFatal reads for a goroutine that is not the test's: errors
// show up as a mismatch.
func mustReadNoFatal(d *Thin, off int64, n int) []byte {
	b := make([]byte, n)
	if _, err := d.ReadAt(b, off); err != nil {
		return nil
	}
	return b
}

// TestConcurrentCoWSingleCopy has several goroutines write to the same
// shared blocks at once, each to its own part of every block: each shared
// block is copied exactly once, and every part lands in the copy.
func TestConcurrentCoWSingleCopy(t *testing.T) {
	const (
		blk     = DefaultBlockSize
		nblk    = 16
		writers = 4
		part    = blk / writers
	)
	for _, whole := range []bool{false, true} {
		t.Run(fmt.Sprintf("whole=%v", whole), func(t *testing.T) {
			p, err := CreateFile(newPageStore().open(), Options{DataSize: 256 * blk})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			o := mustThin(t, p, "o", nblk*blk)
			mustWrite(t, o, bytes.Repeat([]byte{0xee}, nblk*blk), 0)
			for round := range 3 {
				snap := fmt.Sprintf("s%d", round)
				s, err := p.Snapshot("o", snap, true)
				if err != nil {
					t.Fatal(err)
				}
				before := mustRead(t, o, 0, nblk*blk)
				used := p.Usage().UsedBlocks
				var start, wg sync.WaitGroup
				start.Add(1)
				errs := make(chan error, writers)
				for g := range writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						start.Wait()
						order := rand.New(rand.NewPCG(uint64(g), uint64(round))).Perm(nblk)
						for _, b := range order {
							buf := bytes.Repeat([]byte{byte(16*round + g + 1)}, part)
							off := int64(b)*blk + int64(g)*part
							if whole {
								// Every writer writes the whole block; only the
								// last one's data survives, whichever it is.
								buf = bytes.Repeat([]byte{byte(16*round + g + 1)}, blk)
								off = int64(b) * blk
							}
							if _, err := o.WriteAt(buf, off); err != nil {
								errs <- err
								return
							}
						}
					}()
				}
				start.Done()
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Fatal(err)
				}
				if got := p.Usage().UsedBlocks; got != used+nblk {
					t.Fatalf("round %d: %d blocks used after writing %d shared blocks, want %d + %d", round, got, nblk, used, nblk)
				}
				mustEqual(t, "snapshot "+snap, mustRead(t, s, 0, nblk*blk), before)
				got := mustRead(t, o, 0, nblk*blk)
				for b := range nblk {
					blkData := got[b*blk : (b+1)*blk]
					if whole {
						if c := blkData[0]; c < byte(16*round+1) || c > byte(16*round+writers) || !bytes.Equal(blkData, bytes.Repeat([]byte{c}, blk)) {
							t.Fatalf("round %d block %d: not the whole write of one writer", round, b)
						}
						continue
					}
					for g := range writers {
						want := bytes.Repeat([]byte{byte(16*round + g + 1)}, part)
						mustEqual(t, fmt.Sprintf("round %d block %d part %d", round, b, g), blkData[g*part:(g+1)*part], want)
					}
				}
				mustCheck(t, p)
			}
		})
	}
}
