package bench

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/thinpool/thinpool/thinpool"
)

// metaFile is a pool file that keeps the pool's metadata and drops its
// data: a write at or after dataOff returns success without writing, so the
// data area stays a hole and reads there return zeros. The engine still does
// all the work of every write (allocation, mapping, the whole-block write of
// Z1); only the bytes never reach the host file. The snapshot and metadata
// workloads build pools of up to 100 GiB of mapped blocks with it in
// seconds: neither reads data back, and what they measure depends only on
// the metadata. thinpool's BenchmarkOpen builds its pool the same way.
//
// It is safe for concurrent use once dataOff is set.
type metaFile struct {
	f *os.File
	// dataOff is the file offset of the pool's data area; it is
	// math.MaxInt64 while the pool is being created.
	dataOff int64
}

var _ thinpool.File = (*metaFile)(nil)

func (m *metaFile) ReadAt(b []byte, off int64) (int, error) { return m.f.ReadAt(b, off) }
func (m *metaFile) Sync() error                             { return unix.Fdatasync(int(m.f.Fd())) }
func (m *metaFile) Truncate(size int64) error               { return m.f.Truncate(size) }
func (m *metaFile) Close() error                            { return m.f.Close() }

func (m *metaFile) WriteAt(b []byte, off int64) (int, error) {
	if off >= m.dataOff {
		return len(b), nil
	}
	return m.f.WriteAt(b, off)
}

func (m *metaFile) Size() (int64, error) {
	fi, err := m.f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// REF: https://man7.org/linux/man-pages/man2/fallocate.2.html
func (m *metaFile) PunchHole(off, n int64) error {
	return unix.Fallocate(int(m.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}

// createMetaPool creates a pool file at path (which must not exist) on a
// metaFile. Close the pool and open the file with thinpool.Open to use it
// as an ordinary pool: its data area reads as zeros.
func createMetaPool(path string, o thinpool.Options) (*thinpool.Pool, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	mf := &metaFile{f: f, dataOff: math.MaxInt64}
	p, err := thinpool.CreateFile(mf, o) // owns f, even on error
	if err != nil {
		return nil, errors.Join(err, os.Remove(path))
	}
	mf.dataOff = p.Usage().DataOffset
	return p, nil
}

// allocated is the space the file at path takes on its file system.
func allocated(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, errors.New("bench: no block count for " + path)
	}
	return st.Blocks * 512, nil
}

// fillBlock fills b with pseudo-random bytes that differ for every seed:
// word k of b is a hash of seed×(words in b)+k (splitmix64's finaliser),
// cheap and never the same for two blocks of one length.
func fillBlock(b []byte, seed uint64) {
	n := uint64(len(b) / 8)
	for k := range n {
		z := (seed*n + k + 1) * 0x9e3779b97f4a7c15
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		binary.LittleEndian.PutUint64(b[8*k:], z^z>>31)
	}
}
