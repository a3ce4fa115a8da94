package blockdev

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Loop device flags (struct loop_info64 lo_flags).
// REF: https://man7.org/linux/man-pages/man4/loop.4.html
// REF: include/uapi/linux/loop.h
const (
	loFlagsReadOnly = 1  // LO_FLAGS_READ_ONLY
	loFlagsDirectIO = 16 // LO_FLAGS_DIRECT_IO
	// LO_FLAGS_AUTOCLEAR (4) is not set by Attach: see there.
)

const loopControl = "/dev/loop-control"

// LoopOptions configure Attach.
type LoopOptions struct {
	// ReadOnly attaches the file read-only: the loop device refuses writes
	// (EPERM on open for writing, EROFS/EIO on writes).
	ReadOnly bool
	// DirectIO makes the loop device use O_DIRECT on the backing file, so the
	// data is not cached twice (once for the loop device, once for the
	// file). If the kernel refuses, Attach attaches without it; Loops tells
	// which one happened.
	DirectIO bool
	// BlockSize is the loop device's logical block size: 512, 1024, 2048 or
	// 4096. Zero lets the kernel choose.
	BlockSize uint32
}

// Loop describes one bound loop device.
type Loop struct {
	Dev         string // "/dev/loopN"
	BackingFile string // path of the backing file, as the kernel reports it
	ReadOnly    bool
	DirectIO    bool
	// AutoClear is set once Detach ran while the device was still open: the
	// device unbinds on its last close.
	AutoClear bool
	Size      int64  // bytes
	BlockSize uint32 // logical block size in bytes
}

// Attach binds a free loop device to path and returns its name
// ("/dev/loopN"). It takes the device from LOOP_CTL_GET_FREE and binds it
// with LOOP_CONFIGURE, trying the next free device when another process
// binds the same one first (EBUSY).
//
// The device stays bound after Attach returns, until Detach; it does not set
// LO_FLAGS_AUTOCLEAR at bind time, because the kernel would then unbind the
// device as soon as Attach closes it. Detach sets it instead, so a device
// that is still open (mounted) unbinds on its last close.
// REF: https://man7.org/linux/man-pages/man4/loop.4.html (LOOP_CONFIGURE)
func Attach(path string, o LoopOptions) (dev string, err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("blockdev: attach %q: %w", path, err)
	}
	mode := unix.O_RDWR
	var flags uint32
	if o.ReadOnly {
		mode = unix.O_RDONLY
		flags |= loFlagsReadOnly
	}
	if o.DirectIO {
		flags |= loFlagsDirectIO
	}
	file, err := unix.Open(abs, mode|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("blockdev: attach %q: %w", abs, &os.PathError{Op: "open", Path: abs, Err: err})
	}
	defer unix.Close(file)
	ctl, err := unix.Open(loopControl, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("blockdev: attach %q: %w", abs, &os.PathError{Op: "open", Path: loopControl, Err: err})
	}
	defer unix.Close(ctl)

	var last error
	for attempt := range 50 {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * time.Millisecond)
		}
		n, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", fmt.Errorf("blockdev: attach %q: LOOP_CTL_GET_FREE: %w", abs, err)
		}
		dev = "/dev/loop" + strconv.Itoa(n)
		err = configure(dev, file, abs, flags, o.BlockSize)
		if err != nil && flags&loFlagsDirectIO != 0 && errors.Is(err, syscall.EINVAL) {
			// Direct I/O refused (alignment, or no O_DIRECT support).
			err = configure(dev, file, abs, flags&^loFlagsDirectIO, o.BlockSize)
		}
		switch {
		case err == nil:
			return dev, nil
		case errors.Is(err, syscall.EBUSY), errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ENXIO):
			// Another process bound it first, or the node is not
			// there yet (devtmpfs), or it was just removed.
			last = err
			continue
		default:
			return "", fmt.Errorf("blockdev: attach %q to %s: %w", abs, dev, err)
		}
	}
	return "", fmt.Errorf("blockdev: attach %q: no free loop device: %w", abs, markBusy(last))
}

// configure binds the loop device dev to the open file with LOOP_CONFIGURE.
func configure(dev string, file int, name string, flags, blockSize uint32) error {
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dev, Err: err}
	}
	defer unix.Close(fd)
	cfg := unix.LoopConfig{Fd: uint32(file), Size: blockSize}
	cfg.Info.Flags = flags
	// lo_file_name is informational (losetup shows it); it must end in NUL.
	copy(cfg.Info.File_name[:unix.LO_NAME_SIZE-1], name)
	if err := unix.IoctlLoopConfigure(fd, &cfg); err != nil {
		return &os.PathError{Op: "LOOP_CONFIGURE", Path: dev, Err: err}
	}
	return nil
}

// detachWait is how long Detach waits for the device to unbind after
// LOOP_CLR_FD.
const detachWait = 2 * time.Second

// Detach unbinds the loop device dev (LOOP_CLR_FD). The kernel unbinds on
// the last close: if nothing else has dev open, that is when Detach closes
// it, and Detach returns once the device is unbound and has let go of its
// backing file. If something still holds dev open (a mounted filesystem),
// the device is marked to unbind on its last close and Detach returns an
// error matching ErrBusy after a short wait. Detaching a device that is not
// bound, or does not exist, succeeds.
// REF: https://man7.org/linux/man-pages/man4/loop.4.html (LOOP_CLR_FD)
func Detach(dev string) error {
	var err error
	for attempt := range 10 {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 20 * time.Millisecond)
		}
		err = clearFd(dev)
		if err == nil || !errors.Is(err, syscall.EBUSY) && !errors.Is(err, syscall.EAGAIN) {
			break
		}
	}
	switch {
	case errors.Is(err, syscall.ENXIO), errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ENODEV):
		return nil // not bound, or no such device
	case err != nil:
		return markBusy(fmt.Errorf("blockdev: detach %s: %w", dev, err))
	}
	deadline := time.Now().Add(detachWait)
	for {
		if _, ok := backingFile(dev); !ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("detach %s: still open, it unbinds on last close: %w", dev, ErrBusy)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// clearFd issues LOOP_CLR_FD on dev. Closing the descriptor afterwards is
// what unbinds the device when no one else has it open.
func clearFd(dev string) error {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dev, Err: err}
	}
	err = unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0)
	unix.Close(fd)
	if err != nil {
		return &os.PathError{Op: "LOOP_CLR_FD", Path: dev, Err: err}
	}
	return nil
}

// SetCapacity makes the loop device dev re-read its backing file's size
// (LOOP_SET_CAPACITY), after the device behind the file was resized. For a
// file served by this package, call Server.Resized first.
// REF: https://man7.org/linux/man-pages/man4/loop.4.html (LOOP_SET_CAPACITY)
func SetCapacity(dev string) error {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("blockdev: set capacity: %w", &os.PathError{Op: "open", Path: dev, Err: err})
	}
	defer unix.Close(fd)
	if err := unix.IoctlSetInt(fd, unix.LOOP_SET_CAPACITY, 0); err != nil {
		return fmt.Errorf("blockdev: set capacity %s: %w", dev, err)
	}
	return nil
}

// sysBlock is where sysfs describes block devices.
const sysBlock = "/sys/block"

// backingFile returns the backing file of the loop device dev
// ("/dev/loopN"), and false if dev is not a bound loop device.
func backingFile(dev string) (string, bool) {
	b, err := os.ReadFile(filepath.Join(sysBlock, filepath.Base(dev), "loop", "backing_file"))
	if err != nil {
		return "", false
	}
	return strings.TrimSuffix(string(b), "\n"), true
}

// Loops lists the bound loop devices whose backing file starts with
// backingPrefix (all of them for ""), ordered by device number. Use it to
// find loop devices left behind by a process that died, and to show which
// device serves which file.
func Loops(backingPrefix string) ([]Loop, error) {
	ents, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil, fmt.Errorf("blockdev: list loop devices: %w", err)
	}
	var loops []Loop
	for _, e := range ents {
		if loopNumber(e.Name()) < 0 {
			continue
		}
		dev := "/dev/" + e.Name()
		file, ok := backingFile(dev)
		if !ok || !strings.HasPrefix(file, backingPrefix) {
			continue
		}
		dir := filepath.Join(sysBlock, e.Name())
		l := Loop{
			Dev:         dev,
			BackingFile: file,
			ReadOnly:    readSysfs(dir, "ro") == "1",
			DirectIO:    readSysfs(dir, "loop/dio") == "1",
			AutoClear:   readSysfs(dir, "loop/autoclear") == "1",
		}
		if sectors, err := strconv.ParseInt(readSysfs(dir, "size"), 10, 64); err == nil {
			l.Size = sectors * 512
		}
		if bs, err := strconv.ParseUint(readSysfs(dir, "queue/logical_block_size"), 10, 32); err == nil {
			l.BlockSize = uint32(bs)
		}
		loops = append(loops, l)
	}
	slices.SortFunc(loops, func(a, b Loop) int {
		return loopNumber(filepath.Base(a.Dev)) - loopNumber(filepath.Base(b.Dev))
	})
	return loops, nil
}

// loopNumber returns N for "loopN", or -1.
func loopNumber(name string) int {
	n, ok := strings.CutPrefix(name, "loop")
	num, err := strconv.Atoi(n)
	if !ok || err != nil || num < 0 {
		return -1
	}
	return num
}

// readSysfs reads a one-line sysfs attribute, "" if it cannot.
func readSysfs(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
