package layer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultMaxEntries is the entry limit when Options.MaxEntries is 0.
const DefaultMaxEntries = 1 << 20

// MaxNameLen is the longest entry name or link target Apply accepts, in bytes
// (PATH_MAX).
const MaxNameLen = unix.PathMax

// chunk is the copy buffer size and the hole granularity of regular files.
const chunk = 64 << 10

// zeros is compared against each chunk to find holes.
var zeros [chunk]byte

// Options bounds what a hostile archive can make Apply do. The zero value is
// ready to use.
type Options struct {
	// MaxEntries bounds the number of tar headers of every kind, whiteouts
	// and skipped ones included. 0 means DefaultMaxEntries; negative means
	// no limit.
	MaxEntries int
	// MaxFileSize bounds each regular file's size as its header claims it
	// (holes of sparse files included), checked before anything is written.
	// 0 means no limit beyond the filesystem's.
	MaxFileSize int64
	// NoSameOwner leaves every entry owned by the caller instead of the
	// header's uid and gid.
	NoSameOwner bool
	// Warn, if not nil, is called with an *EntryError for each xattr that
	// was skipped because the filesystem or kernel refused it.
	Warn func(err error)
}

// Stats counts what Apply did.
type Stats struct {
	Entries   int   // tar headers read, of every kind
	Files     int   // regular files written
	Dirs      int   // directory entries (created or updated)
	Symlinks  int   // symlinks created
	Hardlinks int   // hard links created
	Devices   int   // character and block devices and fifos created
	Whiteouts int   // ".wh.NAME" and opaque markers applied
	Bytes     int64 // regular file sizes, holes included
	Xattrs    int   // extended attributes set
	Warnings  int   // extended attributes skipped; see Options.Warn
}

// applier is the state of one Apply. Not safe for concurrent use.
type applier struct {
	ctx  context.Context
	o    Options
	root int // O_PATH descriptor of the root directory
	st   Stats

	// keep holds the cleaned path of every entry this layer wrote and of
	// all their ancestors. It is closed under parents: if p is in keep, so
	// is path.Dir(p), down to but excluding ".". Whiteouts never remove a
	// path in keep (W1).
	keep map[string]struct{}
	// dirs holds the times of this layer's directories by cleaned path, to
	// set at the end (T1). ino and dev identify the directory that entry
	// made; a directory replaced since is skipped.
	dirs map[string]dirTimes

	// pfd is an O_PATH descriptor of directory pdir, or -1. It stands for
	// pdir until pstale is set by a change that may alter how paths
	// resolve (a directory or symlink removed, a symlink or link made).
	// Such changes nearly always move the cache to another directory
	// first; the flag does not rely on that.
	pdir   string
	pfd    int
	pstale bool

	buf []byte // chunk bytes, allocated on first use
}

type dirTimes struct {
	dev, ino uint64
	ts       [2]unix.Timespec
}

// Apply reads an uncompressed tar stream (a layer's diff) and applies it to
// the directory root, whiteouts included; see the package doc. It returns
// what it did so far even on error. An error about one entry is an
// *EntryError; the context's error is returned wrapped when ctx ends.
func Apply(ctx context.Context, root string, r io.Reader, o Options) (Stats, error) {
	if o.MaxEntries == 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Stats{}, fmt.Errorf("layer: open root: %w", &os.PathError{Op: "open", Path: root, Err: err})
	}
	a := &applier{
		ctx:  ctx,
		o:    o,
		root: fd,
		keep: make(map[string]struct{}),
		dirs: make(map[string]dirTimes),
		pfd:  -1,
	}
	defer a.close()
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return a.st, fmt.Errorf("layer: %w", err)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return a.st, fmt.Errorf("layer: read tar after %d entries: %w", a.st.Entries, err)
		}
		a.st.Entries++
		if o.MaxEntries > 0 && a.st.Entries > o.MaxEntries {
			return a.st, errf(ErrTooManyEntries, "more than %d", o.MaxEntries)
		}
		if err := a.entry(hdr, tr); err != nil {
			return a.st, &EntryError{Name: shortName(hdr.Name), Err: err}
		}
	}
	return a.st, a.finishDirs()
}

// shortName bounds a hostile name for error messages.
func shortName(name string) string {
	if len(name) <= MaxNameLen {
		return name
	}
	return fmt.Sprintf("%s...(%d bytes)", name[:256], len(name))
}

func (a *applier) close() {
	if a.pfd >= 0 {
		unix.Close(a.pfd)
		a.pfd = -1
	}
	unix.Close(a.root)
}

// entry applies one header; r reads its data.
func (a *applier) entry(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	dir, base := split(name)
	if skip, err := checkWhiteoutDirs(dir); skip || err != nil {
		return err
	}
	switch {
	case base == opaqueMarker:
		return a.opaque(dir)
	case strings.HasPrefix(base, metaPrefix):
		return nil // AUFS metadata
	case strings.HasPrefix(base, whiteoutPrefix):
		return a.whiteout(dir, base[len(whiteoutPrefix):])
	case name == ".":
		return nil // the root itself; see the package doc
	}
	if err := checkHeader(hdr, a.o); err != nil {
		return err
	}
	pfd, err := a.parent(dir, true)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse:
		err = a.file(pfd, name, base, hdr, r)
	case tar.TypeDir:
		err = a.dir(pfd, name, base, hdr)
	case tar.TypeSymlink:
		err = a.symlink(pfd, name, base, hdr)
	case tar.TypeLink:
		err = a.hardlink(pfd, name, base, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		err = a.device(pfd, name, base, hdr)
	default:
		err = errf(ErrInvalid, "unsupported type %q", hdr.Typeflag)
	}
	if err != nil {
		return err
	}
	a.markKept(name)
	return nil
}

// checkHeader validates the fields Apply passes to syscalls.
func checkHeader(hdr *tar.Header, o Options) error {
	const maxID = math.MaxUint32 - 1 // (uid_t)-1 means "unchanged"
	if hdr.Uid < 0 || int64(hdr.Uid) > maxID || hdr.Gid < 0 || int64(hdr.Gid) > maxID {
		return errf(ErrInvalid, "uid/gid %d/%d", hdr.Uid, hdr.Gid)
	}
	if len(hdr.Linkname) > MaxNameLen {
		return errf(ErrInvalid, "link target is %d bytes, limit %d", len(hdr.Linkname), MaxNameLen)
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse:
		if hdr.Size < 0 {
			return errf(ErrInvalid, "size %d", hdr.Size)
		}
		if o.MaxFileSize > 0 && hdr.Size > o.MaxFileSize {
			return errf(ErrFileTooLarge, "%d bytes, limit %d", hdr.Size, o.MaxFileSize)
		}
	case tar.TypeChar, tar.TypeBlock:
		if hdr.Devmajor < 0 || hdr.Devmajor > math.MaxUint32 || hdr.Devminor < 0 || hdr.Devminor > math.MaxUint32 {
			return errf(ErrInvalid, "device %d:%d", hdr.Devmajor, hdr.Devminor)
		}
	}
	return nil
}

// file writes a regular file to a new inode.
func (a *applier) file(pfd int, name, base string, hdr *tar.Header, r io.Reader) error {
	if _, err := a.replace(pfd, name, base, false); err != nil {
		return err
	}
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "create", Path: name, Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	err = a.writeData(f, r, hdr.Size)
	if err == nil {
		err = a.fdMeta(fd, name, hdr)
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := setTimes(pfd, name, base, hdr); err != nil {
		return err
	}
	a.st.Files++
	a.st.Bytes += hdr.Size
	return nil
}

// writeData copies size bytes from r to f, leaving all-zero chunks as holes.
func (a *applier) writeData(f *os.File, r io.Reader, size int64) error {
	if a.buf == nil && size > 0 {
		a.buf = make([]byte, chunk)
	}
	var off int64
	for i := 0; off < size; i++ {
		if i%16 == 15 {
			if err := a.ctx.Err(); err != nil {
				return err
			}
		}
		b := a.buf[:min(int64(len(a.buf)), size-off)]
		n, err := io.ReadFull(r, b)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("read data at offset %d: %w", off+int64(n), err)
		}
		if string(b) != string(zeros[:n]) { // compiles to memequal, no copy
			if _, err := f.WriteAt(b, off); err != nil {
				return err
			}
		}
		off += int64(n)
	}
	return f.Truncate(size) // extends a trailing hole
}

// dir creates a directory or updates an existing one; its times wait for
// finishDirs.
func (a *applier) dir(pfd int, name, base string, hdr *tar.Header) error {
	exists, err := a.replace(pfd, name, base, true)
	if err != nil {
		return err
	}
	if !exists {
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
			return &os.PathError{Op: "mkdirat", Path: name, Err: err}
		}
	}
	fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(fd)
	if err := a.fdMeta(fd, name, hdr); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "fstat", Path: name, Err: err}
	}
	a.dirs[name] = dirTimes{dev: st.Dev, ino: st.Ino, ts: timespecs(hdr)}
	a.st.Dirs++
	return nil
}

func (a *applier) symlink(pfd int, name, base string, hdr *tar.Header) error {
	if _, err := a.replace(pfd, name, base, false); err != nil {
		return err
	}
	a.pstale = true // the new symlink may be a component of the cached path
	if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
		return &os.PathError{Op: "symlinkat", Path: name, Err: err}
	}
	if err := a.pathMeta(pfd, name, base, hdr, false); err != nil {
		return err
	}
	a.st.Symlinks++
	return nil
}

// hardlink links base to hdr.Linkname, resolved inside root like any name.
// The final component of the target is not followed: a link to a symlink is
// a second name for the symlink.
func (a *applier) hardlink(pfd int, name, base string, hdr *tar.Header) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("link target: %w", err)
	}
	if target == "." {
		return errf(ErrInvalid, "hard link to the root")
	}
	tdir, tbase := split(target)
	tfd, err := a.openDir(tdir, false)
	if isNotExist(err) {
		return errf(ErrInvalid, "hard link target %q does not exist", hdr.Linkname)
	}
	if err != nil {
		return fmt.Errorf("link target %q: %w", hdr.Linkname, err)
	}
	defer unix.Close(tfd)
	var tst, st unix.Stat_t
	if err := unix.Fstatat(tfd, tbase, &tst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return errf(ErrInvalid, "hard link target %q does not exist", hdr.Linkname)
		}
		return &os.PathError{Op: "fstatat", Path: target, Err: err}
	}
	if tst.Mode&unix.S_IFMT == unix.S_IFDIR {
		return errf(ErrInvalid, "hard link to directory %q", hdr.Linkname)
	}
	err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == nil && st.Dev == tst.Dev && st.Ino == tst.Ino {
		a.st.Hardlinks++
		return nil // already this inode, e.g. a link to itself
	}
	if _, err := a.replace(pfd, name, base, false); err != nil {
		return err
	}
	a.pstale = true // the link may be a symlink
	if err := unix.Linkat(tfd, tbase, pfd, base, 0); err != nil {
		return &os.LinkError{Op: "linkat", Old: target, New: name, Err: err}
	}
	a.st.Hardlinks++
	return nil
}

// device makes a character or block device or a fifo.
func (a *applier) device(pfd int, name, base string, hdr *tar.Header) error {
	var mode uint32
	var dev uint64
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode, dev = unix.S_IFCHR, unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	case tar.TypeBlock:
		mode, dev = unix.S_IFBLK, unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	default:
		mode = unix.S_IFIFO
	}
	if _, err := a.replace(pfd, name, base, false); err != nil {
		return err
	}
	if err := unix.Mknodat(pfd, base, mode|0o600, int(dev)); err != nil {
		return &os.PathError{Op: "mknodat", Path: name, Err: err}
	}
	if err := a.pathMeta(pfd, name, base, hdr, true); err != nil {
		return err
	}
	a.st.Devices++
	return nil
}

// fdMeta sets owner, mode and xattrs through an open descriptor.
func (a *applier) fdMeta(fd int, name string, hdr *tar.Header) error {
	if !a.o.NoSameOwner {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return &os.PathError{Op: "fchown", Path: name, Err: err}
		}
	}
	if err := unix.Fchmod(fd, uint32(hdr.Mode&0o7777)); err != nil {
		return &os.PathError{Op: "fchmod", Path: name, Err: err}
	}
	return a.xattrs(name, hdr, func(k string, v []byte) error {
		return unix.Fsetxattr(fd, k, v, 0)
	})
}

// pathMeta sets owner, mode (if chmod), xattrs and times of pfd/base, never
// following base.
func (a *applier) pathMeta(pfd int, name, base string, hdr *tar.Header, chmod bool) error {
	if !a.o.NoSameOwner {
		if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "fchownat", Path: name, Err: err}
		}
	}
	if chmod {
		mode := uint32(hdr.Mode & 0o7777)
		err := unix.Fchmodat(pfd, base, mode, unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.EOPNOTSUPP {
			// No fchmodat2 (Linux < 6.6). base is the node just made with
			// O_EXCL semantics, not a symlink (C1 needs a single writer).
			err = unix.Fchmodat(pfd, base, mode, 0)
		}
		if err != nil {
			return &os.PathError{Op: "fchmodat", Path: name, Err: err}
		}
	}
	err := a.xattrs(name, hdr, func(k string, v []byte) error {
		// /proc/self/fd/N is our own descriptor; lsetxattr does not
		// follow base.
		return unix.Lsetxattr(fmt.Sprintf("/proc/self/fd/%d/%s", pfd, base), k, v, 0)
	})
	if err != nil {
		return err
	}
	return setTimes(pfd, name, base, hdr)
}

// xattrs sets the entry's SCHILY.xattr.* records with set, skipping the
// ones the kernel refuses as unsupported.
func (a *applier) xattrs(name string, hdr *tar.Header, set func(k string, v []byte) error) error {
	const prefix = "SCHILY.xattr."
	if len(hdr.PAXRecords) == 0 {
		return nil
	}
	for _, rec := range slices.Sorted(maps.Keys(hdr.PAXRecords)) {
		k, ok := strings.CutPrefix(rec, prefix)
		if !ok {
			continue
		}
		err := set(k, []byte(hdr.PAXRecords[rec]))
		switch {
		case err == nil:
			a.st.Xattrs++
		case softXattrError(err):
			a.st.Warnings++
			if a.o.Warn != nil {
				a.o.Warn(&EntryError{Name: shortName(hdr.Name), Err: fmt.Errorf("xattr %q skipped: %w", k, err)})
			}
		default:
			return &os.PathError{Op: "setxattr " + k, Path: name, Err: err}
		}
	}
	return nil
}

func softXattrError(err error) bool {
	switch {
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES),
		errors.Is(err, unix.EINVAL), errors.Is(err, unix.E2BIG), errors.Is(err, unix.ERANGE):
		return true
	}
	return false
}

// timespecs returns the entry's access and modification times; a missing
// access time is the modification time.
func timespecs(hdr *tar.Header) [2]unix.Timespec {
	at := hdr.AccessTime
	if at.IsZero() {
		at = hdr.ModTime
	}
	return [2]unix.Timespec{timespec(at), timespec(hdr.ModTime)}
}

func timespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

func setTimes(pfd int, name, base string, hdr *tar.Header) error {
	ts := timespecs(hdr)
	if err := unix.UtimesNanoAt(pfd, base, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimensat", Path: name, Err: err}
	}
	return nil
}

// finishDirs sets the times of this layer's directories (T1).
func (a *applier) finishDirs() error {
	names := slices.Collect(maps.Keys(a.dirs))
	sort.Strings(names) // siblings share a parent descriptor
	for _, name := range names {
		if err := a.ctx.Err(); err != nil {
			return fmt.Errorf("layer: %w", err)
		}
		d := a.dirs[name]
		dir, base := split(name)
		pfd, err := a.parent(dir, false)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			continue // removed by a later entry
		}
		if err != nil {
			return &EntryError{Name: name, Err: err}
		}
		var st unix.Stat_t
		if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Dev != d.dev || st.Ino != d.ino {
			continue // replaced by a later entry
		}
		if err := unix.UtimesNanoAt(pfd, base, d.ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &EntryError{Name: name, Err: &os.PathError{Op: "utimensat", Path: name, Err: err}}
		}
	}
	return nil
}
