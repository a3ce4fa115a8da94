package thinpool

// Golden pool files: every format version this package has written must
// still open, with the same devices, labels and contents. A v1 pool is
// upgraded to the current version when it opens.
//
// A pool file is about 1 GiB of mostly holes, so testdata keeps only the
// bytes that were written, as chunks (see writeChunks). To make the file for
// a new format version, add a script and run
//
//	THINPOOL_UPDATE_GOLDEN=1 go test -run TestGoldenGenerate ./thinpool/
//
// It writes the file of the current version only; the files of older
// versions are kept as they are.

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// goldenPath is the golden pool file of a format version.
func goldenPath(version int) string { return fmt.Sprintf("testdata/v%d-pool.chunks.gz", version) }

// goldenStep is one step of the script that made a golden pool.
type goldenStep struct {
	op     string // create, write, zeroes, discard, snapshot, labels, rename, resize, delete, sync, checkpoint
	dev    string // device the step acts on
	name   string // new device name (snapshot, rename)
	off, n int64
	fill   string // write: the data is fill repeated
	size   int64  // create, resize
	labels map[string]string
	ro     bool // snapshot
}

const goldenBlock = DefaultBlockSize

// goldenV1Script made testdata/v1-pool.chunks.gz and v2-pool.chunks.gz: a
// pool of 64 MiB whose checkpoint holds three devices and whose journal
// holds every operation kind after it. The pool was never closed, so
// opening it replays the journal.
var goldenV1Script = []goldenStep{
	// In the checkpoint.
	{op: "create", dev: "base", size: 8*goldenBlock + 1536, labels: map[string]string{"os": "alpine", "role": "image"}},
	{op: "write", dev: "base", off: 0, n: 3 * goldenBlock, fill: "base-0|"},
	{op: "write", dev: "base", off: 8 * goldenBlock, n: 1536, fill: "tail|"}, // the partial last block
	{op: "create", dev: "scratch", size: 4 * goldenBlock},
	{op: "write", dev: "scratch", off: goldenBlock / 2, n: goldenBlock, fill: "scratch|"},
	{op: "snapshot", dev: "base", name: "snap-ro", ro: true},
	{op: "checkpoint"},
	// In the journal.
	{op: "write", dev: "base", off: 100, n: 200, fill: "base-1|"}, // copy of block 0
	{op: "snapshot", dev: "base", name: "snap-rw"},
	{op: "write", dev: "snap-rw", off: 2 * goldenBlock, n: goldenBlock, fill: "rw|"}, // whole shared block
	{op: "discard", dev: "base", off: goldenBlock, n: goldenBlock},
	{op: "zeroes", dev: "snap-rw", off: 8*goldenBlock + 512, n: 512},
	{op: "labels", dev: "base", labels: map[string]string{"os": "alpine", "role": "image", "ver": "3.20"}},
	{op: "create", dev: "tmp", size: goldenBlock},
	{op: "write", dev: "tmp", off: 0, n: 10, fill: "tmp|"},
	{op: "delete", dev: "tmp"},
	{op: "rename", dev: "scratch", name: "scratch2"},
	{op: "resize", dev: "scratch2", size: 6 * goldenBlock},
	{op: "write", dev: "scratch2", off: 5*goldenBlock + 10, n: 20, fill: "grown|"},
	{op: "sync"},
}

// goldenV1Devices is what the v1 golden pool holds.
var goldenV1Devices = []DeviceInfo{
	{ID: 1, Name: "base", Size: 8*goldenBlock + 1536, Labels: map[string]string{"os": "alpine", "role": "image", "ver": "3.20"}},
	{ID: 2, Name: "scratch2", Size: 6 * goldenBlock},
	{ID: 3, Name: "snap-ro", Size: 8*goldenBlock + 1536, Origin: 1, OriginName: "base", ReadOnly: true},
	{ID: 4, Name: "snap-rw", Size: 8*goldenBlock + 1536, Origin: 1, OriginName: "base"},
}

func fillBytes(fill string, n int64) []byte {
	return bytes.Repeat([]byte(fill), int(n)/len(fill)+1)[:n]
}

// runGoldenScript runs script on p, failing t on any error.
func runGoldenScript(t testing.TB, p *Pool, script []goldenStep) {
	t.Helper()
	for i, s := range script {
		var err error
		dev := func() *Thin {
			d, err := p.Device(s.dev)
			if err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			return d
		}
		switch s.op {
		case "create":
			_, err = p.CreateThin(s.dev, s.size, s.labels)
		case "write":
			_, err = dev().WriteAt(fillBytes(s.fill, s.n), s.off)
		case "zeroes":
			err = dev().WriteZeroes(s.off, s.n)
		case "discard":
			err = dev().Discard(s.off, s.n)
		case "snapshot":
			_, err = p.Snapshot(s.dev, s.name, s.ro)
		case "labels":
			err = p.SetLabels(s.dev, s.labels)
		case "rename":
			err = p.Rename(s.dev, s.name)
		case "resize":
			err = p.Resize(s.dev, s.size)
		case "delete":
			err = p.Delete(s.dev)
		case "sync":
			err = p.Sync()
		case "checkpoint":
			err = p.Checkpoint()
		default:
			t.Fatalf("step %d: unknown op %q", i, s.op)
		}
		if err != nil {
			t.Fatalf("step %d (%s %s): %v", i, s.op, s.dev, err)
		}
	}
}

// goldenContents is the contents of each device after script, by name,
// worked out without the engine. Discards in scripts are block aligned.
func goldenContents(t testing.TB, script []goldenStep) map[string][]byte {
	devs := map[string][]byte{}
	for _, s := range script {
		switch s.op {
		case "create":
			devs[s.dev] = make([]byte, s.size)
		case "write":
			copy(devs[s.dev][s.off:], fillBytes(s.fill, s.n))
		case "zeroes", "discard":
			if s.op == "discard" && (s.off%goldenBlock != 0 || s.n%goldenBlock != 0) {
				t.Fatalf("golden script: discard %d+%d is not block aligned", s.off, s.n)
			}
			clear(devs[s.dev][s.off : s.off+s.n])
		case "snapshot":
			devs[s.name] = slices.Clone(devs[s.dev])
		case "rename":
			devs[s.name] = devs[s.dev]
			delete(devs, s.dev)
		case "resize":
			devs[s.dev] = append(devs[s.dev], make([]byte, s.size-int64(len(devs[s.dev])))...)
		case "delete":
			delete(devs, s.dev)
		}
	}
	return devs
}

// Chunk file format, gzip-compressed, all integers little-endian:
//
//	"TPCHUNKS" | version u32 (1) | reserved u32 | file size u64 | chunks u32
//	then per chunk: offset u64 | length u32 | bytes
const chunksMagic = "TPCHUNKS"

// writeChunks saves the bytes of s that are not zero.
func writeChunks(path string, s *pageStore) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	type chunk struct {
		off int64
		b   []byte
	}
	var chunks []chunk
	for _, pi := range slices.Sorted(maps.Keys(s.pages)) {
		pg := s.pages[pi]
		lo, hi := 0, len(pg)
		for lo < hi && pg[lo] == 0 {
			lo++
		}
		for hi > lo && pg[hi-1] == 0 {
			hi--
		}
		if lo < hi {
			chunks = append(chunks, chunk{pi*storePage + int64(lo), pg[lo:hi]})
		}
	}
	e := encoder{}
	e.b = append(e.b, chunksMagic...)
	e.u32(1)
	e.u32(0)
	e.u64(uint64(s.size))
	e.u32(uint32(len(chunks)))
	for _, c := range chunks {
		e.u64(uint64(c.off))
		e.u32(uint32(len(c.b)))
		e.b = append(e.b, c.b...)
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return err
	}
	if _, err := zw.Write(e.b); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// readChunks loads a chunk file into a new pageStore.
func readChunks(path string) (*pageStore, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(zr, 64<<20))
	if err != nil {
		return nil, err
	}
	d := decoder{b: b}
	if string(d.take(len(chunksMagic))) != chunksMagic || d.u32() != 1 || d.u32() != 0 {
		return nil, errors.New("not a version 1 chunk file")
	}
	s := newPageStore()
	s.size = int64(d.u64())
	for n := d.u32(); n > 0 && !d.bad; n-- {
		off := int64(d.u64())
		data := d.take(int(d.u32()))
		if d.bad || off < 0 || off+int64(len(data)) > s.size {
			return nil, errors.New("bad chunk")
		}
		s.write(data, off)
	}
	if d.bad || d.remaining() != 0 {
		return nil, errors.New("truncated or trailing chunk data")
	}
	return s, nil
}

// TestGoldenGenerate writes the golden file of the current format version.
// It runs only with THINPOOL_UPDATE_GOLDEN=1.
func TestGoldenGenerate(t *testing.T) {
	if os.Getenv("THINPOOL_UPDATE_GOLDEN") != "1" {
		t.Skip("set THINPOOL_UPDATE_GOLDEN=1 to write " + goldenPath(formatVersion))
	}
	s := newPageStore()
	p, err := CreateFile(s.open(), Options{DataSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	runGoldenScript(t, p, goldenV1Script)
	mustCheck(t, p)
	// Not closed: the journal must stay unfolded.
	path := goldenPath(formatVersion)
	if err := writeChunks(path, s); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s: %d bytes; pool file %d bytes, journal %d bytes", path, fi.Size(), s.size, p.journalOff)
}

// loadGolden returns a fresh copy of the golden pool file of a version.
func loadGolden(t testing.TB, version int) *pageStore {
	t.Helper()
	s, err := readChunks(goldenPath(version))
	if err != nil {
		t.Fatalf("load golden pool: %v", err)
	}
	return s
}

// goldenMeta returns the superblock, checkpoint and journal entries of a
// pool file as it is on disk, with each entry's offset in the journal.
func goldenMeta(t testing.TB, s *pageStore) (sb *superblock, slots [][]byte, ck []byte, entries [][]byte, offsets []int64) {
	t.Helper()
	f := s.open()
	for i := range int64(superSlots) {
		b := make([]byte, metaSectorSize)
		if _, err := f.ReadAt(b, i*metaSectorSize); err != nil {
			t.Fatal(err)
		}
		slots = append(slots, b)
	}
	sb, err := readSuperblock(f)
	if err != nil {
		t.Fatal(err)
	}
	ck = make([]byte, sb.ckptLen)
	if _, err := f.ReadAt(ck, int64(sb.metaOffset+sb.ckptOffset)); err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off+metaSectorSize <= int64(sb.journalSize); {
		head := make([]byte, metaSectorSize)
		if _, err := f.ReadAt(head, int64(sb.metaOffset)+off); err != nil {
			t.Fatal(err)
		}
		h, ok := decodeEntryHeader(head)
		if !ok || h.epoch != sb.generation || off+int64(h.size()) > int64(sb.journalSize) {
			break
		}
		b := make([]byte, h.size())
		if _, err := f.ReadAt(b, int64(sb.metaOffset)+off); err != nil {
			t.Fatal(err)
		}
		entries, offsets = append(entries, b), append(offsets, off)
		off += int64(h.size())
	}
	return sb, slots, ck, entries, offsets
}

// TestGolden opens the pool that each format version wrote and checks that
// it holds exactly what its script put there. A v1 pool is upgraded when it
// opens: its journal is folded into a checkpoint under a v2 superblock.
func TestGolden(t *testing.T) {
	for version := formatV1; version <= formatVersion; version++ {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) { testGolden(t, version) })
	}
}

func testGolden(t *testing.T, version int) {
	s := loadGolden(t, version)

	// The layout on disk, before opening.
	sb, _, ck, entries, offsets := goldenMeta(t, s)
	if sb.version != uint32(version) || sb.generation != 2 || sb.blockSize != goldenBlock || sb.nrDataBlocks != 1024 {
		t.Fatalf("superblock: version %d, generation %d, block size %d, %d blocks; want %d, 2, %d, 1024",
			sb.version, sb.generation, sb.blockSize, sb.nrDataBlocks, version, goldenBlock)
	}
	if (sb.seal != 0) != (version > formatV1) {
		t.Fatalf("superblock of v%d has seal %#x", version, sb.seal)
	}
	st, gen, err := decodeCheckpoint(ck, 0, uint64(sb.blockSize), sb.nrDataBlocks)
	if err != nil || gen != 2 {
		t.Fatalf("checkpoint: generation %d, %v", gen, err)
	}
	var inCkpt []string
	for _, d := range st.devs {
		inCkpt = append(inCkpt, d.meta.name)
	}
	slices.Sort(inCkpt)
	if want := []string{"base", "scratch", "snap-ro"}; !slices.Equal(inCkpt, want) {
		t.Fatalf("checkpoint devices %q, want %q", inCkpt, want)
	}
	if got := st.image(gen).encode(); !bytes.Equal(got, ck) {
		t.Fatal("the checkpoint does not encode back to the same bytes")
	}
	kinds := map[opKind]int{}
	for i, e := range entries {
		h, _ := decodeEntryHeader(e)
		ops, ok, err := decodeEntry(e, h, sb, offsets[i])
		if !ok || err != nil {
			t.Fatalf("journal entry %d: ok=%v err=%v", i, ok, err)
		}
		for _, o := range ops {
			kinds[o.kind]++
		}
		if version > formatV1 {
			// Sealed: the same bytes at another offset or under another
			// seal are not an entry.
			if _, ok, _ := decodeEntry(e, h, sb, offsets[i]+metaSectorSize); ok {
				t.Fatalf("journal entry %d passes at another offset", i)
			}
			other := *sb
			other.seal++
			if _, ok, _ := decodeEntry(e, h, &other, offsets[i]); ok {
				t.Fatalf("journal entry %d passes under another seal", i)
			}
		}
	}
	for k := opMap; k <= opUpdate; k++ {
		if kinds[k] == 0 {
			t.Errorf("the journal has no %s operation", k)
		}
	}

	// Open it: the checkpoint plus the journal.
	p, err := OpenFile(s.open())
	if err != nil {
		t.Fatalf("open golden pool: %v", err)
	}
	defer p.Close()
	if version == formatV1 {
		onDisk, err := readSuperblock(s.open())
		if err != nil {
			t.Fatal(err)
		}
		if p.journalOff != 0 || p.Usage().Generation != 3 || onDisk.version != formatVersion || onDisk.generation != 3 {
			t.Fatalf("journal offset %d, generation %d, on disk v%d generation %d: opening must have upgraded the pool",
				p.journalOff, p.Usage().Generation, onDisk.version, onDisk.generation)
		}
	} else if p.journalOff == 0 || p.Usage().Generation != 2 {
		t.Fatalf("journal offset %d, generation %d: opening must have replayed the journal", p.journalOff, p.Usage().Generation)
	}
	mustCheck(t, p)
	checkGoldenDevices(t, p, goldenV1Devices, goldenContents(t, goldenV1Script))

	// The pool stays usable: change it, close it, open it again.
	d, err := p.Device("snap-rw")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, d, []byte("after"), 3)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p, err = OpenFile(s.open())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	mustCheck(t, p)
	want := goldenContents(t, goldenV1Script)
	copy(want["snap-rw"][3:], "after")
	checkGoldenDevices(t, p, goldenV1Devices, want)
}

func checkGoldenDevices(t *testing.T, p *Pool, wantDevs []DeviceInfo, contents map[string][]byte) {
	t.Helper()
	got := p.Devices()
	if len(got) != len(wantDevs) {
		t.Fatalf("%d devices, want %d", len(got), len(wantDevs))
	}
	for i, w := range wantDevs {
		g := got[i]
		if g.ID != w.ID || g.Name != w.Name || g.Size != w.Size || g.Origin != w.Origin ||
			g.OriginName != w.OriginName || g.ReadOnly != w.ReadOnly || !labelsEqual(g.Labels, w.Labels) || g.Created.IsZero() {
			t.Errorf("device %d: %s\nwant %s", i, fmtInfo(g), fmtInfo(w))
		}
		d, err := p.Device(w.Name)
		if err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "contents of "+w.Name, mustRead(t, d, 0, int(w.Size)), contents[w.Name])
	}
}

func fmtInfo(i DeviceInfo) string {
	var l []string
	for _, k := range slices.Sorted(maps.Keys(i.Labels)) {
		l = append(l, k+"="+i.Labels[k])
	}
	return fmt.Sprintf("id=%d name=%q size=%d origin=%d (%q) ro=%v labels=[%s]",
		i.ID, i.Name, i.Size, i.Origin, i.OriginName, i.ReadOnly, strings.Join(l, " "))
}

// TestGoldenScriptToday runs the v1 script on a new pool: what the code
// writes today must read back the same way (the script itself is right).
func TestGoldenScriptToday(t *testing.T) {
	s := newPageStore()
	p, err := CreateFile(s.open(), Options{DataSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	runGoldenScript(t, p, goldenV1Script)
	checkGoldenDevices(t, p, goldenV1Devices, goldenContents(t, goldenV1Script))
	p2, err := OpenFile(s.open()) // as after a crash: replay the journal
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	mustCheck(t, p2)
	checkGoldenDevices(t, p2, goldenV1Devices, goldenContents(t, goldenV1Script))
}
