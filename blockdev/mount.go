package blockdev

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Mkfs makes a filesystem of type fstype ("ext4" or "xfs") on dev, passing
// extra arguments before the device name.
//
// Both are made so that a fresh thin device stays almost unmapped: mkfs
// first discards the whole device, which on a thin device only unmaps (free
// when nothing is mapped) and guarantees zeros, and ext4 initialises its
// inode tables and journal lazily, trusting those zeros. On a 100 GiB device
// this costs a few MiB of pool instead of gigabytes.
func Mkfs(dev, fstype string, extra ...string) error {
	var args []string
	switch fstype {
	case "ext4":
		// -F: dev is not a partition; -E discard is the default but
		// stated, since it is what makes lazy init safe.
		args = []string{"mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1,discard"}
	case "xfs":
		// Without -K mkfs.xfs discards the device first.
		args = []string{"mkfs.xfs", "-f", "-q"}
	default:
		return fmt.Errorf("mkfs %s: filesystem type %q: %w", dev, fstype, ErrInvalid)
	}
	args = append(append(args, extra...), dev)
	cmd := exec.Command(args[0], args[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("blockdev: %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// Mount mounts the filesystem of type fstype on dev at dir, creating dir if
// it is missing. opts is the filesystem's option string ("" for none), as
// for mount -o, without "ro"/"rw".
func Mount(dev, dir, fstype string, readOnly bool, opts string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("blockdev: mount %s: %w", dev, err)
	}
	var flags uintptr
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount(dev, dir, fstype, flags, opts); err != nil {
		return markBusy(fmt.Errorf("blockdev: mount %s on %s (%s, %q): %w", dev, dir, fstype, opts, err))
	}
	return nil
}

// Unmount unmounts the filesystem mounted at dir. It fails with an error
// matching ErrBusy if the filesystem is in use, and succeeds if nothing is
// mounted at dir.
//
// Unmounting syncs the filesystem first, so it waits for the device: if the
// device is served by a FUSE server that is alive but stuck, it blocks until
// the server answers or its connection is aborted. If the server is dead,
// the writes fail at once and the unmount succeeds.
func Unmount(dir string) error {
	err := unix.Unmount(dir, 0)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.EINVAL), errors.Is(err, syscall.ENOENT):
		return nil // not a mount point
	default:
		return markBusy(fmt.Errorf("blockdev: unmount %s: %w", dir, err))
	}
}

// Syncfs writes back the filesystem mounted at dir and waits for it
// (syncfs(2)). It returns an error if writeback of any of its data failed
// since the filesystem was mounted or since the last Syncfs (Linux 5.8 and
// later report such errors to syncfs).
// REF: https://man7.org/linux/man-pages/man2/syncfs.2.html
func Syncfs(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("blockdev: syncfs: %w", &os.PathError{Op: "open", Path: dir, Err: err})
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("blockdev: syncfs %s: %w", dir, err)
	}
	return nil
}

// MountedAt returns the mount point of the first mount of the block device
// dev, from /proc/self/mountinfo.
func MountedAt(dev string) (dir string, ok bool) {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return "", false
	}
	want := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	mounts, err := readMountinfo()
	if err != nil {
		return "", false
	}
	for _, m := range mounts {
		if m.devID == want {
			return m.dir, true
		}
	}
	return "", false
}

// IsMounted reports whether something is mounted at dir, from
// /proc/self/mountinfo.
func IsMounted(dir string) bool {
	dir = filepath.Clean(dir)
	mounts, err := readMountinfo()
	if err != nil {
		return false
	}
	for _, m := range mounts {
		if m.dir == dir {
			return true
		}
	}
	return false
}

// MountsUnder lists the mount points strictly below dir, in the order to
// unmount them: the reverse of /proc/self/mountinfo's, so that a mount goes
// before the one it sits on.
func MountsUnder(dir string) []string {
	dir = filepath.Clean(dir)
	mounts, err := readMountinfo()
	if err != nil {
		return nil
	}
	var out []string
	for _, m := range mounts {
		if strings.HasPrefix(m.dir, dir+"/") {
			out = append(out, m.dir)
		}
	}
	slices.Reverse(out)
	return out
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	devID  string // "major:minor" of the mounted filesystem
	dir    string // mount point
	fstype string // "ext4", "fuse.thinpool"
	source string
}

// readMountinfo parses /proc/self/mountinfo.
// REF: https://man7.org/linux/man-pages/man5/proc_pid_mountinfo.5.html
func readMountinfo() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var mounts []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(tail) < 2 {
			continue
		}
		mounts = append(mounts, mountEntry{
			devID:  fields[2],
			dir:    unescapeMountinfo(fields[4]),
			fstype: tail[0],
			source: unescapeMountinfo(tail[1]),
		})
	}
	return mounts, sc.Err()
}

// unescapeMountinfo undoes the octal escapes (\040 for space) of mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Filesystem freeze ioctls, _IOWR('X', 119, int) and _IOWR('X', 120, int).
// REF: https://man7.org/linux/man-pages/man8/fsfreeze.8.html
const (
	fiFreeze = 0xC0045877 // FIFREEZE
	fiThaw   = 0xC0045878 // FITHAW
)

// Freeze flushes the filesystem mounted at dir and blocks new writes to it
// (FIFREEZE), so that a snapshot of its device is consistent. Writers block
// until Thaw; keep the window short.
func Freeze(dir string) error { return freezeIoctl(dir, fiFreeze, "freeze") }

// Thaw undoes Freeze (FITHAW).
func Thaw(dir string) error { return freezeIoctl(dir, fiThaw, "thaw") }

func freezeIoctl(dir string, req uint, op string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("blockdev: %s: %w", op, &os.PathError{Op: "open", Path: dir, Err: err})
	}
	defer unix.Close(fd)
	if err := unix.IoctlSetInt(fd, req, 0); err != nil {
		return markBusy(fmt.Errorf("blockdev: %s %s: %w", op, dir, err))
	}
	return nil
}

// Cleanup removes what a Server that died left at dir: it detaches every
// loop device whose backing file is under dir and unmounts dir if a thinpool
// FUSE filesystem is mounted there, lazily if a loop device still holds it
// (one with a filesystem mounted on it). Filesystems mounted from those loop
// devices are not touched; unmount them first for a clean result. Cleanup on
// a directory with nothing left behind succeeds. It refuses, with an error
// matching ErrBusy, when dir is served by a live FUSE server.
func Cleanup(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("blockdev: cleanup %q: %w", dir, err)
	}
	if mounted, alive := probeMount(abs); mounted && alive {
		return fmt.Errorf("cleanup %s: served by a live process: %w", abs, ErrBusy)
	}
	loops, err := Loops(abs + "/")
	if err != nil {
		return err
	}
	var errs []error
	for _, l := range loops {
		if err := Detach(l.Dev); err != nil {
			errs = append(errs, err)
		}
	}
	mounts, err := readMountinfo()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("blockdev: cleanup %s: %w", abs, err))...)
	}
	for _, m := range mounts {
		if m.dir != abs || m.fstype != "fuse.thinpool" {
			continue
		}
		if err := unix.Unmount(abs, 0); err != nil && !errors.Is(err, syscall.EINVAL) {
			// The connection may be alive but stuck: abort it so
			// pending requests fail, then detach the mount.
			if conn, ok := connOf(m.devID); ok {
				_ = abortConn(conn)
			}
			if err := unix.Unmount(abs, unix.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
				errs = append(errs, fmt.Errorf("blockdev: cleanup: lazy unmount %s: %w", abs, err))
			}
		}
		break
	}
	return errors.Join(errs...)
}

// connOf returns the fusectl connection number of a mount's "major:minor".
func connOf(devID string) (uint64, bool) {
	maj, min, ok := strings.Cut(devID, ":")
	a, err1 := strconv.ParseUint(maj, 10, 32)
	b, err2 := strconv.ParseUint(min, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, false
	}
	return a<<20 | b, true
}

// isMountPoint reports whether a thinpool FUSE filesystem is mounted at dir.
func isMountPoint(dir string) bool {
	mounts, err := readMountinfo()
	if err != nil {
		return false
	}
	for _, m := range mounts {
		if m.dir == dir && m.fstype == "fuse.thinpool" {
			return true
		}
	}
	return false
}

// probeName is looked up to tell a live FUSE server from a dead one; Add
// refuses it as a device name.
const probeName = ".blockdev-probe"

// probeMount reports whether a thinpool FUSE filesystem is mounted at dir
// and, if so, whether its server still answers. A stat of dir itself does
// not tell: the kernel answers it from its attribute cache. A lookup of a
// missing name always reaches the server (no negative caching), and fails
// with ENOTCONN when the connection is gone.
func probeMount(dir string) (mounted, alive bool) {
	if !isMountPoint(dir) {
		return false, false
	}
	err := within(5*time.Second, func() error {
		_, err := os.Lstat(filepath.Join(dir, probeName))
		return err
	})
	return true, !errors.Is(err, syscall.ENOTCONN) && !errors.Is(err, errTimeout)
}

// errTimeout is returned by within when fn did not return in time.
var errTimeout = errors.New("blockdev: timed out")

// within runs fn in a goroutine and returns errTimeout if it does not
// finish within d; the goroutine is then left to finish on its own.
func within(d time.Duration, fn func() error) error {
	res := make(chan error, 1)
	go func() { res <- fn() }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case err := <-res:
		return err
	case <-t.C:
		return errTimeout
	}
}

// AbortMount aborts the FUSE connection of the thinpool filesystem mounted at
// dir without sending it any request, so that I/O stuck on a server that is
// dying (killed while one of its own threads waits on that I/O) fails and
// the server can exit. It finds the connection in /proc/self/mountinfo.
func AbortMount(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	mounts, err := readMountinfo()
	if err != nil {
		return err
	}
	for _, m := range mounts {
		if m.dir == abs && m.fstype == "fuse.thinpool" {
			if conn, ok := connOf(m.devID); ok {
				return abortConn(conn)
			}
		}
	}
	return nil
}
