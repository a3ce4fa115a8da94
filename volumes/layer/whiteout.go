package layer

import (
	"errors"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Whiteout names. Part of the OCI layer format; see the package doc,
// "Whiteouts".
const (
	whiteoutPrefix = ".wh."
	metaPrefix     = ".wh..wh."
	opaqueMarker   = ".wh..wh..opq"
)

// checkWhiteoutDirs looks at the directory components of an entry name: an
// entry under AUFS metadata (".wh..wh.plnk/...") is skipped, as Docker does;
// one under a whiteout (".wh.x/y") is malformed.
func checkWhiteoutDirs(dir string) (skip bool, err error) {
	if !strings.Contains(dir, whiteoutPrefix) {
		return false, nil
	}
	for comp := range strings.SplitSeq(dir, "/") {
		switch {
		case strings.HasPrefix(comp, metaPrefix):
			return true, nil
		case strings.HasPrefix(comp, whiteoutPrefix):
			return false, errf(ErrInvalid, "whiteout %q used as a directory", comp)
		}
	}
	return false, nil
}

// markKept records that this layer wrote name (W1), keeping keep closed
// under parents.
func (a *applier) markKept(name string) {
	for p := name; p != "."; p, _ = split(p) {
		if _, ok := a.keep[p]; ok {
			return // and so are its parents
		}
		a.keep[p] = struct{}{}
	}
}

// whiteout removes dir/name as lower layers left it.
func (a *applier) whiteout(dir, name string) error {
	if name == "" || name == "." || name == ".." {
		return errf(ErrInvalid, "whiteout of %q", name)
	}
	a.st.Whiteouts++
	pfd, err := a.parent(dir, false)
	if err != nil {
		if isNotExist(err) {
			return nil // nothing to hide
		}
		return err
	}
	target := join(dir, name)
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return nil
		}
		return &os.PathError{Op: "fstatat", Path: target, Err: err}
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if _, ok := a.keep[target]; !ok {
		return a.remove(pfd, target, name, isDir || st.Mode&unix.S_IFMT == unix.S_IFLNK)
	}
	if !isDir {
		return nil // this layer's own file
	}
	fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: target, Err: err}
	}
	return a.removeLower(fd, target)
}

// opaque makes dir an opaque directory: a real directory (made, or put in
// place of a non-directory) holding only what this layer wrote.
func (a *applier) opaque(dir string) error {
	a.st.Whiteouts++
	var fd int
	var err error
	if dir == "." {
		fd, err = unix.Openat(a.root, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return &os.PathError{Op: "open", Path: dir, Err: err}
		}
	} else if fd, err = a.ensureDir(dir); err != nil {
		return err
	}
	if err := a.removeLower(fd, dir); err != nil {
		return err
	}
	a.markKept(dir)
	return nil
}

// ensureDir opens dir for reading, making it a directory if it is missing
// or something else. Its final component is not followed.
func (a *applier) ensureDir(name string) (int, error) {
	dir, base := split(name)
	pfd, err := a.parent(dir, true)
	if err != nil {
		return -1, err
	}
	exists, err := a.replace(pfd, name, base, true)
	if err != nil {
		return -1, err
	}
	if !exists {
		if err := unix.Mkdirat(pfd, base, 0o755); err != nil {
			return -1, &os.PathError{Op: "mkdirat", Path: name, Err: err}
		}
	}
	fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return fd, nil
}

// removeLower removes what lower layers left in directory fd (clean path
// dir): every child not in keep, and recursively inside kept directories.
// It closes fd.
func (a *applier) removeLower(fd int, dir string) error {
	f := os.NewFile(uintptr(fd), dir)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, n := range names {
		child := join(dir, n)
		var st unix.Stat_t
		if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if err == unix.ENOENT {
				continue
			}
			return &os.PathError{Op: "fstatat", Path: child, Err: err}
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if _, ok := a.keep[child]; !ok {
			if err := a.remove(fd, child, n, isDir || st.Mode&unix.S_IFMT == unix.S_IFLNK); err != nil {
				return err
			}
			continue
		}
		if !isDir {
			continue
		}
		cfd, err := unix.Openat(fd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return &os.PathError{Op: "open", Path: child, Err: err}
		}
		if err := a.removeLower(cfd, child); err != nil {
			return err
		}
	}
	return nil
}

func isNotExist(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR)
}
