package thinpool

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/thinpool/thinpool/errdefs"
)

// File is the pool's backing storage. All pool I/O goes through it, so tests
// can substitute a file that fails or loses unsynced writes. Implementations
// must be safe for concurrent use.
type File interface {
	io.ReaderAt
	io.WriterAt
	// Sync makes every completed write durable (fdatasync).
	Sync() error
	// Truncate sets the size of the file.
	Truncate(size int64) error
	// Size returns the size of the file.
	Size() (int64, error)
	// PunchHole deallocates [off, off+n): reads return zeros afterwards and
	// the host file system may reclaim the space. The size is unchanged.
	PunchHole(off, n int64) error
	Close() error
}

// directWriter is a File that can write large aligned ranges around the
// host page cache.
type directWriter interface {
	// WriteDirect writes b at off with direct I/O and reports whether it
	// did; when it did not (b or off not aligned, no direct I/O on this
	// file system), the caller writes b the ordinary way. Sync makes the
	// write durable, as for WriteAt.
	WriteDirect(b []byte, off int64) (bool, error)
}

// osFile is a File on a host file, locked with flock for exclusive use.
type osFile struct {
	f *os.File
	// direct is the same file opened with O_DIRECT, for WriteDirect, or
	// nil when the file system has no direct I/O (tmpfs).
	direct *os.File
	// noDirect is set when a direct write failed with EINVAL: the file
	// system takes O_DIRECT at open but not for writes.
	noDirect atomic.Bool
	bufs     sync.Pool // of *[]byte: directAlign-aligned, directChunk long
}

var _ File = (*osFile)(nil)

func (o *osFile) ReadAt(b []byte, off int64) (int, error)  { return o.f.ReadAt(b, off) }
func (o *osFile) WriteAt(b []byte, off int64) (int, error) { return o.f.WriteAt(b, off) }
func (o *osFile) Sync() error                              { return unix.Fdatasync(int(o.f.Fd())) }
func (o *osFile) Truncate(size int64) error                { return o.f.Truncate(size) }

func (o *osFile) Close() error {
	if o.direct != nil {
		o.direct.Close()
	}
	return o.f.Close()
}

// directAlign is the alignment of offsets, lengths and buffers of direct
// writes: the largest logical block size of a Linux block device.
const directAlign = 4096

// directChunk is the most a direct write moves at once (its bounce buffer).
const directChunk = 1 << 20

// WriteDirect writes b at off with O_DIRECT, through an aligned bounce
// buffer, when off and len(b) are multiples of directAlign. On this
// machine's virtual disk a buffered write and fdatasync moves data at less
// than half the rate of a direct write (bench/results/REPORT.md), and a
// large write is not read back soon, so the page cache buys nothing for
// it. A direct write also drops any cached copy of the range, so buffered
// reads afterwards see the new data.
// REF: https://man7.org/linux/man-pages/man2/open.2.html (O_DIRECT)
func (o *osFile) WriteDirect(b []byte, off int64) (bool, error) {
	if o.direct == nil || o.noDirect.Load() || off%directAlign != 0 || len(b)%directAlign != 0 {
		return false, nil
	}
	bp, _ := o.bufs.Get().(*[]byte)
	if bp == nil {
		raw := make([]byte, directChunk+directAlign)
		skip := 0
		if r := int(uintptr(unsafe.Pointer(&raw[0])) % directAlign); r != 0 {
			skip = directAlign - r
		}
		buf := raw[skip : skip+directChunk]
		bp = &buf
	}
	defer o.bufs.Put(bp)
	for done := 0; done < len(b); {
		n := copy(*bp, b[done:])
		if _, err := o.direct.WriteAt((*bp)[:n], off+int64(done)); err != nil {
			if done == 0 && errors.Is(err, unix.EINVAL) {
				o.noDirect.Store(true)
				return false, nil
			}
			return true, err
		}
		done += n
	}
	return true, nil
}

func (o *osFile) Size() (int64, error) {
	fi, err := o.f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// REF: https://man7.org/linux/man-pages/man2/fallocate.2.html
func (o *osFile) PunchHole(off, n int64) error {
	err := unix.Fallocate(int(o.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if errors.Is(err, unix.EOPNOTSUPP) {
		return o.writeZeros(off, n)
	}
	return err
}

func (o *osFile) writeZeros(off, n int64) error {
	zero := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, int64(len(zero)))
		if _, err := o.f.WriteAt(zero[:k], off); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

// openLocked opens path and takes an exclusive flock on it, failing with
// ErrLocked (naming the holder's pid when /proc/locks shows it) if another
// open file description holds it. A missing file or a permission error is
// worded with the path and matches errdefs.ErrNotFound or
// errdefs.ErrPermission as well as the *fs.PathError.
func openLocked(path string, flag int) (*osFile, error) {
	f, err := os.OpenFile(path, flag, 0o600)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, errdefs.Wrapf(err, errdefs.ErrNotFound, "pool %s does not exist", path)
	case errors.Is(err, fs.ErrPermission):
		return nil, errdefs.Wrapf(err, errdefs.ErrPermission, "pool %s: permission denied", path)
	case err != nil:
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			if pid := lockHolder(f); pid > 0 {
				return nil, errdefs.Newf(ErrLocked, "pool %s is in use by pid %d", path, pid)
			}
			return nil, errdefs.Newf(ErrLocked, "pool %s is in use", path)
		}
		return nil, err
	}
	o := &osFile{f: f}
	// The same file again for direct writes; file systems without
	// O_DIRECT refuse the open, and then every write is buffered.
	if flag&unix.O_ACCMODE != unix.O_RDONLY {
		if d, err := os.OpenFile(path, unix.O_RDWR|unix.O_DIRECT, 0); err == nil {
			o.direct = d
		}
	}
	return o, nil
}

// lockHolder returns the pid that /proc/locks gives for a flock on f's inode.
func lockHolder(f *os.File) int {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0
	}
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	pl, err := os.Open("/proc/locks")
	if err != nil {
		return 0
	}
	defer pl.Close()
	sc := bufio.NewScanner(pl)
	for sc.Scan() {
		// 1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF
		fields := strings.Fields(sc.Text())
		if len(fields) >= 6 && fields[1] == "FLOCK" && fields[5] == want {
			if pid, err := strconv.Atoi(fields[4]); err == nil {
				return pid
			}
		}
	}
	return 0
}
