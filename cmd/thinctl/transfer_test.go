package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/thinpool/thinpool/daemon"
	"github.com/thinpool/thinpool/thinpool"
)

// xferRun runs thinctl on the pool at path and returns stdout, stderr and
// the exit code. A nil stdin is empty.
func xferRun(t *testing.T, path string, stdin io.Reader, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var out, errOut bytes.Buffer
	code = run(append([]string{"--pool", path}, args...), stdin, &out, &errOut)
	return out.String(), errOut.String(), code
}

// xferMustRun runs thinctl and fails the test unless it exits 0.
func xferMustRun(t *testing.T, path string, stdin io.Reader, args ...string) string {
	t.Helper()
	out, errOut, code := xferRun(t, path, stdin, args...)
	if code != 0 {
		t.Fatalf("thinctl %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// xferPool creates a 64 MiB pool (64 KiB blocks unless extra says otherwise)
// and returns its path. Cleanup runs 'pool check'.
func xferPool(t *testing.T, extra ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pool.img")
	xferMustRun(t, path, nil, append([]string{"pool", "create", "--size", "64M"}, extra...)...)
	t.Cleanup(func() {
		if out, errOut, code := xferRun(t, path, nil, "pool", "check"); code != 0 {
			t.Errorf("pool check: exit %d: %s%s", code, out, errOut)
		}
	})
	return path
}

// xferWithPool opens the pool at path for fn, checks it and closes it.
func xferWithPool(t *testing.T, path string, fn func(p *thinpool.Pool)) {
	t.Helper()
	p, err := thinpool.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	fn(p)
	r, err := p.Check()
	if err != nil || !r.OK() {
		t.Fatalf("check: %v %v %v", err, r.Errors, r.Leaks)
	}
}

// mappedBlocks returns how many blocks the device maps.
func mappedBlocks(t *testing.T, path, name string) uint64 {
	t.Helper()
	var n uint64
	xferWithPool(t, path, func(p *thinpool.Pool) {
		d, err := p.Device(name)
		if err != nil {
			t.Fatal(err)
		}
		u, err := d.Usage()
		if err != nil {
			t.Fatal(err)
		}
		n = u.Mapped
	})
	return n
}

// exportBytes exports a device to stdout.
func exportBytes(t *testing.T, path, name string) []byte {
	t.Helper()
	return []byte(xferMustRun(t, path, nil, "device", "export", name, "-"))
}

// runKind is what a run of blocks of a test image holds.
type runKind int

const (
	runHole  runKind = iota // never written: a hole in the file
	runZeros                // zeros written out
	runData                 // random bytes, no block all zeros
	runByte                 // one non-zero byte at the end of each block, holes before
	runHalf                 // data in the first half of each block, a hole after
)

// imageRun is blocks of 64 KiB of one kind.
type imageRun struct {
	kind   runKind
	blocks int
}

// rawImage is a raw image file and its contents.
type rawImage struct {
	path string
	data []byte
}

// makeTestImage writes an image of runs followed by tail bytes of data.
func makeTestImage(t *testing.T, runs []imageRun, tail int) rawImage {
	t.Helper()
	const bs = thinpool.DefaultBlockSize
	rng := rand.New(rand.NewPCG(uint64(len(runs)), uint64(tail)))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		for i := 0; i < n; i += 4096 {
			b[i] |= 1
		}
		return b
	}
	path := filepath.Join(t.TempDir(), "image.raw")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var img []byte
	write := func(b []byte, off int) {
		if _, err := f.WriteAt(b, int64(off)); err != nil {
			t.Fatal(err)
		}
		copy(img[off:], b)
	}
	for _, r := range runs {
		off := len(img)
		img = append(img, make([]byte, r.blocks*bs)...)
		for i := range r.blocks {
			b := off + i*bs
			switch r.kind {
			case runZeros:
				write(make([]byte, bs), b)
			case runData:
				write(random(bs), b)
			case runByte:
				write([]byte{0x5a}, b+bs-1)
			case runHalf:
				write(random(bs/2), b)
			}
		}
	}
	off := len(img)
	img = append(img, make([]byte, tail)...)
	if tail > 0 {
		write(random(tail), off)
	}
	if err := f.Truncate(int64(len(img))); err != nil {
		t.Fatal(err)
	}
	return rawImage{path: path, data: img}
}

// nonZeroBlocks counts the blocks of bs bytes of b that are not all zeros.
func nonZeroBlocks(b []byte, bs int) uint64 {
	var n uint64
	for i := 0; i < len(b); i += bs {
		if !bytes.Equal(b[i:min(i+bs, len(b))], make([]byte, min(bs, len(b)-i))) {
			n++
		}
	}
	return n
}

// padded is b with zeros up to n bytes.
func padded(b []byte, n int64) []byte {
	return append(bytes.Clone(b), make([]byte, n-int64(len(b)))...)
}

// allocated is how many bytes of disk the file at path uses.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

// sparseRuns is an image with data, holes and zeros, in runs that cross
// the 1 MiB chunks of import and export.
var sparseRuns = []imageRun{
	{runData, 3}, {runHole, 7}, {runZeros, 3}, {runByte, 1}, {runHole, 6}, {runData, 4}, {runZeros, 8},
	{runHalf, 1}, {runHole, 30}, {runZeros, 20}, {runData, 2},
}

func TestImportExportSparse(t *testing.T) {
	const bs = thinpool.DefaultBlockSize
	path := xferPool(t)
	img := makeTestImage(t, sparseRuns, 1000)
	want := nonZeroBlocks(img.data, bs) // 3+1+4+1+2 blocks and the tail
	if want != 12 {
		t.Fatalf("test image has %d non-zero blocks", want)
	}

	out := xferMustRun(t, path, nil, "device", "import", "web", img.path)
	if !strings.HasPrefix(out, `Imported 5.3 MiB into device "web" in `) || !strings.Contains(out, "12 blocks mapped (768 KiB)") {
		t.Errorf("import summary: %q", out)
	}
	if got := mappedBlocks(t, path, "web"); got != want {
		t.Errorf("mapped %d blocks, want %d (the non-zero ones)", got, want)
	}
	size := roundUp(int64(len(img.data)), 512)
	var info deviceJSON
	if err := json.Unmarshal([]byte(xferMustRun(t, path, nil, "device", "inspect", "web")), &info); err != nil {
		t.Fatal(err)
	}
	if info.Size != size {
		t.Errorf("device size %d, want %d", info.Size, size)
	}

	var res importResult
	if err := json.Unmarshal([]byte(xferMustRun(t, path, nil, "--json", "device", "import", "web2", img.path)), &res); err != nil {
		t.Fatal(err)
	}
	if res.Size != int64(len(img.data)) || res.Written != 11*bs+1000 || res.MappedBlocks != want || !res.Created || res.BlockSize != bs {
		t.Errorf("import result %+v", res)
	}
	if res.Read >= res.Size {
		t.Errorf("read %d of %d bytes: the holes were not skipped", res.Read, res.Size)
	}

	dst := filepath.Join(t.TempDir(), "out.raw")
	out = xferMustRun(t, path, nil, "device", "export", "web", dst)
	if !strings.HasPrefix(out, `Exported device "web" (5.3 MiB) to `+dst) {
		t.Errorf("export summary: %q", out)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, padded(img.data, size)) {
		t.Fatalf("exported image differs (%d bytes, want %d)", len(got), size)
	}
	if a := allocated(t, dst); a > int64(want+1)*bs {
		t.Errorf("exported file uses %d bytes of disk for %d non-zero blocks: not sparse", a, want)
	}
	if got := exportBytes(t, path, "web"); !bytes.Equal(got, padded(img.data, size)) {
		t.Errorf("export to stdout differs (%d bytes)", len(got))
	}
}

func TestImportLargeBlocks(t *testing.T) {
	const bs = 2 << 20
	path := xferPool(t, "--block-size", "2M")
	// In 64 KiB units: data at the start of block 0, block 1 all zeros, a
	// byte at the end of block 3, blocks 6 and 7 zeros, data in block 9.
	img := makeTestImage(t, []imageRun{{runData, 20}, {runHole, 12}, {runZeros, 32}, {runHole, 63}, {runByte, 1},
		{runHole, 64}, {runZeros, 64}, {runHole, 40}, {runHalf, 2}}, 12345)
	want := nonZeroBlocks(img.data, bs)
	if want != 3 {
		t.Fatalf("test image has %d non-zero blocks", want)
	}
	xferMustRun(t, path, nil, "device", "import", "big", img.path)
	if got := mappedBlocks(t, path, "big"); got != want {
		t.Errorf("mapped %d blocks, want %d", got, want)
	}
	size := roundUp(int64(len(img.data)), 512)
	if got := exportBytes(t, path, "big"); !bytes.Equal(got, padded(img.data, size)) {
		t.Errorf("exported image differs")
	}
	// Zeros over the data unmap it again.
	xferMustRun(t, path, bytes.NewReader(make([]byte, 3<<20)), "device", "import", "big", "-")
	if got := mappedBlocks(t, path, "big"); got != want-1 {
		t.Errorf("after zeroing 3 MiB: mapped %d blocks, want %d", got, want-1)
	}
}

func TestImportStdin(t *testing.T) {
	const bs = thinpool.DefaultBlockSize
	path := xferPool(t)
	img := makeTestImage(t, sparseRuns, 1000)

	_, errOut, code := xferRun(t, path, bytes.NewReader(img.data), "device", "import", "web", "-")
	if code == 0 || errOut != "thinctl: device \"web\" not found: give --size to create it from standard input\n" {
		t.Errorf("stdin without --size: exit %d, %q", code, errOut)
	}

	xferMustRun(t, path, bytes.NewReader(img.data), "device", "import", "web", "-", "--size", "6M")
	if got, want := mappedBlocks(t, path, "web"), nonZeroBlocks(img.data, bs); got != want {
		t.Errorf("mapped %d blocks, want %d", got, want)
	}
	if got := exportBytes(t, path, "web"); !bytes.Equal(got, padded(img.data, 6<<20)) {
		t.Errorf("exported image differs")
	}

	// Into the existing device: the image range is overwritten, zeros
	// included, and the rest stays.
	patch := make([]byte, 3*bs+100)
	patch[2*bs+5] = 7
	xferMustRun(t, path, bytes.NewReader(patch), "device", "import", "web", "-")
	want := padded(img.data, 6<<20)
	copy(want, patch)
	if got := exportBytes(t, path, "web"); !bytes.Equal(got, want) {
		t.Errorf("image after a partial import differs")
	}
	if got, want := mappedBlocks(t, path, "web"), nonZeroBlocks(want, bs); got != want {
		t.Errorf("mapped %d blocks after zeroing, want %d", got, want)
	}

	_, errOut, code = xferRun(t, path, bytes.NewReader(make([]byte, 7<<20)), "device", "import", "web", "-")
	if code == 0 || !strings.Contains(errOut, "standard input is larger than the device (6.0 MiB)") {
		t.Errorf("too much stdin: exit %d, %q", code, errOut)
	}
}

func TestImportTooLarge(t *testing.T) {
	path := xferPool(t)
	small := makeTestImage(t, []imageRun{{runData, 4}}, 0)
	xferMustRun(t, path, nil, "device", "create", "web", "--size", "1M")
	xferMustRun(t, path, nil, "device", "import", "web", small.path)
	before := exportBytes(t, path, "web")

	big := makeTestImage(t, []imageRun{{runData, 16}}, 1)
	stdout, errOut, code := xferRun(t, path, nil, "device", "import", "web", big.path)
	wantErr := fmt.Sprintf("thinctl: image %s is 1.0 MiB (1048577 bytes), larger than device \"web\" (1.0 MiB, 1048576 bytes)\n", big.path)
	if code == 0 || stdout != "" || errOut != wantErr {
		t.Errorf("import too large: exit %d, stdout %q, stderr %q, want %q", code, stdout, errOut, wantErr)
	}
	if got := exportBytes(t, path, "web"); !bytes.Equal(got, before) {
		t.Errorf("device changed by a refused import")
	}
	if got := mappedBlocks(t, path, "web"); got != 4 {
		t.Errorf("mapped %d blocks, want 4", got)
	}

	empty := filepath.Join(t.TempDir(), "empty.raw")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		err  string
	}{
		{"size of existing device", []string{"web", small.path, "--size", "2M"}, `device "web" already exists (1.0 MiB): --size only applies to a new device`},
		{"size too small", []string{"new", big.path, "--size", "1M"}, "larger than --size 1.0 MiB"},
		{"missing file", []string{"new", filepath.Join(t.TempDir(), "nope")}, "no such file or directory"},
		{"empty file", []string{"new", empty}, "is empty"},
		{"bad name", []string{"a/b", small.path}, "a/b"},
		{"bad size", []string{"new", small.path, "--size", "0"}, "device size must be more than 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := xferRun(t, path, nil, append([]string{"device", "import"}, tc.args...)...)
			if code == 0 || !strings.Contains(errOut, tc.err) {
				t.Errorf("exit %d, stderr %q, want %q", code, errOut, tc.err)
			}
		})
	}
	if out := xferMustRun(t, path, nil, "-q", "device", "ls"); out != "web\n" {
		t.Errorf("failed imports left devices: %q", out)
	}
}

func TestImportNoSpaceRemovesDevice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pool.img")
	xferMustRun(t, path, nil, "pool", "create", "--size", "512K")
	img := makeTestImage(t, []imageRun{{runData, 12}}, 0)
	_, errOut, code := xferRun(t, path, nil, "device", "import", "web", img.path)
	if code == 0 || !strings.Contains(errOut, "no free data blocks") || !strings.Contains(errOut, `(removed the new device "web")`) {
		t.Errorf("import into a full pool: exit %d, %q", code, errOut)
	}
	if out := xferMustRun(t, path, nil, "-q", "device", "ls"); out != "" {
		t.Errorf("devices left: %q", out)
	}
	xferMustRun(t, path, nil, "pool", "check")
}

func TestExportRefusesOverwrite(t *testing.T) {
	path := xferPool(t)
	img := makeTestImage(t, []imageRun{{runData, 2}, {runHole, 2}}, 0)
	xferMustRun(t, path, nil, "device", "import", "web", img.path)

	dst := filepath.Join(t.TempDir(), "out.raw")
	if err := os.WriteFile(dst, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := xferRun(t, path, nil, "device", "export", "web", dst)
	if want := "thinctl: " + dst + " exists and is not empty: use --force to overwrite it\n"; code == 0 || errOut != want {
		t.Errorf("export over a file: exit %d, %q", code, errOut)
	}
	if b, _ := os.ReadFile(dst); string(b) != "keep me" {
		t.Errorf("file changed: %q", b)
	}

	xferMustRun(t, path, nil, "device", "export", "web", dst, "--force")
	if b, _ := os.ReadFile(dst); !bytes.Equal(b, img.data) {
		t.Errorf("forced export differs")
	}

	empty := filepath.Join(t.TempDir(), "empty.raw")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	xferMustRun(t, path, nil, "-q", "device", "export", "web", empty)
	if b, _ := os.ReadFile(empty); !bytes.Equal(b, img.data) {
		t.Errorf("export to an empty file differs")
	}

	missing := filepath.Join(t.TempDir(), "m.raw")
	_, errOut, code = xferRun(t, path, nil, "device", "export", "nope", missing)
	if code == 0 || errOut != "thinctl: device \"nope\" not found\n" {
		t.Errorf("export of a missing device: exit %d, %q", code, errOut)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("export of a missing device created %s", missing)
	}
}

func TestZeroRuns(t *testing.T) {
	type run struct {
		lo, hi int
		zero   bool
	}
	tests := []struct {
		name string
		b    []byte
		g    int
		want []run
	}{
		{"empty", nil, 4, nil},
		{"all zero", make([]byte, 10), 4, []run{{0, 10, true}}},
		{"all data", []byte("abcdefghij"), 4, []run{{0, 10, false}}},
		{"mixed", []byte("\x00\x00\x00\x00ab\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"), 4,
			[]run{{0, 4, true}, {4, 8, false}, {8, 12, true}, {12, 16, false}}},
		{"short last granule", []byte("abcd\x00\x00"), 4, []run{{0, 4, false}, {4, 6, true}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []run
			err := zeroRuns(tc.b, tc.g, func(lo, hi int, zero bool) error {
				got = append(got, run{lo, hi, zero})
				return nil
			})
			if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("zeroRuns = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// fakeClock is a clock that moves only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestProgress(t *testing.T) {
	const mib = 1 << 20
	clock := &fakeClock{t: time.Unix(1000, 0)}
	var w bytes.Buffer
	p := startProgress(&w, clock.now, "importing web", 100*mib)

	steps := []struct {
		after time.Duration
		done  int64
		want  string // what is drawn; "" for nothing
	}{
		{0, 0, "\r\x1b[Kimporting web  [>                       ]   0%  0 B / 100 MiB"},
		{50 * time.Millisecond, 5 * mib, ""},
		{950 * time.Millisecond, 45 * mib, "\r\x1b[Kimporting web  [==========>             ]  45%  45 MiB / 100 MiB  45 MiB/s  ETA 1s"},
		{99 * time.Millisecond, 50 * mib, ""},
		{time.Millisecond, 50 * mib, "\r\x1b[Kimporting web  [============>           ]  50%  50 MiB / 100 MiB  45 MiB/s  ETA 1s"},
		{8900 * time.Millisecond, 100 * mib, "\r\x1b[Kimporting web  [========================] 100%  100 MiB / 100 MiB  10 MiB/s"},
	}
	for i, s := range steps {
		clock.advance(s.after)
		w.Reset()
		p.update(s.done)
		if w.String() != s.want {
			t.Errorf("step %d: drew %q, want %q", i, w.String(), s.want)
		}
	}
	w.Reset()
	p.finish()
	p.finish()
	if w.String() != "\r\x1b[K" {
		t.Errorf("finish drew %q", w.String())
	}

	w.Reset()
	u := startProgress(&w, clock.now, "importing db", 0)
	clock.advance(2 * time.Second)
	u.update(3 * mib)
	if want := "\r\x1b[Kimporting db  3.0 MiB  1.5 MiB/s"; w.String() != want {
		t.Errorf("unknown total: drew %q, want %q", w.String(), want)
	}

	w.Reset()
	n := startProgress(&w, clock.now, "exporting web", 10*mib)
	n.width = 30
	n.update(mib)
	if got := w.String(); got != "\r\x1b[Kexporting web  [==>          " {
		t.Errorf("cut to 30 columns: drew %q", got)
	}

	var none *progress
	none.update(1)
	none.finish()
	a := &app{err: &w}
	if a.newProgress("x", 1) != nil {
		t.Error("progress bar on a writer that is not a terminal")
	}
	a = &app{err: os.Stderr, quiet: true}
	if a.newProgress("x", 1) != nil {
		t.Error("progress bar with --quiet")
	}
}

func TestImportKeepsSharing(t *testing.T) {
	pool := newPool(t, "1G")
	dir := t.TempDir()
	img := filepath.Join(dir, "a.img")
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i/4096 + 1)
	}
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, pool, "device", "import", "base", img)
	mustRun(t, pool, "snapshot", "create", "base", "work")
	// Change 4 KiB in the middle and import the image into the snapshot.
	copy(data[2<<20:], bytes.Repeat([]byte{0xee}, 4096))
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var r importResult
	if err := json.Unmarshal([]byte(mustRun(t, pool, "--json", "device", "import", "work", img)), &r); err != nil {
		t.Fatal(err)
	}
	if r.Written != 64<<10 || r.Unchanged != int64(len(data))-64<<10 { // compared per block
		t.Fatalf("import into existing device wrote %d, unchanged %d", r.Written, r.Unchanged)
	}
	var devs []deviceJSON
	if err := json.Unmarshal([]byte(mustRun(t, pool, "--json", "device", "ls")), &devs); err != nil {
		t.Fatal(err)
	}
	if devs[1].Exclusive != 64<<10 {
		t.Fatalf("snapshot has %d exclusive bytes, want one block", devs[1].Exclusive)
	}
}

// TestTransferInterrupted: an import or export whose context a signal
// cancelled stops, undoes what it made (the new device, the new file) and
// exits 128+signal with one line saying so.
func TestTransferInterrupted(t *testing.T) {
	path := xferPool(t)
	img := filepath.Join(t.TempDir(), "disk.img")
	data := make([]byte, 8<<20)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(data)
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(&daemon.Interrupted{Signal: syscall.SIGTERM})
	interrupted := func(args ...string) (string, int) {
		var out, errOut bytes.Buffer
		a := &app{in: strings.NewReader(""), out: &out, err: &errOut}
		root := a.rootCmd()
		root.SetArgs(append([]string{"--pool", path}, args...))
		code := a.execute(ctx, root)
		return errOut.String() + out.String(), code
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"import into a new device", []string{"device", "import", "v", img}, "thinctl: interrupted: nothing imported\n"},
		{"import into an existing device", []string{"device", "import", "w", img}, `thinctl: interrupted: device "w" may be partly overwritten; import again to finish` + "\n"},
		{"export to a new file", []string{"device", "export", "w", filepath.Join(t.TempDir(), "out.img")}, "thinctl: interrupted: nothing exported\n"},
	}
	xferMustRun(t, path, nil, "device", "import", "w", img)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := xferMustRun(t, path, nil, "device", "ls")
			msg, code := interrupted(c.args...)
			if code != 143 || msg != c.want {
				t.Fatalf("thinctl %s with SIGTERM: exit %d, %q; want exit 143, %q", strings.Join(c.args, " "), code, msg, c.want)
			}
			if after := xferMustRun(t, path, nil, "device", "ls"); after != before {
				t.Fatalf("devices before:\n%s\nafter:\n%s", before, after)
			}
			if c.args[1] == "export" {
				if _, err := os.Stat(c.args[3]); !os.IsNotExist(err) {
					t.Fatalf("the export left %s: %v", c.args[3], err)
				}
			}
		})
	}
}
