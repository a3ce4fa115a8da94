package volumes

import (
	"fmt"
	"strings"
	"sync"

	"github.com/thinpool/thinpool/errdefs"
	"github.com/thinpool/thinpool/thinpool"
)

var (
	// ErrBusy is returned when a device is attached or mounted and the
	// operation needs it not to be.
	ErrBusy = errdefs.New(errdefs.ErrInUse, "volumes: device is busy")
	// ErrNotAttached is returned when a device, directory or container
	// named is not attached or mounted.
	ErrNotAttached = errdefs.New(errdefs.ErrNotFound, "volumes: not attached")
)

// Manager keeps a pool's images, containers and volumes: records in the
// pool's metadata, and the containers mounted now. It reaches the kernel
// only through its Host.
type Manager struct {
	pool *thinpool.Pool
	host Host
	// workDir holds the manager's scratch directories: a layer being
	// applied is mounted under workDir/layers.
	workDir string
	logf    func(format string, args ...any)

	// mu guards mounted.
	mu sync.Mutex
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

// New returns the manager of the pool's objects, which reaches the kernel
// through host and keeps its scratch directories under workDir (the
// daemon's run directory). It first rolls back the steps a crash left
// half-made; a failure there is logged, not returned.
func New(p *thinpool.Pool, host Host, workDir string, logf func(string, ...any)) *Manager {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	m := &Manager{pool: p, host: host, workDir: workDir, logf: logf, mounted: map[string]*mountedContainer{}}
	if err := m.rollback(); err != nil {
		logf("roll back half-done steps: %v", err)
	}
	return m
}

// Offline returns a manager that only reads the pool's records: images,
// containers and volumes, listed and inspected from the pool's metadata
// with no daemon, the way lvs reads LVM metadata. It has no host: what
// needs a device served or mounted fails with ErrNoHost. The caller closes
// the pool.
func Offline(p *thinpool.Pool) *Manager {
	return &Manager{pool: p, host: offlineHost{}, logf: func(string, ...any) {}, mounted: map[string]*mountedContainer{}}
}

// Pool is the pool the manager keeps its records in.
func (m *Manager) Pool() *thinpool.Pool { return m.pool }

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

// UnmountAll unmounts every mounted container: its volume and bind mounts,
// then its root filesystem. It stops at the first failure. The daemon
// calls it before it tears down the devices, which the mounts sit on.
func (m *Manager) UnmountAll() error {
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
	return nil
}

// ForgetMounts forgets the mounted containers, once the host has unmounted
// them from the namespace another way (lazily, for a forced stop).
func (m *Manager) ForgetMounts() {
	m.mu.Lock()
	clear(m.mounted)
	m.mu.Unlock()
}
