package blockdev

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// chunkSize is the memDevice's allocation unit, the thin pool's block size.
const chunkSize = 64 << 10

// memDevice is an in-memory, sparse Device. Chunks that were never written,
// or were zeroed whole, cost no memory and read as zeros, so its mapped
// count is what a thin device would take from the pool. It is safe for
// concurrent use.
type memDevice struct {
	size   atomic.Int64
	locks  [64]sync.Mutex // locks[i%64] guards chunks[i]
	mu     sync.Mutex     // guards the chunks slice header on resize
	chunks []*[chunkSize]byte

	writes, zeroes, syncs atomic.Int64 // calls
	zeroed                atomic.Int64 // bytes passed to WriteZeroes
	mapped                atomic.Int64 // chunks allocated
	fail                  atomic.Pointer[error]
	// gate, if set, makes ReadAt wait until it is closed: a stuck server.
	gate atomic.Pointer[chan struct{}]
}

var _ Device = (*memDevice)(nil)
var _ MappedSizer = (*memDevice)(nil)

func newMemDevice(size int64) *memDevice {
	d := &memDevice{chunks: make([]*[chunkSize]byte, (size+chunkSize-1)/chunkSize)}
	d.size.Store(size)
	return d
}

func (d *memDevice) Size() int64 { return d.size.Load() }

func (d *memDevice) MappedBytes() int64 { return d.mapped.Load() * chunkSize }

// failWith makes every later call fail with err (nil: stop failing).
func (d *memDevice) failWith(err error) {
	if err == nil {
		d.fail.Store(nil)
		return
	}
	d.fail.Store(&err)
}

func (d *memDevice) failure() error {
	if p := d.fail.Load(); p != nil {
		return *p
	}
	return nil
}

func (d *memDevice) chunk(i int64) **[chunkSize]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return &d.chunks[i]
}

// each calls fn for every chunk piece of [off, off+n), holding its lock.
func (d *memDevice) each(off, n int64, fn func(c **[chunkSize]byte, lo, hi int64, pos int64)) {
	pos := int64(0)
	for n > 0 {
		i, lo := off/chunkSize, off%chunkSize
		hi := min(chunkSize, lo+n)
		l := &d.locks[i%int64(len(d.locks))]
		l.Lock()
		fn(d.chunk(i), lo, hi, pos)
		l.Unlock()
		pos += hi - lo
		off += hi - lo
		n -= hi - lo
	}
}

func (d *memDevice) ReadAt(p []byte, off int64) (int, error) {
	if g := d.gate.Load(); g != nil {
		<-*g
	}
	if err := d.failure(); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, syscall.EINVAL
	}
	size := d.Size()
	if off >= size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), size-off)
	d.each(off, n, func(c **[chunkSize]byte, lo, hi, pos int64) {
		if *c == nil {
			clear(p[pos : pos+hi-lo])
		} else {
			copy(p[pos:], (*c)[lo:hi])
		}
	})
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

func (d *memDevice) WriteAt(p []byte, off int64) (int, error) {
	d.writes.Add(1)
	if err := d.failure(); err != nil {
		return 0, err
	}
	if off < 0 || off+int64(len(p)) > d.Size() {
		return 0, fmt.Errorf("memDevice: write [%d, +%d) past %d", off, len(p), d.Size())
	}
	d.each(off, int64(len(p)), func(c **[chunkSize]byte, lo, hi, pos int64) {
		if *c == nil {
			*c = new([chunkSize]byte)
			d.mapped.Add(1)
		}
		copy((*c)[lo:hi], p[pos:])
	})
	return len(p), nil
}

func (d *memDevice) WriteZeroes(off, n int64) error {
	d.zeroes.Add(1)
	d.zeroed.Add(n)
	if err := d.failure(); err != nil {
		return err
	}
	if off < 0 || n < 0 || off+n > d.Size() {
		return fmt.Errorf("memDevice: zero [%d, +%d) past %d", off, n, d.Size())
	}
	d.each(off, n, func(c **[chunkSize]byte, lo, hi, pos int64) {
		switch {
		case *c == nil:
		case lo == 0 && hi == chunkSize:
			*c = nil
			d.mapped.Add(-1)
		default:
			clear((*c)[lo:hi])
		}
	})
	return nil
}

func (d *memDevice) Sync() error {
	d.syncs.Add(1)
	return d.failure()
}

// resize changes the size; growing adds unmapped chunks.
func (d *memDevice) resize(size int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := (size + chunkSize - 1) / chunkSize
	for int64(len(d.chunks)) < n {
		d.chunks = append(d.chunks, nil)
	}
	d.size.Store(size)
}

// image returns [off, off+n) of the device.
func (d *memDevice) image(off, n int64) []byte {
	b := make([]byte, n)
	if _, err := d.ReadAt(b, off); err != nil && err != io.EOF {
		panic(err)
	}
	return b
}

// requireRoot skips the test unless it can mount FUSE and use loop devices.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("blockdev: must run as root (FUSE mount, loop devices)")
	}
	for _, p := range []string{"/dev/fuse", loopControl} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("blockdev: %s not available: %v", p, err)
		}
	}
}

// requireTool skips the test if a program is not installed.
func requireTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("blockdev: %s not installed", name)
	}
}

// deadline runs fn with a deadline, so that a stuck FUSE request fails the
// test instead of hanging it. On timeout the goroutine is left behind;
// cleanup aborts the FUSE connection, which releases it.
func deadline(d time.Duration, what string, fn func() error) error {
	res := make(chan error, 1)
	go func() { res <- fn() }()
	select {
	case err := <-res:
		return err
	case <-time.After(d):
		return fmt.Errorf("%s: still blocked after %v", what, d)
	}
}

// must fails the test on err.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// testLogf sends Server logs to the test log while the test runs.
// Goroutines left stuck in a Device may log after the test ended, which
// t.Logf does not allow; those lines are dropped.
func testLogf(t testing.TB) func(string, ...any) {
	var mu sync.Mutex
	done := false
	t.Cleanup(func() {
		mu.Lock()
		done = true
		mu.Unlock()
	})
	return func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			t.Logf(format, args...)
		}
	}
}

// mustServe serves a fresh FUSE mount for the test. Cleanup closes it; if
// that fails it aborts the connection and removes the mount.
func mustServe(t testing.TB, opts Options) *Server {
	t.Helper()
	requireRoot(t)
	if opts.Logf == nil {
		opts.Logf = testLogf(t)
	}
	dir := filepath.Join(t.TempDir(), "fuse")
	var s *Server
	err := deadline(30*time.Second, "serve", func() (err error) {
		s, err = Serve(dir, opts)
		return err
	})
	must(t, err)
	t.Cleanup(func() {
		err := deadline(20*time.Second, "close", s.Close)
		if err == nil {
			return
		}
		t.Errorf("cleanup: close: %v", err)
		if err := s.Abort(); err != nil {
			t.Logf("cleanup: abort: %v", err)
		}
		if err := deadline(20*time.Second, "cleanup", func() error { return Cleanup(dir) }); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return s
}

// mustAdd serves a fresh memDevice of size bytes as name.
func mustAdd(t testing.TB, s *Server, name string, size int64, readOnly bool) (*memDevice, string) {
	t.Helper()
	d := newMemDevice(size)
	path, err := s.Add(name, d, readOnly)
	must(t, err)
	return d, path
}

// mustAttach attaches a loop device to path. Cleanup unmounts whatever is
// mounted from it and detaches it; if that is stuck, it aborts the server's
// connection so the kernel fails the pending requests, and tries again.
func mustAttach(t testing.TB, s *Server, path string, o LoopOptions) string {
	t.Helper()
	var dev string
	err := deadline(30*time.Second, "attach", func() (err error) {
		dev, err = Attach(path, o)
		return err
	})
	must(t, err)
	t.Cleanup(func() { cleanupLoop(t, s, dev) })
	return dev
}

func cleanupLoop(t testing.TB, s *Server, dev string) {
	// The loop device may be gone already and taken by someone else since:
	// touch only a device still backed by one of this server's files.
	if s != nil {
		if backing, ok := backingFile(dev); !ok || !strings.HasPrefix(backing, s.Dir()+"/") {
			return
		}
	}
	teardown := func() error {
		for {
			dir, ok := MountedAt(dev)
			if !ok {
				break
			}
			if err := Unmount(dir); err != nil {
				return err
			}
		}
		return Detach(dev)
	}
	err := deadline(20*time.Second, "unmount+detach "+dev, teardown)
	if err == nil {
		return
	}
	t.Errorf("cleanup %s: %v; aborting the FUSE connection", dev, err)
	if s != nil {
		_ = s.Abort()
	}
	if err := deadline(20*time.Second, "unmount+detach "+dev, teardown); err != nil {
		t.Errorf("cleanup %s after abort: %v", dev, err)
	}
}

// pattern returns n pseudo-random bytes derived from seed.
func pattern(seed, n int) []byte {
	b := make([]byte, n)
	x := uint64(seed)*0x9E3779B97F4A7C15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// alignedBuf returns an n-byte buffer aligned to 4096 for O_DIRECT.
func alignedBuf(n int) []byte {
	b := make([]byte, n+4096)
	off := 0
	if r := int(uintptr(unsafe.Pointer(&b[0])) % 4096); r != 0 {
		off = 4096 - r
	}
	return b[off : off+n]
}

// equalOrDiff returns "" if a and b are equal, else where they differ.
func equalOrDiff(a, b []byte) string {
	if bytes.Equal(a, b) {
		return ""
	}
	if len(a) != len(b) {
		return fmt.Sprintf("lengths %d and %d", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			return fmt.Sprintf("first difference at byte %d: %#x vs %#x", i, a[i], b[i])
		}
	}
	return ""
}

// errnoOf returns the errno inside err, or 0.
func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}
