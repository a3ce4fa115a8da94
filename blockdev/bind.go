package blockdev

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// BindInRoot creates target inside root without following symlinks out of
// it (openat2 RESOLVE_IN_ROOT) and bind-mounts src there. It returns the
// path mounted on; unmount it with Unmount.
// REF: https://man7.org/linux/man-pages/man2/openat2.2.html
func BindInRoot(root, target, src string, readOnly bool) (string, error) {
	rootFd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(rootFd)
	rel := strings.TrimPrefix(path.Clean(target), "/")
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	// Create each missing component, resolving within root.
	parts := strings.Split(rel, "/")
	for i := range parts {
		sub := strings.Join(parts[:i+1], "/")
		fd, err := unix.Openat2(rootFd, sub, how)
		if err == nil {
			unix.Close(fd)
			continue
		}
		if !errors.Is(err, unix.ENOENT) {
			return "", err
		}
		parent := strings.Join(parts[:i], "/")
		if parent == "" {
			parent = "."
		}
		pfd, err := unix.Openat2(rootFd, parent, how)
		if err != nil {
			return "", err
		}
		err = unix.Mkdirat(pfd, parts[i], 0o755)
		unix.Close(pfd)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return "", err
		}
	}
	fd, err := unix.Openat2(rootFd, rel, how)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	// Mount on the opened directory itself, so no path can be swapped in.
	onto := fmt.Sprintf("/proc/self/fd/%d", fd)
	if err := unix.Mount(src, onto, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return "", err
	}
	// Where it ended up, for unmounting.
	mounted, err := os.Readlink(onto)
	if err != nil {
		mounted = filepath.Join(root, rel)
	}
	if readOnly {
		if err := unix.Mount("", mounted, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_REC, ""); err != nil {
			_ = unix.Unmount(mounted, unix.MNT_DETACH)
			return "", err
		}
	}
	return mounted, nil
}
