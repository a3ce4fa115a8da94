package volumes

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/thinpool/thinpool/thinpool"
)

// MountSpec is a volume or bind mount of a container, as Docker's -v and
// --mount give them.
type MountSpec struct {
	Type     string `json:"type"`   // "volume" or "bind"
	Source   string `json:"source"` // volume name or absolute host directory
	Target   string `json:"target"` // absolute path inside the container
	ReadOnly bool   `json:"readOnly,omitempty"`
	// AutoCreate is set for -v NAME:/path: the volume is created if missing.
	AutoCreate bool `json:"autoCreate,omitempty"`
}

// ParseVolumeFlag parses -v SRC:/path[:ro|rw]: SRC is a volume name, or an
// absolute host path for a bind mount. -v /path alone is an anonymous
// volume, as in Docker: CreateContainer creates it with a random name.
func ParseVolumeFlag(s string) (MountSpec, error) {
	parts := strings.Split(s, ":")
	if len(parts) == 1 && strings.HasPrefix(s, "/") {
		return MountSpec{Type: "volume", Target: s}, nil
	}
	if len(parts) < 2 || len(parts) > 3 {
		return MountSpec{}, reasonf(thinpool.ErrInvalid, "-v %q: want SOURCE:/path[:ro] or /path", s)
	}
	m := MountSpec{Type: "volume", Source: parts[0], Target: parts[1], AutoCreate: true}
	if strings.HasPrefix(m.Source, "/") {
		m.Type, m.AutoCreate = "bind", false
	}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			m.ReadOnly = true
		case "rw":
		default:
			return MountSpec{}, reasonf(thinpool.ErrInvalid, "-v %q: mode %q is not ro or rw", s, parts[2])
		}
	}
	return m, nil
}

// ParseMountFlag parses --mount type=volume|bind,source=S,target=/p[,readonly].
func ParseMountFlag(s string) (MountSpec, error) {
	var m MountSpec
	for _, kv := range strings.Split(s, ",") {
		k, v, hasValue := strings.Cut(kv, "=")
		switch k {
		case "type":
			m.Type = v
		case "source", "src":
			m.Source = v
		case "target", "destination", "dst":
			m.Target = v
		case "readonly", "ro":
			m.ReadOnly = !hasValue || v == "true" || v == "1"
		default:
			return MountSpec{}, reasonf(thinpool.ErrInvalid, "--mount %q: unknown key %q", s, k)
		}
	}
	if m.Type != "volume" && m.Type != "bind" {
		return MountSpec{}, reasonf(thinpool.ErrInvalid, "--mount %q: type must be volume or bind", s)
	}
	return m, nil
}

// validate checks a spec, and for a volume mount that it exists (or will be
// created).
func (m *Manager) validateMount(s *MountSpec) error {
	if s.Target == "" || (s.Source == "" && s.Type != "volume") {
		return reasonf(thinpool.ErrInvalid, "mount needs a source and a target")
	}
	if !path.IsAbs(s.Target) || path.Clean(s.Target) == "/" {
		return reasonf(thinpool.ErrInvalid, "mount target %q must be an absolute path other than /", s.Target)
	}
	s.Target = path.Clean(s.Target)
	switch s.Type {
	case "bind":
		if !filepath.IsAbs(s.Source) {
			return reasonf(thinpool.ErrInvalid, "bind source %q must be an absolute host path", s.Source)
		}
		fi, err := os.Stat(s.Source)
		if err != nil {
			return reasonf(thinpool.ErrInvalid, "bind source %s: %v", s.Source, err)
		}
		if !fi.IsDir() {
			return reasonf(thinpool.ErrInvalid, "bind source %s is not a directory", s.Source)
		}
	case "volume":
		if s.Source == "" {
			return nil // anonymous: made by CreateContainer
		}
		if err := validObjectName("volume", s.Source); err != nil {
			return err
		}
		if _, err := lookup(m.pool, volumePrefix+s.Source, roleVolume, "volume", s.Source); err != nil {
			if !s.AutoCreate || !errors.Is(err, ErrNotFound) {
				return err
			}
		}
	}
	return nil
}

// ContainerOptions are the choices of CreateContainer.
type ContainerOptions struct {
	Image  string
	Size   int64 // bytes; 0 keeps the image's size
	Mounts []MountSpec
}

// Container is what 'container inspect' shows.
type Container struct {
	Name      string      `json:"name"`
	Image     string      `json:"image"`
	Device    string      `json:"device"`
	Size      int64       `json:"size"`
	UsedBytes int64       `json:"usedBytes"` // blocks the container changed (its copy-on-write layer)
	Mounts    []MountSpec `json:"mounts"`
	Created   time.Time   `json:"created"`
	MountedAt string      `json:"mountedAt,omitempty"`
}

func containerMounts(r record) []MountSpec {
	var specs []MountSpec
	_ = json.Unmarshal([]byte(r.labels[labelMounts]), &specs)
	return specs
}

// CreateContainer makes a writable snapshot of the image's top layer: it
// costs no data, and its first write to a block copies that block.
func (m *Manager) CreateContainer(name string, o ContainerOptions) (*Container, error) {
	if err := validObjectName("container", name); err != nil {
		return nil, err
	}
	img, err := m.image(o.Image)
	if err != nil {
		return nil, err
	}
	for i := range o.Mounts {
		if err := m.validateMount(&o.Mounts[i]); err != nil {
			return nil, err
		}
		for j := 0; j < i; j++ {
			if o.Mounts[j].Target == o.Mounts[i].Target {
				return nil, reasonf(thinpool.ErrInvalid, "two mounts at %s", o.Mounts[i].Target)
			}
		}
	}
	if o.Size != 0 && o.Size < img.info.Size {
		return nil, reasonf(thinpool.ErrInvalid, "--size %d is smaller than the image (%d bytes)", o.Size, img.info.Size)
	}
	m.volumes.Lock()
	defer m.volumes.Unlock()
	dev := containerPrefix + name
	if _, err := m.pool.Device(dev); err == nil {
		return nil, reasonf(ErrExists, "container %q already exists", name)
	}
	// Volumes named by -v are created first, as Docker does; so are the
	// anonymous ones (no source), with random names.
	var anonymous []string
	undoAnonymous := func(err error) (*Container, error) {
		errs := []error{err}
		for _, v := range anonymous {
			errs = append(errs, m.pool.Delete(volumePrefix+v))
		}
		return nil, errors.Join(errs...)
	}
	for i, s := range o.Mounts {
		switch {
		case s.Type == "volume" && s.Source == "":
			v, err := m.createVolume("", VolumeOptions{}, true)
			if err != nil {
				return undoAnonymous(err)
			}
			anonymous = append(anonymous, v.Name)
			o.Mounts[i].Source = v.Name
		case s.Type == "volume" && s.AutoCreate:
			if _, err := lookup(m.pool, volumePrefix+s.Source, roleVolume, "volume", s.Source); errors.Is(err, ErrNotFound) {
				if _, err := m.CreateVolume(s.Source, VolumeOptions{}); err != nil {
					return undoAnonymous(err)
				}
			}
		}
	}
	// The snapshot and its record are one commit; a container that must
	// grow is ready only once its filesystem has.
	labels := map[string]string{labelRole: roleContainer, labelState: stateReady, labelCreated: now(),
		labelImage: img.labels[labelRef], labelMounts: jsonLabel(o.Mounts), labelFS: img.labels[labelFS]}
	grow := o.Size > img.info.Size
	if grow {
		labels[labelSizeRq], labels[labelState] = fmt.Sprint(o.Size), stateCreating
	}
	if _, err := m.pool.SnapshotLabeled(img.name(), dev, false, labels); err != nil {
		if errors.Is(err, thinpool.ErrExists) {
			return undoAnonymous(reasonf(ErrExists, "container %q already exists", name))
		}
		return undoAnonymous(err)
	}
	if grow {
		if err := m.grow(dev, img.labels[labelFS], o.Size); err != nil {
			return undoAnonymous(errors.Join(err, m.pool.Delete(dev)))
		}
		labels[labelState] = stateReady
		if err := m.pool.SetLabels(dev, labels); err != nil {
			return undoAnonymous(errors.Join(err, m.pool.Delete(dev)))
		}
	}
	return m.InspectContainer(name)
}

// grow resizes a device holding a filesystem, and the filesystem. A write
// the device failed while the filesystem grew fails it.
func (m *Manager) grow(dev, fs string, size int64) error {
	if err := m.pool.Resize(dev, size); err != nil {
		return err
	}
	return m.host.GrowFS(dev, fs)
}

func (m *Manager) container(name string) (record, error) {
	return lookup(m.pool, containerPrefix+name, roleContainer, "container", name)
}

func (m *Manager) containerView(r record) *Container {
	c := &Container{Name: strings.TrimPrefix(r.name(), containerPrefix), Image: r.labels[labelImage], Device: r.name(),
		Size: r.info.Size, Mounts: containerMounts(r), Created: r.created()}
	if c.Mounts == nil {
		c.Mounts = []MountSpec{}
	}
	if t, err := m.pool.Device(r.name()); err == nil {
		if u, err := t.Usage(); err == nil {
			c.UsedBytes = int64(u.Exclusive) * m.pool.BlockSize()
		}
	}
	m.mu.Lock()
	if mt, ok := m.mounted[r.name()]; ok {
		c.MountedAt = mt.root
	}
	m.mu.Unlock()
	return c
}

// InspectContainer describes one container.
func (m *Manager) InspectContainer(name string) (*Container, error) {
	r, err := m.container(name)
	if err != nil {
		return nil, err
	}
	return m.containerView(r), nil
}

// ListContainers lists the ready containers.
func (m *Manager) ListContainers() []*Container {
	var out []*Container
	for _, r := range records(m.pool, roleContainer) {
		if r.ready() {
			out = append(out, m.containerView(r))
		}
	}
	return out
}

// mountedContainer is a container's root filesystem and the mounts on it.
type mountedContainer struct {
	root    string
	targets []string // mounted inside root, in mount order
	volumes []string
}

// MountContainer mounts a container's root filesystem at dir and, under it,
// its volumes and bind mounts.
func (m *Manager) MountContainer(name, dir string) (*Container, error) {
	r, err := m.container(name)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	if mt, ok := m.mounted[r.name()]; ok {
		m.mu.Unlock()
		return nil, reasonf(ErrInUse, "container %q is mounted at %s", name, mt.root)
	}
	m.mu.Unlock()
	dir = filepath.Clean(dir)
	if err := m.host.Mount(r.name(), dir); err != nil {
		return nil, err
	}
	mt := &mountedContainer{root: dir}
	undo := func(err error) (*Container, error) {
		return nil, errors.Join(err, m.unmountContainer(r.name(), mt))
	}
	specs := containerMounts(r)
	sort.SliceStable(specs, func(i, j int) bool { return strings.Count(specs[i].Target, "/") < strings.Count(specs[j].Target, "/") })
	for _, s := range specs {
		src := s.Source
		if s.Type == "volume" {
			if src, err = m.mountVolume(s.Source); err != nil {
				return undo(err)
			}
			mt.volumes = append(mt.volumes, s.Source)
		}
		target, err := m.host.Bind(dir, s.Target, src, s.ReadOnly)
		if err != nil {
			return undo(fmt.Errorf("mount %s at %s: %w", s.Source, s.Target, err))
		}
		mt.targets = append(mt.targets, target)
	}
	m.mu.Lock()
	m.mounted[r.name()] = mt
	m.mu.Unlock()
	return m.containerView(r), nil
}

// UnmountContainer unmounts a container's mounts and root filesystem, and
// the volumes no other mounted container uses.
func (m *Manager) UnmountContainer(name string) error {
	r, err := m.container(name)
	if err != nil {
		return err
	}
	m.mu.Lock()
	mt, ok := m.mounted[r.name()]
	m.mu.Unlock()
	if !ok {
		return reasonf(ErrNotAttached, "container %q is not mounted", name)
	}
	return m.unmountContainer(r.name(), mt)
}

func (m *Manager) unmountContainer(dev string, mt *mountedContainer) error {
	var errs []error
	for i := len(mt.targets) - 1; i >= 0; i-- {
		if err := m.host.Unbind(mt.targets[i]); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mt.targets[i], err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := m.host.Unmount(mt.root); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.mounted, dev)
	inUse := map[string]bool{}
	for _, other := range m.mounted {
		for _, v := range other.volumes {
			inUse[v] = true
		}
	}
	m.mu.Unlock()
	for _, v := range mt.volumes {
		if !inUse[v] {
			if err := m.host.Unmount(m.volumeMountpoint(v)); err != nil && !errors.Is(err, ErrNotAttached) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// RemoveContainer deletes a container's writable layer; its volumes stay.
// A mounted container is refused unless force, which unmounts it first.
func (m *Manager) RemoveContainer(name string, force bool) error {
	r, err := m.container(name)
	if err != nil {
		return err
	}
	m.mu.Lock()
	mt, mounted := m.mounted[r.name()]
	m.mu.Unlock()
	if mounted {
		if !force {
			return reasonf(ErrInUse, "container %q is mounted at %s; unmount it or use -f", name, mt.root)
		}
		if err := m.unmountContainer(r.name(), mt); err != nil {
			return err
		}
	}
	if err := m.host.Busy(r.name()); err != nil {
		return err
	}
	return m.pool.Delete(r.name())
}

// RemoveAnonymousVolumes removes the anonymous volumes that specs mount and
// that no container references any more, as docker rm -v does; named
// volumes stay. It returns their names.
func (m *Manager) RemoveAnonymousVolumes(specs []MountSpec) ([]string, error) {
	m.volumes.Lock()
	defer m.volumes.Unlock()
	users := m.volumeUsers()
	var removed []string
	for _, s := range specs {
		if s.Type != "volume" || len(users[s.Source]) > 0 {
			continue
		}
		r, err := lookup(m.pool, volumePrefix+s.Source, roleVolume, "volume", s.Source)
		if errors.Is(err, ErrNotFound) || (err == nil && r.labels[labelAnonymous] != "true") {
			continue
		}
		if err == nil {
			err = m.removeVolume(s.Source)
		}
		if err != nil {
			return removed, err
		}
		removed = append(removed, s.Source)
	}
	return removed, nil
}
