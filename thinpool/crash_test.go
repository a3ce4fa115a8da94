package thinpool_test

// Crash-injection tests (STYLE.md "Testing"): a workload runs on
// faultfile.Wrap(faultfile.NewMem(), faultfile.OnIndex(i)) for i = 0, 1, 2,
// ... until it completes without reaching the fault. After each run the Mem
// crashes (unsynced writes are lost, or each page they touched is left in a
// random state it had since the last sync, perhaps torn at a sector
// boundary: faultfile.Mem.CrashRandom) and the pool is reopened on what is
// left. It must open, pass Check, hold every device that was committed with
// its size, name, flags and labels, hold every write that a sync
// acknowledged, and show in every other 512-byte sector either its last
// synced contents or what a later write put there: never another device's
// data, never garbage.
//
// Every write fills each 512-byte sector with a self-describing pattern
// (writer, generation, sector number, checksum; see fillPages), so a read
// tells exactly whose data it got. A model tracks, for each 4 KiB page of
// each device, the contents as of the last successful sync and every write
// since.
//
// TestCrashFixedWorkload crashes a fixed workload at every operation, in
// both crash modes. TestCrashRandomWorkload runs seeded random workloads:
// THINPOOL_CRASH_ITERS sets how many (default crashRandomIters, 10 with
// -short); each runs once with a fault at a random operation and once to
// the end, crashing at the end and at a few operations sampled on the way
// (half of them crashing again while the pool recovers).
// A failure names the seed and the operation, and the fixed workload's
// operation numbers do not depend on the seed. recovery_test.go crashes
// twice: a process dies, the next one recovers the pool and goes on, and
// then the power fails.

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/thinpool/thinpool/test/faultfile"
	"github.com/thinpool/thinpool/thinpool"
)

const (
	crashPage      = 4096 // unit of the model: every write covers whole pages
	crashSector    = 512  // unit of the data pattern, and of torn pages
	sectorsPerPage = crashPage / crashSector
	crashTagMagic  = 0x47415443                // "CTAG"
	crashBlock     = thinpool.DefaultBlockSize // of the fixed workload

	// crashRandomIters is the default number of random workloads.
	crashRandomIters = 60
)

// tag names the contents of a page: the device that wrote it (writer, fixed
// when the device is created, kept across renames) and the write (gen). The
// zero tag is zeros.
type tag struct{ writer, gen uint32 }

func (t tag) String() string {
	if t == (tag{}) {
		return "zeros"
	}
	return fmt.Sprintf("w%d/g%d", t.writer, t.gen)
}

// fillPages fills b, whole pages starting at device page p0, with t's
// pattern: each sector holds a 32-byte header (magic, writer, gen, sector
// number, zero, check word) repeated.
func fillPages(b []byte, p0 int64, t tag) {
	le := binary.LittleEndian
	for s := 0; s*crashSector < len(b); s++ {
		sec := b[s*crashSector : (s+1)*crashSector]
		le.PutUint32(sec[0:], crashTagMagic)
		le.PutUint32(sec[4:], t.writer)
		le.PutUint32(sec[8:], t.gen)
		le.PutUint64(sec[12:], uint64(p0)*sectorsPerPage+uint64(s))
		le.PutUint64(sec[20:], 0)
		le.PutUint32(sec[28:], tagCheck(t, uint64(p0)*sectorsPerPage+uint64(s)))
		for n := 32; n < crashSector; n *= 2 {
			copy(sec[n:], sec[:n])
		}
	}
}

var zeroSector [crashSector]byte

// sectorTag decodes the sector read from device sector number want.
func sectorTag(sec []byte, want uint64) (tag, error) {
	if bytes.Equal(sec, zeroSector[:]) {
		return tag{}, nil
	}
	le := binary.LittleEndian
	t, got := tag{writer: le.Uint32(sec[4:]), gen: le.Uint32(sec[8:])}, le.Uint64(sec[12:])
	if le.Uint32(sec) != crashTagMagic || le.Uint64(sec[20:]) != 0 || le.Uint32(sec[28:]) != tagCheck(t, got) ||
		!bytes.Equal(sec[32:], sec[:crashSector-32]) {
		return tag{}, fmt.Errorf("garbage: %x", sec[:32])
	}
	if got != want {
		return t, fmt.Errorf("holds %v written to sector %d", t, got)
	}
	return t, nil
}

// tagCheck is the check word of a sector header.
func tagCheck(t tag, sector uint64) uint32 {
	h := (uint64(t.writer)<<32 | uint64(t.gen)) * 0x9e3779b97f4a7c15
	h ^= sector * 0xc2b2ae3d27d4eb4f
	return uint32(h>>32) ^ uint32(h)
}

// pageState is what the model knows about one page of a device.
type pageState struct {
	cur   tag   // what a read returns now
	acked tag   // the contents as of the last successful sync
	since []tag // written after that sync, oldest first: any may survive a crash
}

func (s *pageState) set(t tag) {
	s.cur = t
	s.since = append(s.since, t)
}

func (s *pageState) allowed(t tag) bool { return t == s.acked || slices.Contains(s.since, t) }

// mdev is the model of a device.
type mdev struct {
	name   string
	writer uint32
	size   int64
	ro     bool
	labels map[string]string
	pages  []pageState
}

func (d *mdev) clone() *mdev {
	c := *d
	c.labels = maps.Clone(d.labels)
	c.pages = slices.Clone(d.pages)
	for i := range c.pages {
		c.pages[i].since = slices.Clone(c.pages[i].since)
	}
	return &c
}

// model is what the pool must hold after a crash.
type model struct {
	created    bool   // the pool exists
	bs         int64  // block size
	dataBlocks uint64 // size of the data area
	metaSize   int64  // usable metadata area
	devs       map[string]*mdev
}

func (m *model) clone() *model {
	c := &model{created: m.created, bs: m.bs, dataBlocks: m.dataBlocks, metaSize: m.metaSize, devs: map[string]*mdev{}}
	for n, d := range m.devs {
		c.devs[n] = d.clone()
	}
	return c
}

// sync records a successful sync: what is there now is what must survive.
func (m *model) sync() {
	for _, d := range m.devs {
		for i := range d.pages {
			d.pages[i].acked, d.pages[i].since = d.pages[i].cur, nil
		}
	}
}

// names returns the device names in order.
func (m *model) names() []string { return slices.Sorted(maps.Keys(m.devs)) }

// signature describes the metadata a reopened pool must show.
func (m *model) signature() string {
	var b strings.Builder
	fmt.Fprintf(&b, "blocks=%d meta=%d", m.dataBlocks, m.metaSize)
	for _, n := range m.names() {
		d := m.devs[n]
		writeDevSig(&b, d.name, d.size, d.ro, d.labels)
	}
	return b.String()
}

func writeDevSig(b *strings.Builder, name string, size int64, ro bool, labels map[string]string) {
	fmt.Fprintf(b, " [%s size=%d ro=%v", name, size, ro)
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		fmt.Fprintf(b, " %s=%08x/%d", k, crc32.ChecksumIEEE([]byte(labels[k])), len(labels[k]))
	}
	b.WriteString("]")
}

func poolSignature(p *thinpool.Pool) string {
	var b strings.Builder
	u := p.Usage()
	fmt.Fprintf(&b, "blocks=%d meta=%d", u.DataBlocks, u.MetadataSize)
	devs := p.Devices()
	slices.SortFunc(devs, func(x, y thinpool.DeviceInfo) int { return strings.Compare(x.Name, y.Name) })
	for _, d := range devs {
		writeDevSig(&b, d.Name, d.Size, d.ReadOnly, d.Labels)
	}
	return b.String()
}

// crashRun drives a workload against a pool and its model. The first
// failure stops it: every later step is skipped, and alts holds the models
// the disk may then match.
type crashRun struct {
	t       testing.TB
	f       *faultfile.File
	p       *thinpool.Pool
	thins   map[string]*thinpool.Thin
	m       *model
	alts    []*model
	err     error
	failed  string // the step that failed
	steps   int    // steps run
	gen     uint32 // last write generation
	writers uint32 // last writer id
	// format is the FormatVersion of the pools create makes when its
	// options name none.
	format  int
	buf     []byte // for writes
	after   *model // while a metadata call runs: the model if it succeeds
	dataOff int64  // start of the data area, once the pool is created
	// log holds every page write, discard and zeroing, oldest first, so
	// that they can be added to models other than m (see withWrites).
	log []pageWrite
	// noAck is set for a run whose every sync fails (see recoverRun): a
	// failed metadata call's after model then marks nothing as synced.
	noAck bool
}

// pageWrite is a change of a page of the device of a writer.
type pageWrite struct {
	writer uint32
	page   int64
	t      tag
}

// setPage records a change of page i of d: t is what reads return now.
func (r *crashRun) setPage(d *mdev, i int64, t tag) {
	d.pages[i].set(t)
	r.log = append(r.log, pageWrite{d.writer, i, t})
}

// withWrites adds the page changes in log to m as contents that may have
// survived a crash, to the devices of the same writers, and returns m.
func withWrites(m *model, log []pageWrite) *model {
	byWriter := map[uint32]*mdev{}
	for _, d := range m.devs {
		byWriter[d.writer] = d
	}
	for _, w := range log {
		if d := byWriter[w.writer]; d != nil && w.page < int64(len(d.pages)) {
			d.pages[w.page].since = append(d.pages[w.page].since, w.t)
		}
	}
	return m
}

func newCrashRun(t testing.TB, f *faultfile.File) *crashRun {
	return &crashRun{t: t, f: f, thins: map[string]*thinpool.Thin{}, m: &model{devs: map[string]*mdev{}}}
}

func (r *crashRun) live() bool { return r.err == nil }

// fail records the first failure. An error is only acceptable once the
// injected fault has fired.
func (r *crashRun) fail(step string, err error, alts ...*model) {
	r.t.Helper()
	if idx, fired := r.f.Fired(); !fired {
		r.t.Fatalf("step %d %s: %v (no fault injected yet)", r.steps, step, err)
	} else if !errors.Is(err, faultfile.ErrInjected) && !errors.Is(err, thinpool.ErrFailed) {
		r.t.Fatalf("step %d %s: %v (fault injected at op %d: want the injected error or ErrFailed)", r.steps, step, err, idx)
	}
	r.err, r.failed, r.alts = err, fmt.Sprintf("step %d %s", r.steps, step), alts
}

// meta runs a metadata call, which commits before it returns: on success
// the model becomes after (apply, then sync); on failure the disk may hold
// either the old model or after.
func (r *crashRun) meta(step string, apply func(*model), call func() error) {
	r.t.Helper()
	if !r.live() {
		return
	}
	r.steps++
	after := r.m.clone()
	apply(after)
	if !r.noAck {
		after.sync()
	}
	r.after = after
	err := call()
	r.after = nil
	if err != nil {
		r.fail(step, err, r.m, after)
		return
	}
	r.m = after
}

// crashAlts returns copies of the models the disk may match if the power
// failed now, in the middle of the current step: what a run with a fault at
// the next operation would leave in alts.
func (r *crashRun) crashAlts() []*model {
	var alts []*model
	switch {
	case r.err != nil:
		alts = r.alts
	case r.after != nil:
		alts = []*model{r.m, r.after}
	default:
		alts = []*model{r.m}
	}
	out := make([]*model, len(alts))
	for i, m := range alts {
		out[i] = m.clone()
	}
	return out
}

func (r *crashRun) create(o thinpool.Options) {
	r.t.Helper()
	o.FormatVersion = cmp.Or(o.FormatVersion, r.format)
	bs := cmp.Or(o.BlockSize, thinpool.DefaultBlockSize)
	meta := cmp.Or(o.MetadataSize, thinpool.DefaultMetadataSize(o.DataSize, bs))
	r.meta("create pool", func(m *model) {
		m.created, m.bs, m.dataBlocks, m.metaSize = true, bs, uint64(o.DataSize/bs), meta
	}, func() (err error) {
		if r.p, err = thinpool.CreateFile(r.f, o); err == nil {
			r.dataOff = r.p.Usage().DataOffset
		}
		return err
	})
}

func (r *crashRun) createThin(name string, size int64, labels map[string]string) {
	r.t.Helper()
	r.writers++
	w := r.writers
	r.meta("create "+name, func(m *model) {
		m.devs[name] = &mdev{name: name, writer: w, size: size, labels: maps.Clone(labels), pages: make([]pageState, size/crashPage)}
	}, func() error {
		th, err := r.p.CreateThin(name, size, labels)
		r.thins[name] = th
		return err
	})
}

func (r *crashRun) snapshot(origin, name string, ro bool) {
	r.t.Helper()
	r.writers++
	w := r.writers
	r.meta("snapshot "+origin+" as "+name, func(m *model) {
		d := m.devs[origin].clone()
		d.name, d.writer, d.ro, d.labels = name, w, ro, nil
		m.devs[name] = d
	}, func() error {
		th, err := r.p.Snapshot(origin, name, ro)
		r.thins[name] = th
		return err
	})
}

func (r *crashRun) remove(name string) {
	r.t.Helper()
	r.meta("delete "+name, func(m *model) { delete(m.devs, name) }, func() error {
		delete(r.thins, name)
		return r.p.Delete(name)
	})
}

func (r *crashRun) rename(name, newName string) {
	r.t.Helper()
	r.meta("rename "+name+" to "+newName, func(m *model) {
		d := m.devs[name]
		delete(m.devs, name)
		d.name = newName
		m.devs[newName] = d
	}, func() error {
		r.thins[newName] = r.thins[name]
		delete(r.thins, name)
		return r.p.Rename(name, newName)
	})
}

func (r *crashRun) resize(name string, size int64) {
	r.t.Helper()
	r.meta(fmt.Sprintf("resize %s to %d", name, size), func(m *model) {
		d := m.devs[name]
		d.size = size
		d.pages = append(d.pages, make([]pageState, size/crashPage-int64(len(d.pages)))...)
	}, func() error { return r.p.Resize(name, size) })
}

func (r *crashRun) setLabels(name string, labels map[string]string) {
	r.t.Helper()
	r.meta("labels of "+name, func(m *model) { m.devs[name].labels = maps.Clone(labels) },
		func() error { return r.p.SetLabels(name, labels) })
}

func (r *crashRun) setReadOnly(name string, ro bool) {
	r.t.Helper()
	r.meta(fmt.Sprintf("read-only %s %v", name, ro), func(m *model) { m.devs[name].ro = ro },
		func() error { return r.p.SetReadOnly(name, ro) })
}

func (r *crashRun) grow(dataSize int64) {
	r.t.Helper()
	r.meta(fmt.Sprintf("grow to %d", dataSize), func(m *model) { m.dataBlocks = uint64(dataSize / m.bs) },
		func() error { return r.p.Grow(dataSize) })
}

func (r *crashRun) growMetadata(size int64) {
	r.t.Helper()
	r.meta(fmt.Sprintf("grow metadata to %d", size), func(m *model) { m.metaSize = size },
		func() error { return r.p.GrowMetadata(size) })
}

// pagesPerBlock is the number of pages in a block of the pool.
func (r *crashRun) pagesPerBlock() int64 { return r.m.bs / crashPage }

// syncCall runs a call that syncs (Pool.Sync, Thin.Sync, Checkpoint).
func (r *crashRun) syncCall(step string, call func() error) {
	r.t.Helper()
	if !r.live() {
		return
	}
	r.steps++
	if err := call(); err != nil {
		r.fail(step, err, r.m)
		return
	}
	r.m.sync()
}

func (r *crashRun) sync()       { r.syncCall("sync", r.p.Sync) }
func (r *crashRun) checkpoint() { r.syncCall("checkpoint", r.p.Checkpoint) }
func (r *crashRun) thinSync(name string) {
	r.syncCall("sync "+name, r.thins[name].Sync)
}

// write writes pages [p0, p0+n) of a device with a new generation.
func (r *crashRun) write(name string, p0, n int64) { r.writeData(name, p0, n, false) }

// writeZeroData writes zeros to pages [p0, p0+n) with WriteAt: unlike
// WriteZeroes, it allocates the blocks it covers.
func (r *crashRun) writeZeroData(name string, p0, n int64) { r.writeData(name, p0, n, true) }

func (r *crashRun) writeData(name string, p0, n int64, zero bool) {
	r.t.Helper()
	if !r.live() {
		return
	}
	r.steps++
	d := r.m.devs[name]
	if int64(cap(r.buf)) < n*crashPage {
		r.buf = make([]byte, n*crashPage)
	}
	buf := r.buf[:n*crashPage]
	var t tag
	if zero {
		clear(buf)
	} else {
		r.gen++
		t = tag{writer: d.writer, gen: r.gen}
		fillPages(buf, p0, t)
	}
	for i := p0; i < p0+n; i++ {
		r.setPage(d, i, t)
	}
	if _, err := r.thins[name].WriteAt(buf, p0*crashPage); err != nil {
		r.fail(fmt.Sprintf("write %s pages %d+%d", name, p0, n), err, r.m)
	}
}

// discard discards pages [p0, p0+n): the blocks it covers whole (the last
// block counts as covered when the range reaches the end) read as zeros.
func (r *crashRun) discard(name string, p0, n int64) {
	r.t.Helper()
	if !r.live() {
		return
	}
	r.steps++
	d, bs, ppb := r.m.devs[name], r.m.bs, r.pagesPerBlock()
	off, end := p0*crashPage, (p0+n)*crashPage
	v0, v1 := (off+bs-1)/bs, end/bs
	if end == d.size {
		v1 = (end + bs - 1) / bs
	}
	for i := v0 * ppb; i < min(v1*ppb, int64(len(d.pages))); i++ {
		r.setPage(d, i, tag{})
	}
	if err := r.thins[name].Discard(off, end-off); err != nil {
		r.fail(fmt.Sprintf("discard %s pages %d+%d", name, p0, n), err, r.m)
	}
}

// writeZeroes zeroes pages [p0, p0+n).
func (r *crashRun) writeZeroes(name string, p0, n int64) {
	r.t.Helper()
	if !r.live() {
		return
	}
	r.steps++
	d := r.m.devs[name]
	for i := p0; i < p0+n; i++ {
		r.setPage(d, i, tag{})
	}
	if err := r.thins[name].WriteZeroes(p0*crashPage, n*crashPage); err != nil {
		r.fail(fmt.Sprintf("write zeroes %s pages %d+%d", name, p0, n), err, r.m)
	}
}

// finish ends the workload before the crash and returns the models the
// disk may match. A run that failed must leave a pool that refuses to sync
// (the disk is dead) and closes without panicking. A run that completed
// must read back exactly what the model says, before any crash.
func (r *crashRun) finish() []*model {
	r.t.Helper()
	if r.err != nil {
		if r.p != nil {
			if err := r.p.Sync(); err == nil {
				r.t.Fatalf("%s failed (%v), yet Sync succeeds", r.failed, r.err)
			}
			_ = r.p.Close()
		}
		return r.alts
	}
	if _, fired := r.f.Fired(); !fired {
		for _, n := range r.m.names() {
			th, err := r.p.Device(n)
			if err != nil {
				r.t.Fatalf("device %s: %v", n, err)
			}
			verifyDevice(r.t, "before the crash", r.p, th, r.m.devs[n], true)
		}
	}
	return []*model{r.m}
}

// verifyDevice reads a device and checks every sector against the model:
// exact (the last write) or, after a crash, any allowed contents. Only the
// mapped blocks are read; the rest must be allowed to read as zeros.
func verifyDevice(t testing.TB, what string, p *thinpool.Pool, th *thinpool.Thin, d *mdev, exact bool) {
	t.Helper()
	if err := deviceMismatch(t, what, p, th, d, exact); err != nil {
		t.Fatal(err)
	}
}

// deviceMismatch is verifyDevice, but it returns the sectors that do not
// match the model as an error.
func deviceMismatch(t testing.TB, what string, p *thinpool.Pool, th *thinpool.Thin, d *mdev, exact bool) error {
	t.Helper()
	maps, err := p.Mappings(d.name)
	if err != nil {
		t.Fatalf("%s: mappings of %s: %v", what, d.name, err)
	}
	var bad []string
	check := func(pg int64, got tag, err error, s int) {
		ps := &d.pages[pg]
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("page %d sector %d: %v", pg, s, err))
		case exact && got != ps.cur:
			bad = append(bad, fmt.Sprintf("page %d sector %d: %v, want %v", pg, s, got, ps.cur))
		case !exact && !ps.allowed(got):
			bad = append(bad, fmt.Sprintf("page %d sector %d: %v, want %v (synced) or one of %v", pg, s, got, ps.acked, ps.since))
		}
	}
	ppb := p.BlockSize() / crashPage
	buf := make([]byte, p.BlockSize())
	next := int64(0) // first page not checked yet
	unmappedTo := func(end int64) {
		for ; next < end; next++ {
			check(next, tag{}, nil, 0)
		}
	}
	npages := int64(len(d.pages))
	for _, m := range maps {
		for v := int64(m.V); v < int64(m.End()); v++ {
			p0 := v * ppb
			unmappedTo(p0)
			n := min(ppb, npages-p0)
			b := buf[:n*crashPage]
			if k, err := th.ReadAt(b, p0*crashPage); err != nil || k != len(b) {
				t.Fatalf("%s: read %s block %d: %d, %v", what, d.name, v, k, err)
			}
			for i := range n {
				pg := b[i*crashPage:][:crashPage]
				if bytes.Equal(pg, zeroPage[:]) {
					check(p0+i, tag{}, nil, 0)
					continue
				}
				for s := range int64(sectorsPerPage) {
					got, err := sectorTag(pg[s*crashSector:][:crashSector], uint64((p0+i)*sectorsPerPage+s))
					check(p0+i, got, err, int(s))
				}
			}
			next = p0 + n
		}
	}
	unmappedTo(npages)
	if len(bad) > 0 {
		return fmt.Errorf("%s: device %s (writer %d): %d bad sectors:\n  %s", what, d.name, d.writer, len(bad), strings.Join(bad[:min(len(bad), 8)], "\n  "))
	}
	return nil
}

var zeroPage [crashPage]byte

// verifyCrash opens the pool on mem and checks it against the model it
// matches among alts (see the file comment). Then it closes the pool, opens
// it again and checks it once more.
func verifyCrash(t testing.TB, mem *faultfile.Mem, alts []*model, what string) {
	t.Helper()
	p, err := thinpool.OpenFile(mem)
	if err != nil {
		for _, m := range alts {
			if !m.created && errors.Is(err, thinpool.ErrCorrupt) {
				return // the pool was never created
			}
		}
		t.Fatalf("%s: reopen: %v", what, err)
	}
	verifyPool(t, p, alts, what)
	if err := p.Close(); err != nil {
		t.Fatalf("%s: close after recovery: %v", what, err)
	}
	p, err = thinpool.OpenFile(mem)
	if err != nil {
		t.Fatalf("%s: second reopen: %v", what, err)
	}
	mustCheckOK(t, p, what+", second reopen")
	if err := p.Close(); err != nil {
		t.Fatalf("%s: second close: %v", what, err)
	}
}

func mustCheckOK(t testing.TB, p *thinpool.Pool, what string) {
	t.Helper()
	r, err := p.Check()
	if err != nil {
		t.Fatalf("%s: check: %v", what, err)
	}
	if !r.OK() {
		t.Fatalf("%s: check: errors %q, leaks %q", what, r.Errors, r.Leaks)
	}
}

// verifyPool checks an open pool against alts: it must show the metadata
// of one of them and hold the data that one allows. Several may show the
// same metadata and allow different data; the first that matches wins. It
// returns that model.
func verifyPool(t testing.TB, p *thinpool.Pool, alts []*model, what string) *model {
	t.Helper()
	mustCheckOK(t, p, what)
	got := poolSignature(p)
	var want []string
	var first error // the mismatch of the first model with the metadata shown
	for _, m := range alts {
		if !m.created || m.signature() != got {
			want = append(want, m.signature())
			continue
		}
		var err error
		for _, n := range m.names() {
			th, derr := p.Device(n)
			if derr != nil {
				t.Fatalf("%s: %v", what, derr)
			}
			if err = deviceMismatch(t, what, p, th, m.devs[n], false); err != nil {
				break
			}
		}
		if err == nil {
			return m
		}
		first = cmp.Or(first, err)
	}
	if first != nil {
		t.Fatal(first)
	}
	t.Fatalf("%s: pool holds\n  %s\nwant one of\n  %s", what, got, strings.Join(want, "\n  "))
	return nil
}

// crashOptions is a small pool, nearly full at times, whose journal fills
// quickly: 32 one-sector transactions fit in its 128 KiB journal.
var crashOptions = thinpool.Options{DataSize: 24 * crashBlock, MetadataSize: 1 << 20}

// fixedWorkload exercises every kind of change in a fixed order: devices,
// fresh, partial, in-place and copy-on-write writes, snapshots, discards,
// write-zeroes, deletes, renames, resizes, labels (one of three sectors),
// explicit checkpoints, journal-full checkpoints, a pool grown while nearly
// full so that new blocks come from the grown area, and a grown metadata
// area.
func fixedWorkload(r *crashRun) {
	r.create(crashOptions)
	r.createThin("a", 1<<20, map[string]string{"role": "base"})
	r.write("a", 0, 16)  // block 0 whole
	r.write("a", 20, 1)  // part of fresh block 1
	r.write("a", 40, 32) // partial, whole and partial blocks
	r.sync()
	r.write("a", 20, 1)  // in place
	r.write("a", 100, 1) // fresh
	r.createThin("b", 512<<10, nil)
	r.write("b", 0, 32)
	r.write("b", 5, 1)
	r.snapshot("a", "snap", false)
	r.snapshot("a", "ro", true)
	r.write("a", 3, 1)     // copy-on-write, partial
	r.write("a", 32, 16)   // shared block 2 covered whole: no copy
	r.write("snap", 41, 1) // copy-on-write of a block shared with ro
	r.sync()
	r.discard("a", 0, 16)
	r.discard("b", 0, 32)
	r.writeZeroes("a", 40, 4)    // in place, partial block
	r.writeZeroes("snap", 60, 8) // straddles two blocks
	r.sync()
	smallTransactions(r, 0, 20)
	r.remove("b")
	r.rename("snap", "c")
	r.resize("c", 1280<<10)
	r.write("c", 300, 11)
	r.setLabels("a", map[string]string{"role": "base", "big": strings.Repeat("L", 10<<10)})
	r.checkpoint()
	r.write("a", 192, 16)
	r.write("c", 5, 1)
	r.sync()
	// Unshare: u shares blocks 2 and 12 with a alone. u copies block 2 and
	// discards block 12, leaving a the only user in memory but not on disk
	// until the next commit, so a's writes must not go in place.
	r.snapshot("a", "u", false)
	r.write("u", 33, 1)
	r.write("a", 34, 1)
	r.discard("u", 192, 16)
	r.write("a", 195, 1)
	r.sync()
	r.remove("u")
	if r.live() {
		// Fill the pool but for two blocks, so that d below must use the
		// grown area. Zeros cost the Mem no memory.
		fill := max(1, int64(r.p.Usage().FreeBlocks)-2)
		r.createThin("fill", fill*crashBlock, nil)
		r.writeZeroData("fill", 0, fill*r.pagesPerBlock())
		r.sync()
	}
	r.grow(64 * crashBlock)
	r.growMetadata(2 << 20)
	r.createThin("d", 1<<20, nil)
	r.write("d", 0, 64)
	r.sync()
	smallTransactions(r, 20, 50)
	r.remove("fill")
	r.write("a", 0, 32) // reuses blocks freed by the delete
	r.sync()
	// Lost unless a random crash keeps them.
	r.write("a", 7, 1)
	r.write("c", 9, 2)
	r.write("d", 11, 1)
	r.discard("d", 16, 16)
	r.writeZeroes("c", 300, 2)
}

// smallTransactions makes one commit per k in [from, to), most of them one
// journal sector, to fill the journal.
func smallTransactions(r *crashRun, from, to int) {
	for k := from; k < to; k++ {
		if !r.live() {
			return
		}
		switch k % 4 {
		case 0:
			r.write("a", int64(k*37)%256, 1)
			r.sync()
		case 1:
			name := "snap"
			if _, ok := r.m.devs[name]; !ok {
				name = "c"
			}
			r.write(name, int64(k*53)%256, 1)
			r.sync()
		case 2:
			name := "b"
			if _, ok := r.m.devs[name]; !ok {
				name = "d"
			}
			// Three sectors: the journal fills faster.
			r.setLabels(name, map[string]string{"k": strconv.Itoa(k), "v": strings.Repeat(strconv.Itoa(k%10), 8<<10)})
		case 3:
			name := "b"
			if _, ok := r.m.devs[name]; !ok {
				name = "d"
			}
			r.discard(name, int64(k/4%8)*r.pagesPerBlock(), r.pagesPerBlock())
			r.write(name, int64(k*7)%128, 1)
			r.thinSync(name)
		}
	}
}

// crashMode says how the Mem crashes after a run.
type crashMode uint8

const (
	crashInvalid crashMode = iota
	crashDrop              // every unsynced change is lost
	crashTorn              // each page in a random state it had, maybe torn (Mem.CrashRandom)
)

func (c crashMode) String() string {
	return [...]string{"invalid", "drop", "torn"}[c]
}

func crash(f *faultfile.File, mode crashMode, seed uint64) {
	switch mode {
	case crashDrop:
		f.Crash()
	case crashTorn:
		f.CrashRandom(rand.New(rand.NewPCG(seed, 0x7e4a)))
	default:
		panic("bad crash mode")
	}
}

// crashLoop runs workload with a fault at each operation in turn, until it
// completes without reaching the fault, and after each run verifies the
// pool after a crash in each of modes (each on its own copy of the Mem).
// It returns the number of runs.
func crashLoop(t *testing.T, workload func(*crashRun), modes ...crashMode) int {
	for i := 0; ; i++ {
		f := faultfile.Wrap(faultfile.NewMem(), faultfile.OnIndex(i))
		r := newCrashRun(t, f)
		workload(r)
		_, fired := f.Fired()
		alts := r.finish()
		what := fmt.Sprintf("fault at op %d (after %d steps; %s: %v)", i, r.steps, r.failed, r.err)
		if !fired {
			what = fmt.Sprintf("no fault (%d ops)", f.Ops())
		}
		for _, mode := range modes {
			m := faultfile.Wrap(f.Mem().Clone(), nil)
			crash(m, mode, uint64(i))
			verifyCrash(t, m.Mem(), alts, fmt.Sprintf("%s, %s crash", what, mode))
		}
		f.Crash()
		if !fired {
			return i + 1
		}
	}
}

// TestCrashFixedWorkload crashes the fixed workload at every operation:
// once losing every unsynced change, and once leaving each page it changed
// in a random state it had since the last sync (Mem.CrashRandom).
func TestCrashFixedWorkload(t *testing.T) {
	n := crashLoop(t, fixedWorkload, crashDrop, crashTorn)
	t.Logf("%d crash points", n)
}

// TestCrashFixedWorkloadCovers checks that the fixed workload does what it
// is meant to: checkpoints forced by a full journal, and allocation from
// the grown part of the pool.
func TestCrashFixedWorkloadCovers(t *testing.T) {
	superblocks := 0
	probe := faultfile.InjectorFunc(func(op faultfile.Op) bool {
		if op.Kind == faultfile.OpWrite && op.Off < 2*4096 {
			superblocks++
		}
		return false
	})
	f := faultfile.Wrap(faultfile.NewMem(), probe)
	r := newCrashRun(t, f)
	fixedWorkload(r)
	r.finish()
	u := r.p.Usage()
	// CreateFile, Checkpoint, Grow and GrowMetadata write one each; the
	// rest come from a full journal.
	if superblocks < 4+2 {
		t.Errorf("%d superblock writes, want at least 6: two journal-full checkpoints", superblocks)
	}
	maps, err := r.p.Mappings("d")
	if err != nil {
		t.Fatal(err)
	}
	grown := false
	for _, m := range maps {
		grown = grown || uint64(m.PEnd()) > uint64(crashOptions.DataSize/crashBlock)
	}
	if !grown {
		t.Errorf("d maps %v: nothing in the grown area", maps)
	}
	t.Logf("%d ops, %d steps, %d superblock writes, usage %+v", f.Ops(), r.steps, superblocks, u)
}

// crashIters returns THINPOOL_CRASH_ITERS or def.
func crashIters(t *testing.T, def int) int {
	s := os.Getenv("THINPOOL_CRASH_ITERS")
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("THINPOOL_CRASH_ITERS=%q: want a count", s)
	}
	return n
}

// randomWorkload returns a seeded random workload of 60 to 120 steps.
func randomWorkload(seed uint64) func(*crashRun) {
	return func(r *crashRun) {
		rng := rand.New(rand.NewPCG(seed, 0xc0ffee))
		o := thinpool.Options{DataSize: 64 << 20, BlockSize: []int64{0, 0, 128 << 10, 1 << 20}[rng.IntN(4)]}
		if rng.IntN(2) == 0 {
			o.MetadataSize = 1 << 20 // a 128 KiB journal, so it fills
		}
		r.create(o)
		r.createThin("d0", randomSize(rng), randomLabels(rng))
		names := 1
		for range 60 + rng.IntN(61) {
			if !r.live() {
				return
			}
			names = randomStep(r, rng, names)
		}
	}
}

func randomSize(rng *rand.Rand) int64 { return int64(16+rng.IntN(241)) * crashPage }

func randomLabels(rng *rand.Rand) map[string]string {
	n := rng.IntN(3)
	if n == 0 {
		return nil
	}
	l := map[string]string{}
	for i := range n {
		l["k"+strconv.Itoa(i)] = strings.Repeat(string(rune('a'+rng.IntN(26))), rng.IntN(2000))
	}
	return l
}

// randomStep runs one random step; names counts the device names used.
func randomStep(r *crashRun, rng *rand.Rand, names int) int {
	all := r.m.names()
	var writable []string
	for _, n := range all {
		if !r.m.devs[n].ro {
			writable = append(writable, n)
		}
	}
	pick := func(from []string) string { return from[rng.IntN(len(from))] }
	newName := func() string {
		names++
		return "d" + strconv.Itoa(names-1)
	}
	switch x := rng.IntN(100); {
	case x < 36 && len(writable) > 0:
		n := pick(writable)
		np := int64(len(r.m.devs[n].pages))
		p0 := rng.Int64N(np)
		r.write(n, p0, 1+rng.Int64N(min(40, np-p0)))
	case x < 46:
		r.sync()
	case x < 49 && len(all) > 0:
		r.thinSync(pick(all))
	case x < 57 && len(writable) > 0:
		n := pick(writable)
		np := int64(len(r.m.devs[n].pages))
		p0 := rng.Int64N(np)
		r.discard(n, p0, 1+rng.Int64N(np-p0))
	case x < 62 && len(writable) > 0:
		n := pick(writable)
		np := int64(len(r.m.devs[n].pages))
		p0 := rng.Int64N(np)
		r.writeZeroes(n, p0, 1+rng.Int64N(min(40, np-p0)))
	case x < 67 && len(all) < 8:
		r.createThin(newName(), randomSize(rng), randomLabels(rng))
	case x < 73 && len(all) < 8 && len(all) > 0:
		r.snapshot(pick(all), newName(), rng.IntN(4) == 0)
	case x < 77 && len(all) > 1:
		r.remove(pick(all))
	case x < 81 && len(all) > 0:
		r.rename(pick(all), newName())
	case x < 84 && len(writable) > 0:
		n := pick(writable)
		if size := r.m.devs[n].size + int64(1+rng.IntN(64))*crashPage; size <= 2<<20 {
			r.resize(n, size)
		}
	case x < 87 && len(all) > 0:
		r.setLabels(pick(all), randomLabels(rng))
	case x < 88 && len(all) > 0:
		// Large labels, for checkpoints that take a good part of the
		// metadata area (but keep 64 KiB of room, so nothing fails with
		// ErrMetadataFull).
		u := r.p.Usage()
		if size := min(60<<10, u.MetadataLimit-u.MetadataState-64<<10); size >= 4<<10 {
			l := map[string]string{}
			for i := range 4 {
				l["big"+strconv.Itoa(i)] = strings.Repeat(string(rune('A'+rng.IntN(26))), int(size/4))
			}
			r.setLabels(pick(all), l)
		}
	case x < 90 && len(all) > 0:
		n := pick(all)
		r.setReadOnly(n, !r.m.devs[n].ro)
	case x < 94:
		r.checkpoint()
	case x < 96 && r.m.dataBlocks*uint64(r.m.bs) < 256<<20: // every block size grows, up to 256 MiB
		r.grow(int64(r.m.dataBlocks+uint64(1+rng.IntN(64))) * r.m.bs)
	case x < 97 && r.m.metaSize < 8<<20:
		r.growMetadata(r.m.metaSize + int64(1+rng.IntN(4))<<20)
	}
	return names
}

// crashSample is the state of a run just before one of its operations:
// a crash there must leave what a fault at that operation would.
type crashSample struct {
	mem  *faultfile.Mem
	alts []*model
	what string
}

// sampler returns an Injector that fails nothing but keeps in out, by
// reservoir sampling, k states of the run chosen uniformly among its
// operations for which pick holds (all if pick is nil; pick sees every
// operation, in order). Copying a Mem only copies page pointers.
func sampler(r **crashRun, rng *rand.Rand, k int, out *[]crashSample, pick func(faultfile.Op) bool) faultfile.InjectorFunc {
	seen := 0
	return func(op faultfile.Op) bool {
		if pick != nil && !pick(op) {
			return false
		}
		slot := seen
		if seen++; slot >= k {
			slot = rng.IntN(seen)
		}
		if slot < k {
			run := *r
			smp := crashSample{mem: run.f.Mem().Clone(), alts: run.crashAlts(),
				what: fmt.Sprintf("crash before op %v in step %d", op, run.steps)}
			if slot < len(*out) {
				(*out)[slot] = smp
			} else {
				*out = append(*out, smp)
			}
		}
		return false
	}
}

// recoveryCrash recovers the pool on a copy of mem with a fault at
// operation k of the recovery (open, check, close), crashes it again, and
// verifies the pool: a crash during recovery must not lose anything either.
func recoveryCrash(t testing.TB, mem *faultfile.Mem, alts []*model, what string, k int, mode crashMode, seed uint64) {
	t.Helper()
	f := faultfile.Wrap(mem.Clone(), faultfile.OnIndex(k))
	if p, err := thinpool.OpenFile(f); err == nil {
		_, _ = p.Check()
		_ = p.Close()
	}
	crash(f, mode, seed^0x5eed)
	verifyCrash(t, f.Mem(), alts, fmt.Sprintf("%s, then a %s crash at op %d of the recovery", what, mode, k))
}

// TestCrashRandomWorkload runs seeded random workloads. Each runs once with
// a fault at a random operation, and once to the end, crashing afterwards
// and at crashSamples operations sampled along the way. The crash mode
// alternates between seeds.
func TestCrashRandomWorkload(t *testing.T) {
	forEachFormat(t, func(t *testing.T, format int) {
		iters := crashIters(t, crashRandomIters)
		if testing.Short() && os.Getenv("THINPOOL_CRASH_ITERS") == "" {
			iters = 10
		}
		crashRandomWorkload(t, format, iters)
	})
}

// forEachFormat runs fn as a subtest for each on-disk format the engine
// writes: 2 (the default) and 3 (B+trees, opt-in).
func forEachFormat(t *testing.T, fn func(t *testing.T, format int)) {
	for _, format := range []int{2, 3} {
		t.Run(fmt.Sprintf("format=%d", format), func(t *testing.T) { fn(t, format) })
	}
}

func crashRandomWorkload(t *testing.T, format, iters int) {
	const crashSamples = 4
	for it := range iters {
		seed := uint64(it)
		workload := randomWorkload(seed)
		mode := []crashMode{crashDrop, crashTorn}[it%2]
		rng := rand.New(rand.NewPCG(seed, 1))

		var r *crashRun
		var samples []crashSample
		f := faultfile.Wrap(faultfile.NewMem(), sampler(&r, rng, crashSamples, &samples, nil))
		r = newCrashRun(t, f)
		r.format = format
		workload(r)
		alts := r.finish()
		ops := f.Ops()
		crash(f, mode, seed)
		verifyCrash(t, f.Mem(), alts, fmt.Sprintf("seed %d, no fault (%d ops), %s crash", seed, ops, mode))
		for i, smp := range samples {
			m := faultfile.Wrap(smp.mem, nil)
			crash(m, mode, seed+uint64(i)<<32)
			what := fmt.Sprintf("seed %d, %s, %s crash", seed, smp.what, mode)
			if i%2 == 1 {
				recoveryCrash(t, smp.mem, smp.alts, what, rng.IntN(8), mode, seed)
			} else {
				verifyCrash(t, smp.mem, smp.alts, what)
			}
		}

		at := rng.IntN(ops)
		f = faultfile.Wrap(faultfile.NewMem(), faultfile.OnIndex(at))
		r = newCrashRun(t, f)
		r.format = format
		workload(r)
		alts = r.finish()
		crash(f, mode, seed)
		verifyCrash(t, f.Mem(), alts, fmt.Sprintf("seed %d, fault at op %d of %d (%s: %v), %s crash", seed, at, ops, r.failed, r.err, mode))
	}
}

// corruptBase builds a pool with two devices, a snapshot and two explicit
// checkpoints after the last commit, so that the older superblock's
// checkpoint and journal still describe everything. It returns the Mem,
// with nothing unsynced, the model and the newest generation.
func corruptBase(t *testing.T) (*faultfile.Mem, *model, uint64) {
	t.Helper()
	f := faultfile.Wrap(faultfile.NewMem(), nil)
	r := newCrashRun(t, f)
	r.create(crashOptions)
	r.createThin("a", 512<<10, map[string]string{"k": "v"})
	r.write("a", 0, 20)
	r.sync()
	r.checkpoint()
	r.createThin("b", 256<<10, nil)
	r.write("b", 3, 5)
	r.snapshot("a", "s", true)
	r.write("a", 1, 1)
	r.sync()
	r.checkpoint()
	if r.err != nil {
		t.Fatal(r.err)
	}
	gen := r.p.Usage().Generation
	f.Crash() // nothing to lose: kills the pool's handle
	return f.Mem(), r.m, gen
}

// superblockSlot is the offset of the superblock slot of a generation
// (FORMAT.md "Superblock": two 4 KiB slots, generation % 2).
func superblockSlot(gen uint64) int64 { return int64(gen%2) * 4096 }

// editDurable changes the durable image of a copy of mem with edit.
func editDurable(t testing.TB, mem *faultfile.Mem, edit func(*faultfile.Mem)) *faultfile.Mem {
	t.Helper()
	c := mem.Clone()
	edit(c)
	if err := c.Sync(); err != nil {
		t.Fatal(err)
	}
	return c
}

func flipByte(t testing.TB, m *faultfile.Mem, off int64) {
	t.Helper()
	b := make([]byte, 1)
	if _, err := m.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xa5
	if _, err := m.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// openCorrupt opens a damaged pool. It must fail with ErrCorrupt, or open
// a pool that passes Check and holds the model; then it reports the
// pool's generation (0 if it failed).
func openCorrupt(t *testing.T, mem *faultfile.Mem, m *model, what string) uint64 {
	t.Helper()
	p, err := thinpool.OpenFile(mem)
	if err != nil {
		if !errors.Is(err, thinpool.ErrCorrupt) {
			t.Fatalf("%s: open: %v, want ErrCorrupt", what, err)
		}
		return 0
	}
	defer p.Close()
	verifyPool(t, p, []*model{m}, what)
	return p.Usage().Generation
}

// TestCorruptSuperblock damages superblock slots. One bad slot makes Open
// use the other; two make it fail with ErrCorrupt. Never a panic.
func TestCorruptSuperblock(t *testing.T) {
	mem, m, gen := corruptBase(t)
	newest, older := superblockSlot(gen), superblockSlot(gen-1)

	t.Run("newest byte", func(t *testing.T) {
		// Every byte of the encoded superblock (128 bytes) is under its
		// crc; the padding after it is not read.
		for off := range int64(4096) {
			if off >= 128 && off%97 != 0 {
				continue
			}
			c := editDurable(t, mem, func(c *faultfile.Mem) { flipByte(t, c, newest+off) })
			// A flip in the padding may be ignored (or not).
			got := openCorrupt(t, c, m, fmt.Sprintf("flip at %d", off))
			if got != gen-1 && got != 0 && (off < 128 || got != gen) {
				t.Fatalf("flip at %d: opened generation %d, want the older %d or ErrCorrupt", off, got, gen-1)
			}
		}
	})
	t.Run("older byte", func(t *testing.T) {
		for off := range int64(128) {
			c := editDurable(t, mem, func(c *faultfile.Mem) { flipByte(t, c, older+off) })
			if got := openCorrupt(t, c, m, fmt.Sprintf("flip at %d", off)); got != gen {
				t.Fatalf("flip at %d of the older slot: opened generation %d, want %d", off, got, gen)
			}
		}
	})
	t.Run("newest garbage", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range 50 {
			junk := make([]byte, 4096)
			for j := range junk {
				junk[j] = byte(rng.Uint32())
			}
			if i%2 == 0 {
				copy(junk, "THINPOOL") // get past the magic
			}
			c := editDurable(t, mem, func(c *faultfile.Mem) { c.WriteAt(junk, newest) })
			openCorrupt(t, c, m, fmt.Sprintf("garbage %d", i))
		}
	})
	t.Run("both", func(t *testing.T) {
		c := editDurable(t, mem, func(c *faultfile.Mem) {
			flipByte(t, c, newest+20)
			flipByte(t, c, older+20)
		})
		if _, err := thinpool.OpenFile(c); !errors.Is(err, thinpool.ErrCorrupt) {
			t.Fatalf("both slots bad: %v, want ErrCorrupt", err)
		}
	})
	t.Run("fall back then heal", func(t *testing.T) {
		// After falling back, the next checkpoint overwrites the bad slot.
		c := editDurable(t, mem, func(c *faultfile.Mem) { c.WriteAt(make([]byte, 4096), newest) })
		if got := openCorrupt(t, c, m, "zeroed newest"); got != gen-1 {
			t.Fatalf("zeroed newest slot: opened generation %d, want %d", got, gen-1)
		}
		if got := openCorrupt(t, c, m, "reopen"); got != gen {
			t.Fatalf("after close: generation %d, want %d", got, gen)
		}
	})
}

// TestCorruptTruncated cuts the pool file short: Open fails with
// ErrCorrupt, wherever the cut.
func TestCorruptTruncated(t *testing.T) {
	mem, _, _ := corruptBase(t)
	p, err := thinpool.OpenFile(mem.Clone())
	if err != nil {
		t.Fatal(err)
	}
	dataOff := p.Usage().DataOffset
	size, err := mem.Size()
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int64{0, 1, 100, 4096, 8191, 8192, 64 << 10, 64<<10 + 4096, 1 << 20, dataOff - 1, dataOff, dataOff + 1, size - crashBlock, size - 1} {
		c := editDurable(t, mem, func(c *faultfile.Mem) { c.Truncate(cut) })
		if _, err := thinpool.OpenFile(c); !errors.Is(err, thinpool.ErrCorrupt) {
			t.Fatalf("truncated to %d of %d: %v, want ErrCorrupt", cut, size, err)
		}
	}
}

// TestCorruptMetadataSweep flips a byte in every used sector of the
// metadata area (journal entries, checkpoints): Open fails with ErrCorrupt
// or opens a pool that passes Check. A damaged journal entry reads as the
// end of the journal, so what is after it is lost; nothing else is checked.
func TestCorruptMetadataSweep(t *testing.T) {
	// A pool with journal entries after its checkpoint.
	f := faultfile.Wrap(faultfile.NewMem(), nil)
	r := newCrashRun(t, f)
	r.create(crashOptions)
	r.createThin("a", 512<<10, map[string]string{"big": strings.Repeat("x", 6000)})
	r.write("a", 0, 20)
	r.sync()
	r.checkpoint()
	r.createThin("b", 256<<10, nil)
	r.write("b", 3, 5)
	r.sync()
	r.snapshot("a", "s", false)
	if r.err != nil {
		t.Fatal(r.err)
	}
	f.Crash()
	mem := f.Mem()
	const metaStart = 64 << 10
	rng := rand.New(rand.NewPCG(3, 4))
	tried, failed := 0, 0
	sec := make([]byte, 4096)
	for off := int64(metaStart); off < metaStart+1<<20; off += 4096 {
		if _, err := mem.ReadAt(sec, off); err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(sec, zeroPage[:]) {
			continue
		}
		for _, in := range []int64{0, 4, 8, 40, int64(rng.IntN(4096))} {
			tried++
			c := editDurable(t, mem, func(c *faultfile.Mem) { flipByte(t, c, off+in) })
			p, err := thinpool.OpenFile(c)
			if err != nil {
				if !errors.Is(err, thinpool.ErrCorrupt) {
					t.Fatalf("flip at %d: open: %v, want ErrCorrupt", off+in, err)
				}
				failed++
				continue
			}
			mustCheckOK(t, p, fmt.Sprintf("flip at %d", off+in))
			p.Close()
		}
	}
	if tried == 0 || failed == 0 {
		t.Fatalf("%d flips, %d failed to open: the sweep missed the metadata", tried, failed)
	}
	t.Logf("%d flips, %d failed to open with ErrCorrupt", tried, failed)
}

// TestFaultFailedState fails one metadata operation on a disk that then
// works again: the call fails with ErrFailed, and so does every later
// change, until the pool is opened again; then Check passes and every
// synced write is there. The pool is reopened both as the disk was left
// (a transient error) and after a crash.
func TestFaultFailedState(t *testing.T) {
	tests := []struct {
		name string
		// fails reports whether op is the one to fail; dataOff is the
		// offset of the data area.
		fails   func(op faultfile.Op, dataOff int64) bool
		trigger func(r *crashRun)
	}{
		{"journal write", isMetaWrite, func(r *crashRun) { r.sync() }},
		{"data sync", isSync, func(r *crashRun) { r.sync() }},
		{"journal sync", nth(2, isSync), func(r *crashRun) { r.sync() }},
		{"create", isMetaWrite, func(r *crashRun) { r.createThin("new", 1<<20, nil) }},
		{"delete", isMetaWrite, func(r *crashRun) { r.remove("b") }},
		{"checkpoint write", isMetaWrite, func(r *crashRun) { r.checkpoint() }},
		{"checkpoint sync", nth(2, isSync), func(r *crashRun) { r.checkpoint() }},
		{"superblock write", nth(2, isMetaWrite), func(r *crashRun) { r.checkpoint() }},
		{"superblock sync", nth(3, isSync), func(r *crashRun) { r.checkpoint() }},
		{"grow superblock", nth(2, isMetaWrite), func(r *crashRun) { r.grow(64 * crashBlock) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			armed := false
			var dataOff int64
			f := faultfile.Wrap(faultfile.NewMem(), faultfile.InjectorFunc(func(op faultfile.Op) bool {
				return armed && tc.fails(op, dataOff)
			}))
			r := newCrashRun(t, f)
			r.create(crashOptions)
			r.createThin("a", 512<<10, nil)
			r.createThin("b", 256<<10, nil)
			r.write("a", 0, 40)
			r.write("b", 0, 8)
			r.sync()
			r.write("a", 10, 1) // in place, not synced
			r.write("a", 60, 3) // fresh, not synced
			r.write("b", 2, 1)
			if r.err != nil {
				t.Fatal(r.err)
			}
			dataOff, armed = r.p.Usage().DataOffset, true
			tc.trigger(r)
			if r.err == nil || !errors.Is(r.err, thinpool.ErrFailed) {
				t.Fatalf("%s: err %v, want ErrFailed", r.failed, r.err)
			}
			f.Revive()
			a := r.thins["a"]
			for what, err := range map[string]error{
				"sync":       r.p.Sync(),
				"checkpoint": r.p.Checkpoint(),
				"write":      func() error { _, err := a.WriteAt(make([]byte, 4096), 0); return err }(),
				"discard":    a.Discard(0, crashBlock),
				"create":     func() error { _, err := r.p.CreateThin("x", 1<<20, nil); return err }(),
				"snapshot":   func() error { _, err := r.p.Snapshot("a", "y", false); return err }(),
				"delete":     r.p.Delete("a"),
				"rename":     r.p.Rename("a", "z"),
				"grow":       r.p.Grow(128 * crashBlock),
			} {
				if !errors.Is(err, thinpool.ErrFailed) {
					t.Errorf("%s on a failed pool: %v, want ErrFailed", what, err)
				}
			}
			ops := f.Ops()
			if err := r.p.Close(); err != nil {
				t.Errorf("close of a failed pool: %v", err)
			}
			if f.Ops() != ops {
				t.Errorf("close of a failed pool did %d operations", f.Ops()-ops)
			}
			crashed := f.Mem().Clone()
			crashed.Crash()
			verifyCrash(t, f.Mem(), r.alts, "reopened as left")
			verifyCrash(t, crashed, r.alts, "reopened after a crash")
		})
	}
}

func isSync(op faultfile.Op, _ int64) bool { return op.Kind == faultfile.OpSync }

func isMetaWrite(op faultfile.Op, dataOff int64) bool {
	return op.Kind == faultfile.OpWrite && op.Off < dataOff
}

// nth returns a predicate true for the n-th operation (from 1) for which
// pred is.
func nth(n int, pred func(faultfile.Op, int64) bool) func(faultfile.Op, int64) bool {
	seen := 0
	return func(op faultfile.Op, dataOff int64) bool {
		if pred(op, dataOff) {
			seen++
			return seen == n
		}
		return false
	}
}

// cevent is one call of TestCrashConcurrent: a write, discard or sync, with
// the ticks of its start and end on one shared clock.
type cevent struct {
	sync       bool
	dev        int
	p0, n      int64
	t          tag // zeros for a discard
	start, end uint64
}

// clock orders the calls of concurrent goroutines: a call that ended at a
// lower tick than another started happened before it.
type clock struct {
	mu     sync.Mutex
	now    uint64
	events []cevent
}

func (c *clock) tick() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now++
	return c.now
}

func (c *clock) record(e cevent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, e)
}

// concurrentModel returns the model of a crash whose image was taken
// between ticks before and after: a write or discard is acknowledged if it
// ended before a sync started that ended before the image; one that started
// before the image was complete but is not acknowledged may or may not be
// there.
func concurrentModel(base *model, names []string, events []cevent, before, after uint64) *model {
	m := base.clone()
	var acked uint64 // the latest start of a sync that ended before the image
	for _, e := range events {
		if e.sync && e.end < before {
			acked = max(acked, e.start)
		}
	}
	slices.SortFunc(events, func(a, b cevent) int { return cmp.Compare(a.start, b.start) })
	for _, e := range events {
		if e.sync || e.start > after {
			continue
		}
		d := m.devs[names[e.dev]]
		for i := e.p0; i < e.p0+e.n; i++ {
			if e.end < acked {
				d.pages[i].acked, d.pages[i].since = e.t, nil
			} else {
				d.pages[i].since = append(d.pages[i].since, e.t)
			}
		}
	}
	return m
}

// TestCrashConcurrent runs one writer per device, four devices of which
// two share blocks (a snapshot), each writing, discarding whole blocks and
// syncing at random (one call in ten), and crashes at operations sampled
// while they run.
// Every write or discard that ended before a successful sync started must
// survive. THINPOOL_CRASH_ITERS/4 sets the number of rounds (default 6).
func TestCrashConcurrent(t *testing.T) {
	const writers, callsEach, samples = 4, 40, 16
	names := []string{"a", "b", "c", "s"}
	type sample struct {
		mem           *faultfile.Mem
		before, after uint64
		op            faultfile.Op
	}
	for round := range crashIters(t, 24) / 4 {
		seed := uint64(round)
		var (
			clk      clock
			sampling atomic.Bool
			seen     int
			smps     []sample
		)
		rng := rand.New(rand.NewPCG(seed, 9))
		mem := faultfile.NewMem()
		// The injector runs under the File's lock, one call at a time. It
		// copies the Mem between two ticks: writes that ended before the
		// first are in the copy, writes that started after the second not.
		f := faultfile.Wrap(mem, faultfile.InjectorFunc(func(op faultfile.Op) bool {
			if !sampling.Load() {
				return false
			}
			slot := seen
			if seen++; slot >= samples {
				slot = rng.IntN(seen)
			}
			if slot < samples {
				before := clk.tick()
				smp := sample{mem: mem.Clone(), before: before, after: clk.tick(), op: op}
				if slot < len(smps) {
					smps[slot] = smp
				} else {
					smps = append(smps, smp)
				}
			}
			return false
		}))
		r := newCrashRun(t, f)
		r.create(thinpool.Options{DataSize: 64 << 20})
		for _, n := range names[:3] {
			r.createThin(n, 1<<20, nil)
			r.write(n, 0, 64)
		}
		r.snapshot("a", "s", false)
		if r.err != nil {
			t.Fatal(r.err)
		}
		base := r.m.clone()
		sampling.Store(true)

		var wg sync.WaitGroup
		for w := range writers {
			wrng := rand.New(rand.NewPCG(seed, uint64(w)))
			th, d := r.thins[names[w]], base.devs[names[w]]
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 16*crashPage)
				for i := range callsEach {
					e := cevent{dev: w}
					var err error
					switch x := wrng.IntN(10); {
					case x < 6:
						e.p0, e.n = wrng.Int64N(256-16), 1+wrng.Int64N(16)
						e.t = tag{writer: d.writer, gen: uint32(1000*(w+1) + i)}
						fillPages(buf[:e.n*crashPage], e.p0, e.t)
						e.start = clk.tick()
						_, err = th.WriteAt(buf[:e.n*crashPage], e.p0*crashPage)
					case x < 9:
						e.p0, e.n = wrng.Int64N(16)*16, 16
						e.start = clk.tick()
						err = th.Discard(e.p0*crashPage, e.n*crashPage)
					default:
						e.sync = true
						e.start = clk.tick()
						err = th.Sync()
					}
					e.end = clk.tick()
					if err != nil {
						t.Errorf("writer %d call %d: %v", w, i, err)
						return
					}
					clk.record(e)
				}
			}()
		}
		wg.Wait()
		sampling.Store(false)
		if t.Failed() {
			return
		}
		for i, smp := range smps {
			mode := []crashMode{crashDrop, crashTorn}[i%2]
			crash(faultfile.Wrap(smp.mem, nil), mode, seed+uint64(i))
			m := concurrentModel(base, names, slices.Clone(clk.events), smp.before, smp.after)
			verifyCrash(t, smp.mem, []*model{m}, fmt.Sprintf("round %d, crash before op %v (ticks %d-%d), %s crash", round, smp.op, smp.before, smp.after, mode))
		}
		end := clk.tick()
		m := concurrentModel(base, names, slices.Clone(clk.events), end, end)
		f.Crash()
		verifyCrash(t, mem, []*model{m}, fmt.Sprintf("round %d, crash at the end", round))
	}
}
