package daemon

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/thinpool/thinpool/blockdev"
	"github.com/thinpool/thinpool/thinpool"
	"github.com/thinpool/thinpool/volumes"
	"golang.org/x/sys/unix"
)

// Attachment is a thin device served as a loop device.
type Attachment struct {
	Device   string `json:"device"`
	ID       uint32 `json:"id"`
	Loop     string `json:"loop"`
	File     string `json:"file"` // the FUSE file behind the loop device
	ReadOnly bool   `json:"readOnly"`
	// MountDir and FSType are set while the device is mounted by us.
	MountDir string `json:"mountDir,omitempty"`
	FSType   string `json:"fsType,omitempty"`
}

// Host serves a pool's thin devices as block devices: each is a file in
// the FUSE filesystem it serves in the run directory, with a loop device
// on it; it mounts their filesystems. It is the volumes.Host of the
// daemon's model, and serves the device commands (attach, mount) itself.
// Attachments live as long as the Host. A Host is safe for concurrent use.
type Host struct {
	pool   *thinpool.Pool
	runDir string
	srv    *blockdev.Server
	logf   func(format string, args ...any)
	// space grows a full pool for a write, as its autoextend policy says.
	space *spaceMonitor

	mu  sync.Mutex
	att map[thinpool.DevID]*Attachment
}

var _ volumes.Host = (*Host)(nil)

// startHost cleans whatever a previous daemon of this run directory left
// behind (mounts, loop devices, a dead FUSE mount) and serves FUSE there.
func startHost(p *thinpool.Pool, runDir string, space *spaceMonitor, logf func(string, ...any)) (*Host, error) {
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return nil, err
	}
	if err := Cleanup(runDir, logf); err != nil {
		return nil, fmt.Errorf("clean up after the previous daemon: %w", err)
	}
	srv, err := blockdev.Serve(fuseDir(runDir), blockdev.Options{Errno: errno, Logf: logf})
	if err != nil {
		return nil, fmt.Errorf("serve FUSE at %s: %w", fuseDir(runDir), err)
	}
	return &Host{pool: p, runDir: runDir, srv: srv, logf: logf, space: space, att: map[thinpool.DevID]*Attachment{}}, nil
}

func fuseDir(runDir string) string { return filepath.Join(runDir, "fuse") }

// errno maps engine errors to what the kernel reports to the filesystem.
func errno(err error) syscall.Errno {
	var e syscall.Errno
	switch {
	case errors.Is(err, thinpool.ErrNoSpace), errors.Is(err, thinpool.ErrMetadataFull):
		return syscall.ENOSPC
	case errors.Is(err, thinpool.ErrReadOnly):
		return syscall.EROFS
	case errors.Is(err, thinpool.ErrOutOfRange):
		return syscall.EINVAL
	case errors.As(err, &e):
		return e
	}
	return syscall.EIO
}

// Cleanup unmounts filesystems on, and detaches, loop devices backed by files
// of runDir's FUSE mount, then unmounts that FUSE mount, aborting its
// connection if its server is gone.
func Cleanup(runDir string, logf func(string, ...any)) error {
	prefix := fuseDir(runDir) + "/"
	loops, err := blockdev.Loops(prefix)
	if err != nil {
		return err
	}
	var errs []error
	for _, l := range loops {
		for {
			dir, ok := blockdev.MountedAt(l.Dev)
			if !ok {
				break
			}
			logf("stale mount of %s at %s: unmounting", l.Dev, dir)
			// A container's root holds its volume and bind mounts.
			for _, sub := range blockdev.MountsUnder(dir) {
				logf("stale mount at %s (under %s): unmounting", sub, dir)
				if err := blockdev.Unmount(sub); err != nil {
					errs = append(errs, fmt.Errorf("unmount %s: %w", sub, err))
				}
			}
			if err := blockdev.Unmount(dir); err != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", dir, err))
				break
			}
		}
		logf("stale loop device %s (%s): detaching", l.Dev, l.BackingFile)
		if err := blockdev.Detach(l.Dev); err != nil {
			errs = append(errs, fmt.Errorf("detach %s: %w", l.Dev, err))
		}
	}
	if err := blockdev.Cleanup(fuseDir(runDir)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// thinDev adapts a thin device to blockdev.Device. A write that finds
// the pool full asks space to grow it (when the pool's autoextend policy
// allows) and is tried again, as dm-thin queues writes while dmeventd
// extends a full pool.
type thinDev struct {
	t     *thinpool.Thin
	space *spaceMonitor
}

var _ blockdev.MappedSizer = thinDev{}

// MappedBytes lets du(1) on the FUSE file show what the device uses.
func (d thinDev) MappedBytes() int64 { return d.t.MappedBytes() }

func (d thinDev) ReadAt(b []byte, off int64) (int, error) {
	n, err := d.t.ReadAt(b, off)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

func (d thinDev) WriteAt(b []byte, off int64) (int, error) {
	if d.space == nil {
		return d.t.WriteAt(b, off)
	}
	for tries := 0; ; tries++ {
		seen := d.space.growCount()
		n, err := d.t.WriteAt(b, off)
		if !errors.Is(err, thinpool.ErrNoSpace) || tries == maxGrowRetries || !d.space.checkAfter(true, seen) {
			return n, err
		}
	}
}

// maxGrowRetries bounds how often one write grows a full pool and tries
// again (each grow adds the autoextend percent).
const maxGrowRetries = 8

func (d thinDev) Size() int64                    { return d.t.Size() }
func (d thinDev) Sync() error                    { return d.t.Sync() }
func (d thinDev) WriteZeroes(off, n int64) error { return d.t.WriteZeroes(off, n) }

// Attach serves the device called name as a loop device. A read-only
// device attaches read-only only. Attaching an attached device returns the
// existing attachment if the mode matches.
func (h *Host) Attach(name string, readOnly bool) (*Attachment, error) {
	t, err := h.pool.Device(name)
	if err != nil {
		return nil, err
	}
	info := t.Info()
	if info.ReadOnly && !readOnly {
		readOnly = true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if a, ok := h.att[info.ID]; ok {
		if a.ReadOnly != readOnly {
			return nil, reasonf(volumes.ErrBusy, "device %q is attached %s as %s", name, mode(a.ReadOnly), a.Loop)
		}
		c := *a
		return &c, nil
	}
	file := fmt.Sprintf("dev-%d", info.ID)
	path, err := h.srv.Add(file, thinDev{t: t, space: h.space}, readOnly)
	if err != nil {
		return nil, err
	}
	loop, err := blockdev.Attach(path, blockdev.LoopOptions{ReadOnly: readOnly, DirectIO: true})
	if err != nil {
		_ = h.srv.Remove(file)
		return nil, err
	}
	a := &Attachment{Device: name, ID: uint32(info.ID), Loop: loop, File: path, ReadOnly: readOnly}
	h.att[info.ID] = a
	h.logf("attached %q as %s (%s)", name, loop, mode(readOnly))
	c := *a
	return &c, nil
}

func mode(ro bool) string {
	if ro {
		return "read-only"
	}
	return "read-write"
}

// find returns the attachment for a device name, loop device path or mount
// directory. Called with mu held.
func (h *Host) find(key string) (*Attachment, bool) {
	for _, a := range h.att {
		if a.Loop == key || (a.MountDir != "" && a.MountDir == filepath.Clean(key)) {
			return a, true
		}
	}
	if t, err := h.pool.Device(key); err == nil {
		a, ok := h.att[t.ID()]
		return a, ok
	}
	return nil, false
}

// Detach stops serving a device (by name or loop device path). A mounted
// device must be unmounted first.
func (h *Host) Detach(key string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	a, ok := h.find(key)
	if !ok {
		return volumes.NotAttached(key)
	}
	if dir, mounted := blockdev.MountedAt(a.Loop); mounted {
		return reasonf(volumes.ErrBusy, "device %q is mounted at %s; unmount it first (thinctl device umount %s)", a.Device, dir, dir)
	}
	return h.detachLocked(a)
}

func (h *Host) detachLocked(a *Attachment) error {
	if err := blockdev.Detach(a.Loop); err != nil {
		return fmt.Errorf("detach %s: %w", a.Loop, err)
	}
	// The loop device lets go of the file asynchronously (autoclear).
	var err error
	for i := 0; i < 100; i++ {
		if err = h.srv.Remove(filepath.Base(a.File)); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	delete(h.att, thinpool.DevID(a.ID))
	h.logf("detached %q from %s", a.Device, a.Loop)
	// Writes the kernel never flushed become durable now (blockdev/doc.go).
	return errors.Join(err, h.pool.Sync())
}

// Attachments lists the attached devices, by device name.
func (h *Host) Attachments() []Attachment {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Attachment, 0, len(h.att))
	for id, a := range h.att {
		c := *a
		if t, err := h.pool.DeviceByID(id); err == nil {
			c.Device = t.Info().Name // follows renames
		}
		if dir, ok := blockdev.MountedAt(a.Loop); ok {
			c.MountDir = dir
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(x, y Attachment) int { return strings.Compare(x.Device, y.Device) })
	return out
}

// Busy returns ErrBusy if the device called name is attached.
func (h *Host) Busy(name string) error {
	t, err := h.pool.Device(name)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if a, ok := h.att[t.ID()]; ok {
		return reasonf(volumes.ErrBusy, "device %q is attached as %s; detach it first", name, a.Loop)
	}
	return nil
}

// UnmountLazily syncs every filesystem mounted from the attached devices
// (and the mounts below them) and detaches
// each mount from the namespace (umount -l), busy or not. A filesystem a
// process still uses lives on, served as before, until the kernel releases
// it: call WaitReleased before Close. It returns the holders found before.
func (h *Host) UnmountLazily() ([]Holder, error) {
	hs, err := h.Holders()
	if err != nil {
		return nil, err
	}
	dirs, err := blockdev.MountsOf(h.attachedLoops())
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, dir := range dirs { // longest first: a mount before the one it sits on
		if err := blockdev.Syncfs(dir); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, dir := range dirs {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("lazy unmount %s: %w", dir, err))
			continue
		}
		h.logf("lazily unmounted %s", dir)
	}
	return hs, errors.Join(errs...)
}

// WaitReleased waits, serving, until no filesystem holds any attached loop
// device: the processes that held lazily unmounted filesystems are gone.
// It calls wait every poll while it waits.
func (h *Host) WaitReleased(poll time.Duration, wait func()) error {
	for {
		h.mu.Lock()
		var loops []string
		for _, a := range h.att {
			loops = append(loops, a.Loop)
		}
		h.mu.Unlock()
		busy := false
		for _, l := range loops {
			held, err := blockdev.HeldByFilesystem(l)
			if err != nil {
				return err
			}
			busy = busy || held
		}
		if !busy {
			return nil
		}
		if wait != nil {
			wait()
		}
		time.Sleep(poll)
	}
}

// Resized tells the kernel that an attached device changed size: the FUSE
// file's attributes and the loop device's capacity follow.
func (h *Host) Resized(name string) error {
	t, err := h.pool.Device(name)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	a, ok := h.att[t.ID()]
	if !ok {
		return nil
	}
	if err := h.srv.Resized(filepath.Base(a.File)); err != nil {
		return err
	}
	return blockdev.SetCapacity(a.Loop)
}

// MountOptions are the choices of Host.MountDevice.
type MountOptions struct {
	Mkfs     string // "ext4" or "xfs": make this filesystem if the device has none
	ReadOnly bool
	Options  string // as for mount -o
}

// MountResult describes a mounted device.
type MountResult struct {
	Attachment
	Formatted bool  `json:"formatted"`
	MkfsCost  int64 `json:"mkfsCost"` // pool bytes the new filesystem took
}

// MountDevice attaches the device called name if needed, makes a
// filesystem on it if it has none and o.Mkfs asks for one, and mounts it
// at dir.
func (h *Host) MountDevice(name, dir string, o MountOptions) (*MountResult, error) {
	switch o.Mkfs {
	case "", "ext4", "xfs":
	default:
		return nil, reasonf(thinpool.ErrInvalid, "--mkfs %q: ext4 or xfs", o.Mkfs)
	}
	dir = filepath.Clean(dir)
	t, err := h.pool.Device(name)
	if err != nil {
		return nil, err
	}
	fstype, err := blockdev.Probe(t, t.Size())
	if err != nil {
		return nil, fmt.Errorf("read %q: %w", name, err)
	}
	ro := o.ReadOnly || t.Info().ReadOnly
	format := fstype == "" && o.Mkfs != ""
	switch {
	case fstype == "" && o.Mkfs == "":
		return nil, fmt.Errorf("device %q has no filesystem; give --mkfs ext4 or --mkfs xfs to make one", name)
	case format && t.Info().ReadOnly:
		return nil, fmt.Errorf("device %q is read-only and has no filesystem", name)
	}
	h.mu.Lock()
	a, attached := h.att[t.ID()]
	h.mu.Unlock()
	if attached {
		if cur, ok := blockdev.MountedAt(a.Loop); ok {
			return nil, reasonf(volumes.ErrBusy, "device %q is already mounted at %s", name, cur)
		}
	}
	at, err := h.Attach(name, ro && !format)
	if err != nil {
		return nil, err
	}
	res := &MountResult{Attachment: *at}
	fail := func(err error) (*MountResult, error) {
		if !attached {
			_ = h.Detach(at.Loop)
		}
		return nil, err
	}
	if format {
		before := h.pool.Usage().UsedBlocks
		if err := firstCause(blockdev.Mkfs(at.Loop, o.Mkfs), h.writeErr(at.Loop)); err != nil {
			return fail(err)
		}
		if err := h.pool.Sync(); err != nil {
			return fail(err)
		}
		fstype, res.Formatted = o.Mkfs, true
		res.MkfsCost = int64(h.pool.Usage().UsedBlocks-before) * h.pool.BlockSize()
		h.logf("made %s on %q (%s): %d bytes of pool", fstype, name, at.Loop, res.MkfsCost)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	opts := o.Options
	if fstype == "xfs" && !strings.Contains(opts, "nouuid") {
		// Snapshots share their origin's filesystem UUID, which xfs refuses
		// to mount twice (Docker's devicemapper driver did the same).
		opts = strings.Trim(opts+",nouuid", ",")
	}
	if err := blockdev.Mount(at.Loop, dir, fstype, ro, opts); err != nil {
		return fail(fmt.Errorf("mount %s on %s: %w", at.Loop, dir, err))
	}
	h.mu.Lock()
	if cur, ok := h.att[t.ID()]; ok {
		cur.MountDir, cur.FSType = dir, fstype
	}
	h.mu.Unlock()
	res.MountDir, res.FSType = dir, fstype
	h.logf("mounted %q (%s) at %s", name, at.Loop, dir)
	return res, nil
}

// Umount unmounts every filesystem of a device (by mount directory, device
// name or loop device) and detaches it.
func (h *Host) Umount(key string) error {
	h.mu.Lock()
	a, ok := h.find(key)
	var loop string
	if ok {
		loop = a.Loop
	}
	h.mu.Unlock()
	if !ok {
		return volumes.NotMounted(key)
	}
	for {
		dir, mounted := blockdev.MountedAt(loop)
		if !mounted {
			break
		}
		if err := blockdev.Unmount(dir); err != nil {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
	}
	return h.Detach(loop)
}

// NoSpaceError is returned when a write through a filesystem on a thin
// device failed because the pool was full. It matches thinpool.ErrNoSpace,
// syscall.ENOSPC and the *blockdev.WriteError it came from with errors.Is
// and errors.As.
type NoSpaceError struct {
	DataBytes int64 // size of the pool's data area
	FreeBytes int64 // free in it when the error was seen
	Err       error // the device's first failed write
}

func (e *NoSpaceError) Error() string {
	return fmt.Sprintf("no space left in pool (%s data, %s free): grow it with 'thinctl pool grow'",
		humanize.IBytes(uint64(e.DataBytes)), humanize.IBytes(uint64(e.FreeBytes)))
}

func (e *NoSpaceError) Unwrap() error { return e.Err }

// writeErr returns the first write that failed on the device attached as
// loop since it was attached, or nil: ENOSPC from a full pool becomes a
// *NoSpaceError. Writeback of a filesystem is asynchronous, so such an
// error can be all that is left of lost data.
func (h *Host) writeErr(loop string) error {
	h.mu.Lock()
	a, ok := h.find(loop)
	var name, file string
	if ok {
		name, file = a.Device, filepath.Base(a.File)
	}
	h.mu.Unlock()
	if !ok {
		return nil
	}
	werr, _ := h.srv.WriteErr(file)
	if werr == nil {
		return nil
	}
	if errors.Is(werr, thinpool.ErrNoSpace) || errors.Is(werr, syscall.ENOSPC) && !errors.Is(werr, thinpool.ErrMetadataFull) {
		u := h.pool.Usage()
		return &NoSpaceError{DataBytes: int64(u.DataBlocks) * u.BlockSize, FreeBytes: int64(u.FreeBlocks) * u.BlockSize, Err: werr}
	}
	if errors.Is(werr, thinpool.ErrMetadataFull) {
		return fmt.Errorf("pool metadata is full: grow it with 'thinctl pool grow --metadata-size N': device %q: %w", name, werr)
	}
	return fmt.Errorf("writes to device %q failed: %w", name, werr)
}

// umountChecked unmounts the filesystem at dir ("" for none) from the
// device attached as loop and detaches it, making sure the device took
// every write: it syncs the filesystem first (syncfs), and checks the
// device's write errors after the unmount, which writes too, and before
// the detach, which forgets theh. A failed write is returned before any
// other error, since it explains theh.
func (h *Host) umountChecked(dir, loop string) error {
	var errs []error
	if dir != "" {
		if err := blockdev.Syncfs(dir); err != nil {
			errs = append(errs, err)
		}
		if err := blockdev.Unmount(dir); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", dir, err))
		}
	}
	werr := h.writeErr(loop)
	if err := h.Detach(loop); err != nil {
		errs = append(errs, err)
	}
	if werr != nil {
		for _, err := range errs {
			h.logf("%s: %v (after: %v)", loop, err, werr)
		}
		return werr
	}
	for _, err := range errs[min(1, len(errs)):] {
		h.logf("%s: %v (after: %v)", loop, err, errs[0])
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// syncChecked syncs the filesystem mounted at dir from the device attached
// as loop and returns the device's first failed write, if any, else the
// sync's error.
func (h *Host) syncChecked(dir, loop string) error {
	err := blockdev.Syncfs(dir)
	if werr := h.writeErr(loop); werr != nil {
		return werr
	}
	return err
}

// Holders lists the processes that keep the host's mounts busy: the mounts
// of its attached devices, the mounts below them (a container's volume and
// bind mounts) and the loop devices themselves.
func (h *Host) Holders() ([]Holder, error) {
	return blockdev.Holders(h.attachedLoops())
}

// attachedLoops returns the loop devices attached now.
func (h *Host) attachedLoops() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	loops := make([]string, 0, len(h.att))
	for _, a := range h.att {
		loops = append(loops, a.Loop)
	}
	return loops
}

// unmountAll unmounts every device's filesystem and detaches the loop
// devices. It stops at the first failure. The model's containers, whose
// mounts sit on these filesystems, must be unmounted first.
func (h *Host) unmountAll() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range h.att {
		for {
			dir, ok := blockdev.MountedAt(a.Loop)
			if !ok {
				break
			}
			if err := blockdev.Unmount(dir); err != nil {
				return fmt.Errorf("unmount %s: %w", dir, err)
			}
		}
		// Never take a file away from a filesystem that still uses it.
		held, err := blockdev.HeldByFilesystem(a.Loop)
		if err != nil {
			return err
		}
		if held {
			return reasonf(volumes.ErrBusy, "%s (device %q) still holds a filesystem that is mounted elsewhere or lazily unmounted; not detaching it", a.Loop, a.Device)
		}
		if err := h.detachLocked(a); err != nil {
			return err
		}
	}
	return nil
}

// close stops serving FUSE; unmountAll must have succeeded.
func (h *Host) close() error { return h.srv.Close() }

// Mkfs makes a filesystem on the device dev: it attaches the device, runs
// mkfs and detaches it, checking that the device took every write.
func (h *Host) Mkfs(dev, fstype string) error {
	a, err := h.Attach(dev, false)
	if err != nil {
		return err
	}
	err = blockdev.Mkfs(a.Loop, fstype)
	return firstCause(err, h.umountChecked("", a.Loop))
}

// GrowFS grows the filesystem on the device dev to the device's size: it
// attaches the device, grows the filesystem (xfs on a scratch mount in
// the run directory) and detaches it, checking that the device took every
// write.
func (h *Host) GrowFS(dev, fstype string) (err error) {
	a, err := h.Attach(dev, false)
	if err != nil {
		return err
	}
	defer func() { err = firstCause(err, h.umountChecked("", a.Loop)) }()
	dir, err := os.MkdirTemp(h.runDir, "grow")
	if err != nil {
		return err
	}
	defer os.Remove(dir)
	return blockdev.GrowFS(a.Loop, fstype, dir)
}

// Mount attaches the device dev and mounts its filesystem at dir, as
// MountDevice with no options.
func (h *Host) Mount(dev, dir string) error {
	_, err := h.MountDevice(dev, dir, MountOptions{})
	return err
}

// Sync syncs the filesystem mounted at dir and returns the first write its
// device failed since it was attached, if any, else the sync's error.
func (h *Host) Sync(dir string) error {
	a, ok := h.mountedAt(dir)
	if !ok {
		return volumes.NotMounted(dir)
	}
	return h.syncChecked(dir, a.Loop)
}

// Unmount unmounts the filesystem at dir and detaches its device, as Umount.
func (h *Host) Unmount(dir string) error { return h.Umount(dir) }

// UnmountChecked unmounts the filesystem at dir and detaches its device,
// making sure the device took every write (see umountChecked).
func (h *Host) UnmountChecked(dir string) error {
	a, ok := h.mountedAt(dir)
	if !ok {
		return volumes.NotMounted(dir)
	}
	return h.umountChecked(dir, a.Loop)
}

// mountedAt returns a copy of the attachment mounted at dir.
func (h *Host) mountedAt(dir string) (Attachment, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	a, ok := h.find(filepath.Clean(dir))
	if !ok {
		return Attachment{}, false
	}
	return *a, true
}

// Mounted reports whether something is mounted at dir.
func (h *Host) Mounted(dir string) bool { return blockdev.IsMounted(dir) }

// Bind bind-mounts src at target inside root (blockdev.BindInRoot).
func (h *Host) Bind(root, target, src string, readOnly bool) (string, error) {
	return blockdev.BindInRoot(root, target, src, readOnly)
}

// Unbind unmounts a bind mount that Bind made.
func (h *Host) Unbind(path string) error { return unix.Unmount(path, 0) }

// firstCause returns cause if it is a device's failed write (the root
// cause), else err if set, else cause.
func firstCause(err, cause error) error {
	if cause != nil && (err == nil || isWriteFailure(cause)) {
		return cause
	}
	return err
}

// isWriteFailure reports whether err came from writeErr: a failed write to
// the device, which explains any error the filesystem above returned.
func isWriteFailure(err error) bool {
	var werr *blockdev.WriteError
	return errors.As(err, &werr)
}
