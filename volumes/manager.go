package volumes

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

	"golang.org/x/sys/unix"

	"github.com/thinpool/thinpool/blockdev"
	"github.com/thinpool/thinpool/errdefs"
	"github.com/thinpool/thinpool/thinpool"
)

func fuseDir(runDir string) string { return filepath.Join(runDir, "fuse") }

var (
	// ErrBusy is returned when a device is attached or mounted and the
	// operation needs it not to be.
	ErrBusy = errdefs.New(errdefs.ErrInUse, "volumes: device is busy")
	// ErrNotAttached is returned by Detach and Umount for a device that is
	// not attached or mounted.
	ErrNotAttached = errdefs.New(errdefs.ErrNotFound, "volumes: not attached")
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

// Manager serves a pool's thin devices as block devices. It owns the FUSE
// mount in the run directory; attachments live as long as the Manager.
type Manager struct {
	pool   *thinpool.Pool
	runDir string
	srv    *blockdev.Server
	logf   func(format string, args ...any)

	mu  sync.Mutex
	att map[thinpool.DevID]*Attachment

	stop, stopped chan struct{} // the periodic commit and space check

	// space warns of low space and grows the pool as its autoextend
	// policy says.
	space *spaceMonitor

	// mounted are the containers mounted now, by device name.
	mounted map[string]*mountedContainer

	// images serializes what makes or deletes layers and images (imports,
	// image removal, commits and the layer GC they run): an import's new
	// layers are ready but unlisted until its image is made, and another
	// import's GC would delete them; two imports would make, or take for
	// half-made and delete, the same base device or layer.
	images sync.Mutex

	// volumes serializes what makes volume references and what removes
	// volumes: a container being created references a volume (perhaps one
	// it just made) only once its record is committed, and volume rm or
	// prune in between would find the volume unused.
	volumes sync.Mutex
}

// Start cleans whatever a previous daemon of this run directory left
// behind (mounts, loop devices, a dead FUSE mount) and serves FUSE there.
func Start(p *thinpool.Pool, runDir string, logf func(string, ...any)) (*Manager, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
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
	m := &Manager{pool: p, runDir: runDir, srv: srv, logf: logf, att: map[thinpool.DevID]*Attachment{},
		stop: make(chan struct{}), stopped: make(chan struct{}), mounted: map[string]*mountedContainer{},
		space: &spaceMonitor{pool: p, logf: logf}}
	if err := m.rollback(); err != nil {
		logf("roll back half-done steps: %v", err)
	}
	go m.commitLoop()
	return m, nil
}

// Offline returns a manager that only reads the pool's records: images,
// containers and volumes, listed and inspected from the pool's metadata
// with no daemon, the way lvs reads LVM metadata. It serves nothing: Attach,
// and what needs it, fail. Close does nothing; the caller closes the pool.
func Offline(p *thinpool.Pool) *Manager {
	return &Manager{pool: p, logf: func(string, ...any) {}, att: map[thinpool.DevID]*Attachment{},
		mounted: map[string]*mountedContainer{}}
}

// CommitPeriod is how often the daemon commits metadata changes that no
// flush has committed yet (discards, snapshots' copies), as dm-thin does
// every second: freed blocks then return to the pool and the host.
const CommitPeriod = time.Second

func (m *Manager) commitLoop() {
	defer close(m.stopped)
	tick := time.NewTicker(CommitPeriod)
	defer tick.Stop()
	space := time.NewTicker(SpaceCheckPeriod)
	defer space.Stop()
	m.space.check(false)
	for {
		select {
		case <-m.stop:
			return
		case <-space.C:
			m.space.check(false)
		case <-tick.C:
			if m.pool.Dirty() {
				if err := m.pool.Sync(); err != nil {
					m.logf("periodic commit: %v", err)
				}
			}
		}
	}
}

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

// Pool is the pool the manager serves.
func (m *Manager) Pool() *thinpool.Pool { return m.pool }

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
func (m *Manager) Attach(name string, readOnly bool) (*Attachment, error) {
	t, err := m.pool.Device(name)
	if err != nil {
		return nil, err
	}
	info := t.Info()
	if info.ReadOnly && !readOnly {
		readOnly = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if a, ok := m.att[info.ID]; ok {
		if a.ReadOnly != readOnly {
			return nil, reasonf(ErrBusy, "device %q is attached %s as %s", name, mode(a.ReadOnly), a.Loop)
		}
		c := *a
		return &c, nil
	}
	if m.srv == nil {
		return nil, reasonf(ErrBusy, "cannot attach %q: no daemon serves the pool", name)
	}
	file := fmt.Sprintf("dev-%d", info.ID)
	path, err := m.srv.Add(file, thinDev{t: t, space: m.space}, readOnly)
	if err != nil {
		return nil, err
	}
	loop, err := blockdev.Attach(path, blockdev.LoopOptions{ReadOnly: readOnly, DirectIO: true})
	if err != nil {
		_ = m.srv.Remove(file)
		return nil, err
	}
	a := &Attachment{Device: name, ID: uint32(info.ID), Loop: loop, File: path, ReadOnly: readOnly}
	m.att[info.ID] = a
	m.logf("attached %q as %s (%s)", name, loop, mode(readOnly))
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
func (m *Manager) find(key string) (*Attachment, bool) {
	for _, a := range m.att {
		if a.Loop == key || (a.MountDir != "" && a.MountDir == filepath.Clean(key)) {
			return a, true
		}
	}
	if t, err := m.pool.Device(key); err == nil {
		a, ok := m.att[t.ID()]
		return a, ok
	}
	return nil, false
}

// NotAttached is the error of Detach for a key (a device name or loop
// device) that is not attached; it matches ErrNotAttached. Without a
// daemon nothing is attached, and the CLI says so with this error.
func NotAttached(key string) error {
	return reasonf(ErrNotAttached, "no attached device or loop device named %q", key)
}

// NotMounted is the error of Umount for a key (a directory, loop device
// or device name) that nothing of ours is mounted at or named; it matches
// ErrNotAttached.
func NotMounted(key string) error {
	return reasonf(ErrNotAttached, "nothing of ours is mounted at or named %s", key)
}

// Detach stops serving a device (by name or loop device path). A mounted
// device must be unmounted first.
func (m *Manager) Detach(key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.find(key)
	if !ok {
		return NotAttached(key)
	}
	if dir, mounted := blockdev.MountedAt(a.Loop); mounted {
		return reasonf(ErrBusy, "device %q is mounted at %s; unmount it first (thinctl device umount %s)", a.Device, dir, dir)
	}
	return m.detachLocked(a)
}

func (m *Manager) detachLocked(a *Attachment) error {
	if err := blockdev.Detach(a.Loop); err != nil {
		return fmt.Errorf("detach %s: %w", a.Loop, err)
	}
	// The loop device lets go of the file asynchronously (autoclear).
	var err error
	for i := 0; i < 100; i++ {
		if err = m.srv.Remove(filepath.Base(a.File)); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	delete(m.att, thinpool.DevID(a.ID))
	m.logf("detached %q from %s", a.Device, a.Loop)
	// Writes the kernel never flushed become durable now (blockdev/doc.go).
	return errors.Join(err, m.pool.Sync())
}

// Attachments lists the attached devices, by device name.
func (m *Manager) Attachments() []Attachment {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Attachment, 0, len(m.att))
	for id, a := range m.att {
		c := *a
		if t, err := m.pool.DeviceByID(id); err == nil {
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
func (m *Manager) Busy(name string) error {
	t, err := m.pool.Device(name)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if a, ok := m.att[t.ID()]; ok {
		return reasonf(ErrBusy, "device %q is attached as %s; detach it first", name, a.Loop)
	}
	return nil
}

// Close unmounts what the manager mounted, detaches every loop device and
// stops serving FUSE. The pool stays open.
//
// Close checks before it tears anything down: while a process holds one of
// its mounts (Holders), it returns a *BusyError, which matches ErrInUse,
// and changes nothing. If an unmount still fails, or a filesystem still
// holds a loop device (mounted elsewhere too), Close stops there and
// returns the error: what is still mounted stays attached and served, so
// nothing is lost and Close can be called again.
func (m *Manager) Close() error {
	if m.srv == nil {
		return nil // offline: nothing is served
	}
	hs, err := m.Holders()
	if err != nil {
		return err
	}
	if len(hs) > 0 {
		return &BusyError{Holders: hs}
	}
	if err := m.unmountAll(); err != nil {
		return err
	}
	close(m.stop)
	<-m.stopped
	return m.srv.Close()
}

// unmountAll unmounts the containers, then every device's filesystem, and
// detaches the loop devices. It stops at the first failure.
func (m *Manager) unmountAll() error {
	// Containers first: their volume and bind mounts sit on their root
	// filesystem, which cannot be unmounted under them.
	m.mu.Lock()
	containers := make(map[string]*mountedContainer, len(m.mounted))
	for dev, mt := range m.mounted {
		containers[dev] = mt
	}
	m.mu.Unlock()
	for dev, mt := range containers {
		if err := m.unmountContainer(dev, mt); err != nil {
			return fmt.Errorf("unmount container %q: %w", strings.TrimPrefix(dev, containerPrefix), err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range m.att {
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
			return reasonf(ErrBusy, "%s (device %q) still holds a filesystem that is mounted elsewhere or lazily unmounted; not detaching it", a.Loop, a.Device)
		}
		if err := m.detachLocked(a); err != nil {
			return err
		}
	}
	return nil
}

// UnmountLazily syncs every filesystem the manager mounted and detaches
// each mount from the namespace (umount -l), busy or not. A filesystem a
// process still uses lives on, served as before, until the kernel releases
// it: call WaitReleased before Close. It returns the holders found before.
func (m *Manager) UnmountLazily() ([]Holder, error) {
	hs, err := m.Holders()
	if err != nil {
		return nil, err
	}
	dirs, err := blockdev.MountsOf(m.attachedLoops())
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, dir := range dirs { // longest first: a mount before the one it sits on
		if err := syncfs(dir); err != nil {
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
		m.logf("lazily unmounted %s", dir)
	}
	m.mu.Lock()
	clear(m.mounted)
	m.mu.Unlock()
	return hs, errors.Join(errs...)
}

func syncfs(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// WaitReleased waits, serving, until no filesystem holds any attached loop
// device: the processes that held lazily unmounted filesystems are gone.
// It calls wait every poll while it waits.
func (m *Manager) WaitReleased(poll time.Duration, wait func()) error {
	for {
		m.mu.Lock()
		var loops []string
		for _, a := range m.att {
			loops = append(loops, a.Loop)
		}
		m.mu.Unlock()
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
func (m *Manager) Resized(name string) error {
	t, err := m.pool.Device(name)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.att[t.ID()]
	if !ok {
		return nil
	}
	if err := m.srv.Resized(filepath.Base(a.File)); err != nil {
		return err
	}
	return blockdev.SetCapacity(a.Loop)
}
