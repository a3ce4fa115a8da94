package blockdev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ioTimeout bounds each step that goes through FUSE.
const ioTimeout = 30 * time.Second

// step runs fn with ioTimeout and fails the test on error.
func step(t *testing.T, what string, fn func() error) {
	t.Helper()
	if err := deadline(ioTimeout, what, fn); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

var dioCases = []struct {
	name      string
	dio       bool
	blockSize uint32
}{{"dio=off", false, 0}, {"dio=on", true, 0}, {"dio=on,bs=4096", true, 4096}}

func TestReadWrite(t *testing.T) {
	for _, tc := range dioCases {
		t.Run(tc.name, func(t *testing.T) {
			s := mustServe(t, Options{})
			d, path := mustAdd(t, s, "rw", 256<<20, false)
			dev := mustAttach(t, s, path, LoopOptions{DirectIO: tc.dio, BlockSize: tc.blockSize})

			loops, err := Loops(path)
			must(t, err)
			if len(loops) != 1 || loops[0].Dev != dev || loops[0].BackingFile != path ||
				loops[0].Size != 256<<20 || loops[0].ReadOnly {
				t.Fatalf("Loops(%q) = %+v, want %s", path, loops, dev)
			}
			if loops[0].DirectIO != tc.dio {
				t.Errorf("loop dio = %v, want %v", loops[0].DirectIO, tc.dio)
			}
			if want := max(tc.blockSize, 512); loops[0].BlockSize != want {
				t.Errorf("loop block size = %d, want %d", loops[0].BlockSize, want)
			}

			// O_DIRECT writes of several sizes, some crossing 64 KiB
			// chunks and 1 MiB FUSE requests.
			direct, err := os.OpenFile(dev, os.O_RDWR|syscall.O_DIRECT, 0)
			must(t, err)
			defer direct.Close()
			cases := []struct{ off, n int64 }{
				{0, 4096},
				{3 * 4096, 4096},
				{chunkSize - 4096, 3 * 4096},
				{5 << 20, 1 << 20},
				{17<<20 + 8192, 3<<20 + 4096},
				{256<<20 - 4096, 4096}, // the last block
			}
			for i, c := range cases {
				buf := alignedBuf(int(c.n))
				copy(buf, pattern(i, int(c.n)))
				step(t, "direct write", func() error { _, err := direct.WriteAt(buf, c.off); return err })
				if diff := equalOrDiff(d.image(c.off, c.n), buf); diff != "" {
					t.Fatalf("after direct write [%d, +%d): device %s", c.off, c.n, diff)
				}
				got := alignedBuf(int(c.n))
				step(t, "direct read", func() error { _, err := direct.ReadAt(got, c.off); return err })
				if diff := equalOrDiff(got, buf); diff != "" {
					t.Fatalf("direct read [%d, +%d): %s", c.off, c.n, diff)
				}
			}

			// Buffered I/O at unaligned offsets.
			buffered, err := os.OpenFile(dev, os.O_RDWR, 0)
			must(t, err)
			defer buffered.Close()
			off, data := int64(40<<20+12345), pattern(99, 300000)
			step(t, "buffered write", func() error { _, err := buffered.WriteAt(data, off); return err })
			step(t, "fsync", buffered.Sync)
			if diff := equalOrDiff(d.image(off, int64(len(data))), data); diff != "" {
				t.Fatalf("after buffered write + fsync: device %s", diff)
			}
			for _, c := range cases {
				got := make([]byte, c.n)
				step(t, "buffered read", func() error { _, err := buffered.ReadAt(got, c.off); return err })
				if diff := equalOrDiff(got, d.image(c.off, c.n)); diff != "" {
					t.Fatalf("buffered read [%d, +%d): %s", c.off, c.n, diff)
				}
			}

			// Past the end: the loop device refuses.
			step(t, "write past end", func() error {
				_, err := direct.WriteAt(alignedBuf(4096), 256<<20)
				if err == nil {
					return errors.New("write past the end succeeded")
				}
				return nil
			})

			// The FUSE file itself reads the same bytes.
			step(t, "read FUSE file", func() error {
				f, err := os.Open(path)
				if err != nil {
					return err
				}
				defer f.Close()
				got := make([]byte, len(data))
				if _, err := f.ReadAt(got, off); err != nil {
					return err
				}
				if diff := equalOrDiff(got, data); diff != "" {
					return fmt.Errorf("FUSE file: %s", diff)
				}
				return nil
			})
		})
	}
}

func TestFilesystem(t *testing.T) {
	cases := []struct {
		fstype string
		fsck   []string
	}{
		{"ext4", []string{"e2fsck", "-fn"}},
		{"xfs", []string{"xfs_repair", "-n"}},
	}
	for _, tc := range cases {
		t.Run(tc.fstype, func(t *testing.T) {
			requireTool(t, "mkfs."+tc.fstype)
			requireTool(t, tc.fsck[0])
			s := mustServe(t, Options{})
			d, path := mustAdd(t, s, tc.fstype, 512<<20, false)
			dev := mustAttach(t, s, path, LoopOptions{DirectIO: true})

			step(t, "mkfs", func() error { return Mkfs(dev, tc.fstype) })
			if d.zeroes.Load() == 0 {
				t.Errorf("mkfs.%s sent no discard or write-zeroes", tc.fstype)
			}
			t.Logf("after mkfs.%s: %d KiB mapped, %d WriteZeroes calls (%d MiB)",
				tc.fstype, d.MappedBytes()>>10, d.zeroes.Load(), d.zeroed.Load()>>20)

			mnt := filepath.Join(t.TempDir(), "mnt")
			step(t, "mount", func() error { return Mount(dev, mnt, tc.fstype, false, "") })
			if dir, ok := MountedAt(dev); !ok || dir != mnt {
				t.Errorf("MountedAt(%s) = %q, %v; want %q", dev, dir, ok, mnt)
			}
			syncs := d.syncs.Load()
			for i := range 16 {
				name := filepath.Join(mnt, fmt.Sprintf("f%d", i))
				step(t, "write file", func() error { return writeFileSync(name, pattern(i, 1<<20+i*1000)) })
			}
			if d.syncs.Load() == syncs {
				t.Errorf("fsync of files on %s did not reach Device.Sync", tc.fstype)
			}
			step(t, "freeze", func() error { return Freeze(mnt) })
			step(t, "thaw", func() error { return Thaw(mnt) })
			step(t, "unmount", func() error { return Unmount(mnt) })
			if _, ok := MountedAt(dev); ok {
				t.Errorf("still mounted after Unmount")
			}

			step(t, "fsck", func() error { return run(append(tc.fsck, dev)...) })

			step(t, "mount read-only", func() error { return Mount(dev, mnt, tc.fstype, true, "") })
			for i := range 16 {
				name := filepath.Join(mnt, fmt.Sprintf("f%d", i))
				var got []byte
				step(t, "read file", func() (err error) { got, err = os.ReadFile(name); return err })
				if diff := equalOrDiff(got, pattern(i, 1<<20+i*1000)); diff != "" {
					t.Fatalf("%s: %s", name, diff)
				}
			}
			step(t, "unmount", func() error { return Unmount(mnt) })
		})
	}
}

// TestDetachWhileMounted: Detach of a mounted loop device cannot unbind it
// yet; it reports ErrBusy, and the device unbinds by itself at unmount.
func TestDetachWhileMounted(t *testing.T) {
	requireTool(t, "mkfs.ext4")
	s := mustServe(t, Options{})
	_, path := mustAdd(t, s, "m", 64<<20, false)
	dev := mustAttach(t, s, path, LoopOptions{DirectIO: true})
	mnt := filepath.Join(t.TempDir(), "mnt")
	step(t, "mkfs", func() error { return Mkfs(dev, "ext4") })
	step(t, "mount", func() error { return Mount(dev, mnt, "ext4", false, "") })

	var err error
	step(t, "detach", func() error { err = Detach(dev); return nil })
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("Detach of a mounted loop device = %v, want ErrBusy", err)
	}
	if l, _ := Loops(path); len(l) != 1 || !l[0].AutoClear {
		t.Fatalf("after Detach: Loops = %+v, want one with AutoClear", l)
	}
	if err := s.Remove("m"); !errors.Is(err, ErrBusy) {
		t.Fatalf("Remove while mounted = %v, want ErrBusy", err)
	}
	step(t, "write", func() error { return writeFileSync(filepath.Join(mnt, "f"), pattern(1, 4096)) })
	step(t, "unmount", func() error { return Unmount(mnt) })
	if l, _ := Loops(path); len(l) != 0 {
		t.Fatalf("after unmount: Loops = %+v, want none", l)
	}
	step(t, "remove", func() error { return s.Remove("m") })
}

// writeFileSync writes a file and fsyncs it.
func writeFileSync(name string, data []byte) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// run runs a command and returns its output with any error.
func run(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func TestDiscard(t *testing.T) {
	requireTool(t, "blkdiscard")
	for _, tc := range dioCases {
		t.Run(tc.name, func(t *testing.T) {
			s := mustServe(t, Options{})
			d, path := mustAdd(t, s, "discard", 64<<20, false)
			dev := mustAttach(t, s, path, LoopOptions{DirectIO: tc.dio, BlockSize: tc.blockSize})
			f, err := os.OpenFile(dev, os.O_RDWR, 0)
			must(t, err)
			defer f.Close()

			for _, args := range [][]string{
				{"blkdiscard", "-o", "8M", "-l", "4M"},       // DISCARD: punch hole
				{"blkdiscard", "-z", "-o", "8M", "-l", "4M"}, // WRITE_ZEROES: zero range
			} {
				data := pattern(1, 6<<20)
				step(t, "write", func() error { _, err := f.WriteAt(data, 7<<20); return err })
				step(t, "fsync", f.Sync)
				// Read it once so any page cache holds the old data.
				step(t, "read", func() error { _, err := f.ReadAt(make([]byte, 6<<20), 7<<20); return err })
				zeroes, mapped := d.zeroes.Load(), d.mapped.Load()
				step(t, args[0], func() error { return run(append(args, dev)...) })
				if d.zeroes.Load() == zeroes {
					t.Fatalf("%v did not reach WriteZeroes", args)
				}
				if got := d.mapped.Load(); got != mapped-64 {
					t.Errorf("%v: mapped chunks %d -> %d, want %d fewer", args, mapped, got, 64)
				}
				want := append(append(data[:1<<20:1<<20], make([]byte, 4<<20)...), data[5<<20:]...)
				if diff := equalOrDiff(d.image(7<<20, 6<<20), want); diff != "" {
					t.Fatalf("%v: device %s", args, diff)
				}
				got := make([]byte, 6<<20)
				step(t, "read", func() error { _, err := f.ReadAt(got, 7<<20); return err })
				if diff := equalOrDiff(got, want); diff != "" {
					t.Fatalf("%v: loop device reads %s", args, diff)
				}
			}
		})
	}
}

func TestFsyncAndFlush(t *testing.T) {
	s := mustServe(t, Options{})
	d, path := mustAdd(t, s, "sync", 16<<20, false)
	dev := mustAttach(t, s, path, LoopOptions{DirectIO: true})

	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	step(t, "write", func() error { _, err := f.WriteAt(pattern(1, 8192), 4096); return err })
	before := d.syncs.Load()
	step(t, "fsync", f.Sync)
	if d.syncs.Load() == before {
		t.Fatal("fsync on the loop device did not reach Device.Sync")
	}

	// On the FUSE file: closing after a write syncs (Flush), closing a
	// read-only handle does not.
	before = d.syncs.Load()
	step(t, "open+read+close", func() error {
		g, err := os.Open(path)
		if err != nil {
			return err
		}
		g.Read(make([]byte, 512))
		return g.Close()
	})
	if n := d.syncs.Load() - before; n != 0 {
		t.Errorf("closing a read-only handle called Sync %d times", n)
	}
	step(t, "open+write+close", func() error {
		g, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		g.WriteAt([]byte("x"), 0)
		return g.Close()
	})
	if d.syncs.Load() == before {
		t.Error("closing a written handle did not call Sync")
	}
}

func TestRemoveBusy(t *testing.T) {
	s := mustServe(t, Options{})
	_, path := mustAdd(t, s, "busy", 16<<20, false)
	dev := mustAttach(t, s, path, LoopOptions{DirectIO: true})

	start := time.Now()
	err := s.Remove("busy")
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("Remove with a loop attached = %v, want ErrBusy", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Remove took %v", d)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("file gone after refused Remove: %v", err)
	}
	step(t, "detach", func() error { return Detach(dev) })
	if l, _ := Loops(path); len(l) != 0 {
		t.Fatalf("loop still bound after Detach: %+v", l)
	}
	step(t, "remove", func() error { return s.Remove("busy") })
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat after Remove: %v, want not exist", err)
	}
	if _, ok := s.Path("busy"); ok {
		t.Error("Path reports a removed device")
	}
	if err := s.Remove("busy"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove = %v, want ErrNotFound", err)
	}
	// The name can be served again.
	_, path2 := mustAdd(t, s, "busy", 32<<20, false)
	if fi, err := os.Stat(path2); err != nil || fi.Size() != 32<<20 {
		t.Errorf("re-added file: %v, %v", fi, err)
	}
	// Detach of an unbound device is fine.
	must(t, Detach(dev))
}

func TestReadOnly(t *testing.T) {
	s := mustServe(t, Options{})
	d, path := mustAdd(t, s, "ro", 16<<20, true)
	if _, err := d.WriteAt(pattern(3, 4096), 0); err != nil {
		t.Fatal(err)
	}
	writes := d.writes.Load()

	fi, err := os.Stat(path)
	must(t, err)
	if fi.Mode().Perm() != 0o400 {
		t.Errorf("mode %v, want 0400", fi.Mode())
	}
	if _, err := os.OpenFile(path, os.O_RDWR, 0); !errors.Is(err, syscall.EROFS) {
		t.Errorf("open read-only file for writing: %v, want EROFS", err)
	}
	if _, err := Attach(path, LoopOptions{}); !errors.Is(err, syscall.EROFS) {
		t.Errorf("read-write Attach of a read-only file: %v, want EROFS", err)
	}
	dev := mustAttach(t, s, path, LoopOptions{ReadOnly: true, DirectIO: true})
	if l, _ := Loops(path); len(l) != 1 || !l[0].ReadOnly {
		t.Errorf("Loops = %+v, want one read-only", l)
	}
	// Linux lets a read-only block device be opened for writing; the
	// writes fail.
	step(t, "write", func() error {
		f, err := os.OpenFile(dev, os.O_WRONLY|syscall.O_DIRECT, 0)
		if err != nil {
			return nil
		}
		defer f.Close()
		if _, err := f.WriteAt(alignedBuf(4096), 0); err == nil {
			return errors.New("wrote to a read-only loop device")
		}
		return nil
	})
	f, err := os.OpenFile(dev, os.O_RDONLY|syscall.O_DIRECT, 0)
	must(t, err)
	defer f.Close()
	got := alignedBuf(4096)
	step(t, "read", func() error { _, err := f.ReadAt(got, 0); return err })
	if diff := equalOrDiff(got, pattern(3, 4096)); diff != "" {
		t.Errorf("read-only loop reads %s", diff)
	}
	if err := run("blkdiscard", dev); err == nil {
		t.Error("blkdiscard of a read-only loop device succeeded")
	}
	if d.writes.Load() != writes || d.zeroes.Load() != 0 {
		t.Errorf("read-only device was written: %d writes, %d zeroes", d.writes.Load()-writes, d.zeroes.Load())
	}
}

func TestCloseBusy(t *testing.T) {
	s := mustServe(t, Options{})
	_, path := mustAdd(t, s, "c", 16<<20, false)
	dev := mustAttach(t, s, path, LoopOptions{DirectIO: true})

	var err error
	start := time.Now()
	step(t, "close", func() error { err = s.Close(); return nil })
	if !errors.Is(err, ErrBusy) || !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("Close with a loop attached = %v, want ErrBusy and EBUSY", err)
	}
	t.Logf("Close with a loop attached: %v after %v", err, time.Since(start))
	// Still serving.
	step(t, "read", func() error { return readDev(dev) })
	step(t, "detach", func() error { return Detach(dev) })
	step(t, "close", s.Close)
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Error("Done not closed after Close")
	}
	must(t, s.Close())
	if _, err := s.Add("x", newMemDevice(4096), false); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close = %v, want ErrClosed", err)
	}
}

// readDev reads the first 4 KiB of dev with O_DIRECT.
func readDev(dev string) error {
	f, err := os.OpenFile(dev, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.ReadAt(alignedBuf(4096), 0)
	return err
}

// TestAbort simulates the server dying: after the FUSE connection is
// aborted, I/O fails at once and teardown still works.
func TestAbort(t *testing.T) {
	for _, mounted := range []bool{false, true} {
		t.Run(fmt.Sprintf("mounted=%v", mounted), func(t *testing.T) {
			if mounted {
				requireTool(t, "mkfs.ext4")
			}
			s := mustServe(t, Options{})
			_, path := mustAdd(t, s, "a", 256<<20, false)
			dev := mustAttach(t, s, path, LoopOptions{DirectIO: true})
			mnt := filepath.Join(t.TempDir(), "mnt")
			if mounted {
				step(t, "mkfs", func() error { return Mkfs(dev, "ext4") })
				step(t, "mount", func() error { return Mount(dev, mnt, "ext4", false, "") })
				step(t, "write", func() error { return writeFileSync(filepath.Join(mnt, "a"), pattern(1, 1<<20)) })
			}

			must(t, s.Abort())
			select {
			case <-s.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("serving loops still running 5s after abort")
			}

			start := time.Now()
			err := deadline(5*time.Second, "read after abort", func() error { return readDev(dev) })
			if errnoOf(err) != syscall.EIO {
				t.Errorf("read on the loop device after abort: %v, want EIO", err)
			}
			t.Logf("read after abort failed after %v: %v", time.Since(start), err)
			if mounted {
				err := deadline(5*time.Second, "write file after abort", func() error {
					return writeFileSync(filepath.Join(mnt, "b"), pattern(2, 1<<20))
				})
				if err == nil || strings.Contains(err.Error(), "still blocked") {
					t.Errorf("write+fsync on ext4 after abort: %v, want an I/O error", err)
				}
				step(t, "unmount ext4", func() error { return Unmount(mnt) })
			}
			step(t, "detach", func() error { return Detach(dev) })
			if mounted {
				// A restarting process would find the dead mount.
				if _, err := Serve(s.Dir(), Options{}); !errors.Is(err, ErrStale) {
					t.Errorf("Serve on a dead mount = %v, want ErrStale", err)
				}
				step(t, "cleanup", func() error { return Cleanup(s.Dir()) })
			}
			step(t, "close", s.Close)
			if isMountPoint(s.Dir()) {
				t.Error("FUSE mount still there")
			}
		})
	}
}

// TestAbortUnblocks shows the way out of a stuck server: I/O that waits on
// it fails as soon as the connection is aborted.
func TestAbortUnblocks(t *testing.T) {
	s := mustServe(t, Options{CloseTimeout: time.Second})
	d, path := mustAdd(t, s, "stuck", 16<<20, false)
	dev := mustAttach(t, s, path, LoopOptions{DirectIO: true})
	gate := make(chan struct{})
	d.gate.Store(&gate)
	t.Cleanup(func() { close(gate) })

	res := make(chan error, 1)
	go func() { res <- readDev(dev) }()
	select {
	case err := <-res:
		t.Fatalf("read returned while the device was stuck: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	start := time.Now()
	must(t, s.Abort())
	select {
	case err := <-res:
		if errnoOf(err) != syscall.EIO {
			t.Errorf("stuck read after abort: %v, want EIO", err)
		}
		t.Logf("stuck read failed %v after abort: %v", time.Since(start), err)
	case <-time.After(5 * time.Second):
		t.Fatal("stuck read still blocked 5s after abort")
	}
	step(t, "detach", func() error { return Detach(dev) })
	// The read is still running in the Device: Close gives up after
	// CloseTimeout instead of waiting for it.
	var err error
	start = time.Now()
	step(t, "close", func() error { err = s.Close(); return nil })
	if !errors.Is(err, ErrAborted) {
		t.Errorf("Close with a request stuck in the Device = %v, want ErrAborted", err)
	}
	t.Logf("Close after %v: %v", time.Since(start), err)
	if isMountPoint(s.Dir()) {
		t.Error("FUSE mount still there")
	}
}

func TestErrno(t *testing.T) {
	errNoSpace := errors.New("test: no space")
	var mu sync.Mutex
	var logs []string
	s := mustServe(t, Options{
		Errno: func(err error) syscall.Errno {
			if errors.Is(err, errNoSpace) {
				return syscall.ENOSPC
			}
			return 0
		},
		Logf: func(format string, args ...any) {
			mu.Lock()
			logs = append(logs, fmt.Sprintf(format, args...))
			mu.Unlock()
		},
	})
	d, path := mustAdd(t, s, "e", 1<<20, false)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()

	cases := []struct {
		err  error
		want syscall.Errno
	}{
		{errNoSpace, syscall.ENOSPC},
		{fmt.Errorf("wrapped: %w", errNoSpace), syscall.ENOSPC},
		{syscall.EROFS, syscall.EROFS},
		{io.ErrUnexpectedEOF, syscall.EIO},
	}
	for _, c := range cases {
		d.failWith(c.err)
		for range 3 {
			var werr error
			step(t, "pwrite", func() error { _, werr = f.WriteAt([]byte("x"), 0); return nil })
			if errnoOf(werr) != c.want {
				t.Errorf("write failing with %v: %v, want %v", c.err, werr, c.want)
			}
		}
	}
	d.failWith(syscall.EIO)
	step(t, "pread", func() error {
		if _, err := f.ReadAt(make([]byte, 1), 0); errnoOf(err) != syscall.EIO {
			return fmt.Errorf("read: %v, want EIO", err)
		}
		return nil
	})
	d.failWith(nil)

	mu.Lock()
	defer mu.Unlock()
	var n int
	for _, l := range logs {
		if strings.Contains(l, ": write: ") {
			n++
		}
	}
	// One per errno kind: ENOSPC, EROFS, EIO.
	if n != 3 {
		t.Errorf("%d write errors logged, want 3:\n%s", n, strings.Join(logs, "\n"))
	}
}

func TestFileOps(t *testing.T) {
	s := mustServe(t, Options{BlockSize: 64 << 10})
	d, path := mustAdd(t, s, "ops", 8<<20, false)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	fd := int(f.Fd())

	step(t, "write", func() error { _, err := f.WriteAt(pattern(1, 4<<20), 0); return err })
	var st unix.Stat_t
	must(t, unix.Stat(path, &st))
	if st.Size != 8<<20 || st.Mode != unix.S_IFREG|0o600 || st.Blksize != 64<<10 || st.Blocks != 4<<20/512 {
		t.Errorf("stat: size %d mode %o blksize %d blocks %d", st.Size, st.Mode, st.Blksize, st.Blocks)
	}
	var sf unix.Statfs_t
	must(t, unix.Statfs(s.Dir(), &sf))
	if sf.Bsize != 64<<10 || sf.Blocks != 8<<20/(64<<10) {
		t.Errorf("statfs: bsize %d blocks %d", sf.Bsize, sf.Blocks)
	}

	cases := []struct {
		name      string
		mode      uint32
		off, n    int64
		want      syscall.Errno
		zeroCalls int64
	}{
		{"punch hole", unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE, 0, 64 << 10, 0, 1},
		{"zero range", unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE, 1 << 20, 100000, 0, 1},
		{"zero range past end", unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE, 8<<20 - 4096, 1 << 20, 0, 1},
		{"zero range growing", unix.FALLOC_FL_ZERO_RANGE, 8<<20 - 4096, 1 << 20, syscall.EFBIG, 0},
		{"allocate", 0, 0, 8 << 20, 0, 0},
		{"allocate growing", 0, 0, 9 << 20, syscall.EFBIG, 0},
		{"collapse range", unix.FALLOC_FL_COLLAPSE_RANGE, 0, 64 << 10, syscall.EOPNOTSUPP, 0},
	}
	for _, c := range cases {
		zeroes := d.zeroes.Load()
		var err error
		step(t, c.name, func() error { err = unix.Fallocate(fd, c.mode, c.off, c.n); return nil })
		if errnoOf(err) != c.want {
			t.Errorf("%s: fallocate = %v, want %v", c.name, err, c.want)
		}
		if got := d.zeroes.Load() - zeroes; got != c.zeroCalls {
			t.Errorf("%s: %d WriteZeroes calls, want %d", c.name, got, c.zeroCalls)
		}
	}
	want := pattern(1, 4<<20)
	clear(want[:64<<10])
	clear(want[1<<20 : 1<<20+100000])
	if diff := equalOrDiff(d.image(0, 4<<20), want); diff != "" {
		t.Errorf("after fallocate: device %s", diff)
	}
	got := make([]byte, 4<<20)
	step(t, "read", func() error { _, err := f.ReadAt(got, 0); return err })
	if diff := equalOrDiff(got, want); diff != "" {
		t.Errorf("after fallocate: file reads %s", diff)
	}

	if err := f.Truncate(4 << 20); errnoOf(err) != syscall.EINVAL {
		t.Errorf("truncate to a new size: %v, want EINVAL", err)
	}
	if err := f.Truncate(8 << 20); err != nil {
		t.Errorf("truncate to the same size: %v", err)
	}
	if err := f.Chmod(0o644); errnoOf(err) != syscall.EPERM {
		t.Errorf("chmod: %v, want EPERM", err)
	}
	if _, err := f.WriteAt([]byte("x"), 8<<20); errnoOf(err) != syscall.EFBIG {
		t.Errorf("write at the end: %v, want EFBIG", err)
	}
	if n, err := f.ReadAt(make([]byte, 10), 8<<20-4); n != 4 || err != io.EOF {
		t.Errorf("read across the end: %d, %v; want 4, EOF", n, err)
	}
	if _, err := os.Create(filepath.Join(s.Dir(), "new")); err == nil {
		t.Error("created a file in the FUSE root")
	}
	if names := s.Names(); len(names) != 1 || names[0] != "ops" {
		t.Errorf("Names = %v", names)
	}
	if _, err := s.Add("ops", newMemDevice(4096), false); !errors.Is(err, ErrExists) {
		t.Errorf("Add of a served name = %v, want ErrExists", err)
	}
	for _, bad := range []string{"", ".", "..", "a/b"} {
		if _, err := s.Add(bad, newMemDevice(4096), false); !errors.Is(err, ErrInvalid) {
			t.Errorf("Add(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestResize(t *testing.T) {
	s := mustServe(t, Options{})
	d, path := mustAdd(t, s, "grow", 64<<20, false)
	dev := mustAttach(t, s, path, LoopOptions{DirectIO: true})
	d.resize(128 << 20)
	step(t, "resized", func() error { return s.Resized("grow") })
	step(t, "set capacity", func() error { return SetCapacity(dev) })
	l, err := Loops(path)
	must(t, err)
	if len(l) != 1 || l[0].Size != 128<<20 {
		t.Fatalf("after resize: %+v, want size %d", l, 128<<20)
	}
	f, err := os.OpenFile(dev, os.O_RDWR|syscall.O_DIRECT, 0)
	must(t, err)
	defer f.Close()
	buf := alignedBuf(4096)
	copy(buf, pattern(5, 4096))
	step(t, "write in the new part", func() error { _, err := f.WriteAt(buf, 100<<20); return err })
	if diff := equalOrDiff(d.image(100<<20, 4096), buf); diff != "" {
		t.Errorf("device %s", diff)
	}
}

func TestAttachConcurrent(t *testing.T) {
	s := mustServe(t, Options{})
	const n = 6
	paths := make([]string, n)
	for i := range paths {
		_, paths[i] = mustAdd(t, s, fmt.Sprintf("c%d", i), 8<<20, false)
	}
	devs := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { devs[i], errs[i] = Attach(paths[i], LoopOptions{DirectIO: true}) })
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Errorf("attach %d: %v", i, errs[i])
			continue
		}
		t.Cleanup(func() { cleanupLoop(t, s, devs[i]) })
		if seen[devs[i]] {
			t.Errorf("%s attached twice", devs[i])
		}
		seen[devs[i]] = true
	}
	loops, err := Loops(s.Dir() + "/")
	must(t, err)
	if len(loops) != n {
		t.Errorf("Loops = %d devices, want %d", len(loops), n)
	}
}

func TestFioVerify(t *testing.T) {
	requireTool(t, "fio")
	s := mustServe(t, Options{})
	_, path := mustAdd(t, s, "fio", 128<<20, false)
	dev := mustAttach(t, s, path, LoopOptions{DirectIO: true})
	step(t, "fio", func() error {
		return run("fio", "--name=verify", "--filename="+dev, "--rw=randrw", "--bs=4k",
			"--size=64M", "--direct=1", "--ioengine=libaio", "--iodepth=16",
			"--verify=crc32c", "--verify_fatal=1", "--do_verify=1",
			// No local-*-verify.state file in the package directory.
			"--verify_state_save=0")
	})
}

func TestHelpers(t *testing.T) {
	if got := unescapeMountinfo(`/a\040b\134c`); got != `/a b\c` {
		t.Errorf("unescape = %q", got)
	}
	if c, ok := connOf("0:52"); !ok || c != 52 {
		t.Errorf("connOf(0:52) = %d, %v", c, ok)
	}
	if c, _ := connOf("1:2"); c != 1<<20|2 {
		t.Errorf("connOf(1:2) = %d", c)
	}
	for _, c := range []struct {
		err  error
		want syscall.Errno
	}{
		{syscall.ENOSPC, syscall.ENOSPC},
		{fmt.Errorf("x: %w", syscall.EROFS), syscall.EROFS},
		{&os.PathError{Op: "read", Err: syscall.EIO}, syscall.EIO},
		{errors.New("other"), syscall.EIO},
		{syscall.Errno(0), syscall.EIO},
	} {
		if got := DefaultErrno(c.err); got != c.want {
			t.Errorf("DefaultErrno(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	if err := markBusy(fmt.Errorf("x: %w", syscall.EBUSY)); !errors.Is(err, ErrBusy) || !errors.Is(err, syscall.EBUSY) {
		t.Errorf("markBusy = %v", err)
	}
	if err := Mkfs("/dev/null", "btrfs"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Mkfs btrfs = %v, want ErrInvalid", err)
	}
}

// TestWriteErr: the first failed write of a file is remembered (B5), with
// the errno the kernel saw and the Device's error, through later successful
// writes and syncs, until the file is removed; reads that fail are not
// writes.
func TestWriteErr(t *testing.T) {
	errNoSpace := errors.New("test: no space")
	s := mustServe(t, Options{Errno: func(err error) syscall.Errno {
		if errors.Is(err, errNoSpace) {
			return syscall.ENOSPC
		}
		return 0
	}})
	d, path := mustAdd(t, s, "w", 1<<20, false)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	step(t, "pwrite", func() error { _, err := f.WriteAt([]byte("ok"), 0); return err })
	d.failWith(syscall.EIO)
	step(t, "pread", func() error { _, _ = f.ReadAt(make([]byte, 1), 0); return nil })
	if werr, served := s.WriteErr("w"); !served || werr != nil {
		t.Fatalf("WriteErr after good writes and a failed read = %v, %v; want nil, true", werr, served)
	}
	d.failWith(fmt.Errorf("wrapped: %w", errNoSpace))
	step(t, "pwrite", func() error { _, _ = f.WriteAt([]byte("x"), 4096); return nil })
	d.failWith(syscall.EIO)
	step(t, "pwrite", func() error { _, _ = f.WriteAt([]byte("y"), 8192); return nil })
	d.failWith(nil)
	step(t, "pwrite+fsync", func() error {
		if _, err := f.WriteAt([]byte("z"), 0); err != nil {
			return err
		}
		return f.Sync()
	})
	werr, served := s.WriteErr("w")
	if !served || werr == nil {
		t.Fatalf("WriteErr after a failed write = %v, %v", werr, served)
	}
	if !errors.Is(werr, syscall.ENOSPC) || !errors.Is(werr, errNoSpace) || werr.Op != "write" || werr.Off != 4096 {
		t.Fatalf("WriteErr = %#v (%v), want the first failure: write at 4096, ENOSPC, errNoSpace", werr, werr)
	}
	must(t, f.Close())
	must(t, s.Remove("w"))
	if werr, served := s.WriteErr("w"); served || werr != nil {
		t.Fatalf("WriteErr of a removed file = %v, %v", werr, served)
	}
	mustAdd(t, s, "w", 1<<20, false)
	if werr, _ := s.WriteErr("w"); werr != nil {
		t.Fatalf("WriteErr of a file added again = %v", werr)
	}
}
