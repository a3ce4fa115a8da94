package thinpool

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
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

// osFile is a File on a host file, locked with flock for exclusive use.
type osFile struct {
	f *os.File
}

var _ File = (*osFile)(nil)

func (o *osFile) ReadAt(b []byte, off int64) (int, error)  { return o.f.ReadAt(b, off) }
func (o *osFile) WriteAt(b []byte, off int64) (int, error) { return o.f.WriteAt(b, off) }
func (o *osFile) Sync() error                              { return unix.Fdatasync(int(o.f.Fd())) }
func (o *osFile) Truncate(size int64) error                { return o.f.Truncate(size) }
func (o *osFile) Close() error                             { return o.f.Close() }

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
// open file description holds it.
func openLocked(path string, flag int) (*osFile, error) {
	f, err := os.OpenFile(path, flag, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			if pid := lockHolder(f); pid > 0 {
				return nil, fmt.Errorf("%w by pid %d", ErrLocked, pid)
			}
			return nil, ErrLocked
		}
		return nil, err
	}
	return &osFile{f: f}, nil
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
