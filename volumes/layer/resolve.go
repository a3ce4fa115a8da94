package layer

import (
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// cleanName turns an entry name or hard link target into a clean path
// relative to root, "." for root itself; see the package doc, "Names".
func cleanName(name string) (string, error) {
	switch {
	case name == "":
		return "", errf(ErrInvalid, "empty name")
	case len(name) > MaxNameLen:
		return "", errf(ErrInvalid, "name is %d bytes, limit %d", len(name), MaxNameLen)
	case strings.IndexByte(name, 0) >= 0:
		return "", errf(ErrInvalid, "NUL in name")
	}
	p := path.Clean(name) // "/../x" is "/x": above "/" is "/"
	if p[0] == '/' {
		p = strings.TrimLeft(p, "/")
		if p == "" {
			p = "."
		}
	}
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", ErrEscape
	}
	return p, nil
}

// split splits a clean relative path into its parent ("." at the top) and
// final component.
func split(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ".", p
	}
	return p[:i], p[i+1:]
}

// join joins a clean relative path and a name.
func join(dir, base string) string {
	if dir == "." {
		return base
	}
	return dir + "/" + base
}

// parent returns an O_PATH descriptor of directory dir (clean, relative to
// root), owned by the cache: callers must not close it. With create, missing
// directories are made.
func (a *applier) parent(dir string, create bool) (int, error) {
	if a.pfd >= 0 && !a.pstale && a.pdir == dir {
		return a.pfd, nil
	}
	if a.pfd >= 0 {
		unix.Close(a.pfd)
		a.pfd = -1
	}
	fd, err := a.openDir(dir, create)
	if err != nil {
		return -1, err
	}
	a.pdir, a.pfd, a.pstale = dir, fd, false
	return fd, nil
}

// openDir returns a new O_PATH descriptor of directory dir, resolved inside
// root (C1). With create, missing directories are made with mode 0755.
func (a *applier) openDir(dir string, create bool) (int, error) {
	fd, err := a.resolve(dir)
	if err == unix.ENOENT && create {
		return a.mkdirAll(dir)
	}
	if err != nil {
		return -1, &os.PathError{Op: "openat2", Path: dir, Err: err}
	}
	return fd, nil
}

// resolve opens dir with every symlink on the way resolved as if root were
// "/".
//
// REF: https://man7.org/linux/man-pages/man2/openat2.2.html
func (a *applier) resolve(dir string) (int, error) {
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	for i := 0; ; i++ {
		fd, err := unix.Openat2(a.root, dir, &how)
		// EAGAIN: a rename raced the lookup, which the kernel refuses to
		// trust for RESOLVE_IN_ROOT.
		if (err == unix.EAGAIN || err == unix.EINTR) && i < 16 {
			continue
		}
		return fd, err
	}
}

// mkdirAll opens dir, making each missing component. A component that is a
// dangling symlink is not made through: mkdirat fails on it.
func (a *applier) mkdirAll(dir string) (int, error) {
	prev := a.root
	defer func() {
		if prev != a.root {
			unix.Close(prev)
		}
	}()
	for end := 0; end < len(dir); {
		next := strings.IndexByte(dir[end+1:], '/')
		if next < 0 {
			end = len(dir)
		} else {
			end += 1 + next
		}
		p := dir[:end]
		_, comp := split(p)
		fd, err := a.resolve(p)
		if err == unix.ENOENT {
			if err := unix.Mkdirat(prev, comp, 0o755); err != nil && err != unix.EEXIST {
				return -1, &os.PathError{Op: "mkdirat", Path: p, Err: err}
			}
			fd, err = a.resolve(p)
		}
		if err != nil {
			return -1, &os.PathError{Op: "openat2", Path: p, Err: err}
		}
		if prev != a.root {
			unix.Close(prev)
		}
		prev = fd
	}
	fd := prev
	prev = a.root // handed to the caller
	return fd, nil
}

// replace clears the way for entry name at pfd/base. An existing directory
// is kept when keepDir is set (exists reports it); anything else there is
// removed, a directory with all it holds.
func (a *applier) replace(pfd int, name, base string, keepDir bool) (exists bool, err error) {
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return false, nil
		}
		return false, &os.PathError{Op: "fstatat", Path: name, Err: err}
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if isDir && keepDir {
		return true, nil
	}
	if err := a.remove(pfd, name, base, isDir || st.Mode&unix.S_IFMT == unix.S_IFLNK); err != nil {
		return false, err
	}
	return false, nil
}

// remove removes pfd/base and, for a directory, all it holds. stale says
// the removal may change how cached paths resolve (a directory or symlink).
func (a *applier) remove(pfd int, name, base string, stale bool) error {
	if stale {
		a.pstale = true
	}
	if err := a.removeAll(pfd, base); err != nil {
		return &os.PathError{Op: "remove", Path: name, Err: err}
	}
	return nil
}

// removeAll removes dfd/name without following symlinks at any depth.
func (a *applier) removeAll(dfd int, name string) error {
	err := unix.Unlinkat(dfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR {
		return err
	}
	if err := a.ctx.Err(); err != nil {
		return err
	}
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	names, err := f.Readdirnames(-1)
	for _, n := range names {
		if err != nil {
			break
		}
		err = a.removeAll(fd, n)
	}
	f.Close()
	if err != nil {
		return err
	}
	return unix.Unlinkat(dfd, name, unix.AT_REMOVEDIR)
}
