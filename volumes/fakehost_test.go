package volumes

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/thinpool/thinpool/blockdev"
	"github.com/thinpool/thinpool/thinpool"
)

// fakeHost is a Host that needs no root. The "filesystem" of a device is a
// tar stream kept in the device's own bytes:
//
//	0    magic "thinpool-fakefs\n" (16 bytes)
//	16   filesystem type, NUL-padded (8 bytes)
//	24   length of the tar stream, uint64 little-endian
//	512  the tar stream
//
// Mount extracts it into the directory; Sync and Unmount write the
// directory back into the device through thinpool.Thin.WriteAt, block by
// block and only the blocks that changed, as a filesystem would. So
// snapshots, copy-on-write, layer sizes and container commits go through
// the engine as they do through the kernel, and a full pool fails the
// write back as it fails a filesystem's writeback: Sync, UnmountChecked
// and Mkfs then return a *blockdev.WriteError.
//
// It is safe for concurrent use.
type fakeHost struct {
	pool *thinpool.Pool

	mu     sync.Mutex
	mounts map[string]*fakeMount // by directory
	binds  map[string]string     // mounted-on path -> source
	// before, if set, is called (without mu) before each Mkfs, GrowFS
	// and Mount with the operation and the device; an error fails it.
	before func(op, dev string) error
	// failWrites makes every write to a device fail, as a full pool does.
	failWrites map[string]bool
	// grown counts GrowFS calls by device.
	grown map[string]int
}

type fakeMount struct {
	dev      string
	readOnly bool
}

var _ Host = (*fakeHost)(nil)

func newFakeHost(p *thinpool.Pool) *fakeHost {
	return &fakeHost{pool: p, mounts: map[string]*fakeMount{}, binds: map[string]string{},
		failWrites: map[string]bool{}, grown: map[string]int{}}
}

const (
	fakeMagic     = "thinpool-fakefs\n"
	fakeHeaderLen = 512
)

// call runs the before hook.
func (h *fakeHost) call(op, dev string) error {
	h.mu.Lock()
	before := h.before
	h.mu.Unlock()
	if before == nil {
		return nil
	}
	return before(op, dev)
}

// busyLocked returns ErrBusy if dev is mounted. Called with mu held.
func (h *fakeHost) busyLocked(dev string) error {
	for dir, m := range h.mounts {
		if m.dev == dev {
			return reasonf(ErrBusy, "device %q is mounted at %s", dev, dir)
		}
	}
	return nil
}

func (h *fakeHost) Busy(dev string) error {
	if _, err := h.pool.Device(dev); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.busyLocked(dev)
}

func (h *fakeHost) Mkfs(dev, fstype string) error {
	if err := h.call("mkfs", dev); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.busyLocked(dev); err != nil {
		return err
	}
	t, err := h.pool.Device(dev)
	if err != nil {
		return err
	}
	var empty bytes.Buffer
	if err := tar.NewWriter(&empty).Close(); err != nil {
		return err
	}
	return h.writeFS(t, fstype, empty.Bytes())
}

func (h *fakeHost) GrowFS(dev, fstype string) error {
	if err := h.call("growfs", dev); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.busyLocked(dev); err != nil {
		return err
	}
	t, err := h.pool.Device(dev)
	if err != nil {
		return err
	}
	got, _, err := readFS(t)
	if err != nil {
		return err
	}
	if got != fstype {
		return fmt.Errorf("grow %s on %q: it holds %q", fstype, dev, got)
	}
	h.grown[dev]++ // a tar has no size to grow
	return nil
}

func (h *fakeHost) Mount(dev, dir string) error {
	dir = filepath.Clean(dir)
	if err := h.call("mount", dev); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.mounts[dir]; ok {
		return reasonf(ErrBusy, "something is mounted at %s", dir)
	}
	if err := h.busyLocked(dev); err != nil {
		return err
	}
	t, err := h.pool.Device(dev)
	if err != nil {
		return err
	}
	_, data, err := readFS(t)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := extract(data, dir); err != nil {
		return fmt.Errorf("mount %q: %w", dev, err)
	}
	h.mounts[dir] = &fakeMount{dev: dev, readOnly: t.Info().ReadOnly}
	return nil
}

func (h *fakeHost) Sync(dir string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	m, ok := h.mounts[filepath.Clean(dir)]
	if !ok {
		return NotMounted(dir)
	}
	return h.writeBack(m, filepath.Clean(dir))
}

func (h *fakeHost) Unmount(dir string) error {
	_, err := h.unmount(dir)
	return err
}

func (h *fakeHost) UnmountChecked(dir string) error {
	werr, err := h.unmount(dir)
	return firstCause(err, werr)
}

// unmount writes the directory back, empties it and forgets the mount. A
// failed write back does not keep the mount (the kernel unmounts anyway):
// it is returned as werr.
func (h *fakeHost) unmount(dir string) (werr, err error) {
	dir = filepath.Clean(dir)
	h.mu.Lock()
	defer h.mu.Unlock()
	m, ok := h.mounts[dir]
	if !ok {
		return nil, NotMounted(dir)
	}
	for p := range h.binds {
		if strings.HasPrefix(p, dir+"/") {
			return nil, fmt.Errorf("unmount %s: %w", dir, syscall.EBUSY)
		}
	}
	werr = h.writeBack(m, dir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return werr, err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return werr, err
		}
	}
	delete(h.mounts, dir)
	return werr, nil
}

func (h *fakeHost) Mounted(dir string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.mounts[filepath.Clean(dir)]
	_, bound := h.binds[filepath.Clean(dir)]
	return ok || bound
}

// Bind makes the mount point inside root and records the bind: the fake
// cannot show src there, so what a container writes to a volume is written
// at the volume's mount point.
func (h *fakeHost) Bind(root, target, src string, _ bool) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	root = filepath.Clean(root)
	if _, ok := h.mounts[root]; !ok {
		return "", NotMounted(root)
	}
	p := filepath.Join(root, filepath.Clean("/"+target))
	if err := os.MkdirAll(p, 0o755); err != nil {
		return "", err
	}
	if _, ok := h.binds[p]; ok {
		return "", fmt.Errorf("bind %s: %w", p, syscall.EBUSY)
	}
	h.binds[p] = src
	return p, nil
}

func (h *fakeHost) Unbind(path string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.binds[path]; !ok {
		return syscall.EINVAL
	}
	delete(h.binds, path)
	return nil
}

// mountedDevs lists the devices mounted now, sorted.
func (h *fakeHost) mountedDevs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, m := range h.mounts {
		out = append(out, m.dev)
	}
	sort.Strings(out)
	return out
}

// writeBack writes the directory of a read-write mount back to its device.
// Called with mu held.
func (h *fakeHost) writeBack(m *fakeMount, dir string) error {
	if m.readOnly {
		return nil
	}
	t, err := h.pool.Device(m.dev)
	if err != nil {
		return err
	}
	fstype, _, err := readFS(t)
	if err != nil {
		return err
	}
	data, err := archiveDir(dir)
	if err != nil {
		return err
	}
	return h.writeFS(t, fstype, data)
}

// writeFS writes a header and the tar stream data to t, only the blocks
// that differ from what t holds, and syncs. Called with mu held.
func (h *fakeHost) writeFS(t *thinpool.Thin, fstype string, data []byte) error {
	buf := make([]byte, fakeHeaderLen+len(data))
	copy(buf, fakeMagic)
	copy(buf[16:24], fstype)
	binary.LittleEndian.PutUint64(buf[24:], uint64(len(data)))
	copy(buf[fakeHeaderLen:], data)
	name := t.Info().Name
	fail := func(off int64, err error) error {
		return &blockdev.WriteError{Name: name, Op: "write", Off: off, Errno: syscall.EIO, Err: err}
	}
	if h.failWrites[name] {
		return fail(0, syscall.EIO)
	}
	bs := int(h.pool.BlockSize())
	old := make([]byte, bs)
	for off := 0; off < len(buf); off += bs {
		chunk := buf[off:min(off+bs, len(buf))]
		n, err := t.ReadAt(old[:len(chunk)], int64(off))
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if n == len(chunk) && bytes.Equal(old[:n], chunk) {
			continue
		}
		if _, err := t.WriteAt(chunk, int64(off)); err != nil {
			return fail(int64(off), err)
		}
	}
	if err := t.Sync(); err != nil {
		return fail(0, err)
	}
	return nil
}

// readFS returns the filesystem type and tar stream a device holds.
func readFS(t *thinpool.Thin) (string, []byte, error) {
	hdr := make([]byte, fakeHeaderLen)
	if _, err := t.ReadAt(hdr, 0); err != nil && !errors.Is(err, io.EOF) {
		return "", nil, err
	}
	if string(hdr[:16]) != fakeMagic {
		return "", nil, fmt.Errorf("device %q has no filesystem", t.Info().Name)
	}
	n := binary.LittleEndian.Uint64(hdr[24:])
	if n > uint64(t.Size()-fakeHeaderLen) {
		return "", nil, fmt.Errorf("device %q: a filesystem of %d bytes", t.Info().Name, n)
	}
	data := make([]byte, n)
	if _, err := t.ReadAt(data, fakeHeaderLen); err != nil && !errors.Is(err, io.EOF) {
		return "", nil, err
	}
	return strings.TrimRight(string(hdr[16:24]), "\x00"), data, nil
}

// archiveDir writes the tree under dir as a tar stream: directories,
// regular files and symlinks, with their modes and (as root) owners, in
// lexical order and with no times, so that the same tree gives the same
// bytes.
func archiveDir(dir string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		var link string
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		} else if !fi.Mode().IsRegular() && !fi.IsDir() {
			return nil // devices, fifos, sockets: not kept
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name, h.Uname, h.Gname = rel, "", ""
		h.ModTime, h.AccessTime, h.ChangeTime = unixEpoch, unixEpoch, unixEpoch
		h.Format = tar.FormatPAX
		if fi.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// unixEpoch is the time of every entry archiveDir writes.
var unixEpoch = time.Unix(0, 0)

// extract writes the tar stream data under dir. Directories get their
// modes last, so that a read-only one still takes its entries.
func extract(data []byte, dir string) error {
	tr := tar.NewReader(bytes.NewReader(data))
	root := os.Geteuid() == 0
	type dirMode struct {
		path string
		mode fs.FileMode
	}
	var dirs []dirMode
	for {
		h, err := tr.Next()
		if err == io.EOF {
			for i := len(dirs) - 1; i >= 0; i-- {
				if err := os.Chmod(dirs[i].path, dirs[i].mode); err != nil {
					return err
				}
			}
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			continue
		}
		if root {
			if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
				return err
			}
		}
		mode := fs.FileMode(h.Mode).Perm() | modeBits(h.Mode)
		switch h.Typeflag {
		case tar.TypeDir:
			dirs = append(dirs, dirMode{p, mode})
		case tar.TypeReg:
			if err := os.Chmod(p, mode); err != nil {
				return err
			}
		}
	}
}

// modeBits returns the setuid, setgid and sticky bits of a tar mode.
func modeBits(mode int64) fs.FileMode {
	var m fs.FileMode
	if mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}
