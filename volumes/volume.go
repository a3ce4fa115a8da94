package volumes

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/thinpool/thinpool/thinpool"
)

// DefaultVolumeSize is the size of a volume created without one.
const DefaultVolumeSize = 10 << 30

// VolumeOptions are the choices of CreateVolume.
type VolumeOptions struct {
	Size   int64  // bytes; 0 means DefaultVolumeSize
	FS     string // ext4 (default) or xfs
	Labels map[string]string
}

// Volume is what 'volume inspect' shows, shaped like docker volume inspect.
type Volume struct {
	Name       string            `json:"name"`
	Driver     string            `json:"driver"`
	Mountpoint string            `json:"mountpoint"`
	CreatedAt  string            `json:"createdAt"`
	Labels     map[string]string `json:"labels"`
	Options    map[string]string `json:"options"`
	Scope      string            `json:"scope"`
	Size       int64             `json:"size"`      // virtual size in bytes
	UsedBytes  int64             `json:"usedBytes"` // pool bytes mapped
	Device     string            `json:"device"`    // the thin device
	InUseBy    []string          `json:"inUseBy"`   // containers that reference it
	Mounted    bool              `json:"mounted"`
	// Anonymous is set for a volume a container's mount with no source
	// made (-v /path); volume prune removes only these unless --all.
	Anonymous bool `json:"anonymous"`
}

// Root is the directory under which volumes are mounted: the pool file's
// directory.
func (m *Manager) Root() string { return filepath.Dir(m.pool.Path()) }

func (m *Manager) volumeMountpoint(name string) string {
	return filepath.Join(m.Root(), "volumes", name, "_data")
}

func randomName() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// CreateVolume makes a thin device with its own filesystem. An empty name
// gets a random one, as Docker does; the volume is still a named one
// (only a container's mount with no source makes an anonymous volume).
func (m *Manager) CreateVolume(name string, o VolumeOptions) (*Volume, error) {
	return m.createVolume(name, o, false)
}

// createVolume makes a volume; anonymous ones carry labelAnonymous.
func (m *Manager) createVolume(name string, o VolumeOptions, anonymous bool) (*Volume, error) {
	if name == "" {
		name = randomName()
	}
	if err := validObjectName("volume", name); err != nil {
		return nil, err
	}
	if o.Size == 0 {
		o.Size = DefaultVolumeSize
	}
	if o.FS == "" {
		o.FS = "ext4"
	}
	if o.FS != "ext4" && o.FS != "xfs" {
		return nil, reasonf(thinpool.ErrInvalid, "--fs %q: ext4 or xfs", o.FS)
	}
	labels := map[string]string{labelRole: roleVolume, labelState: stateCreating, labelFS: o.FS, labelCreated: now()}
	for k, v := range o.Labels {
		labels[labelUser+k] = v
	}
	if anonymous {
		labels[labelAnonymous] = "true"
	}
	dev := volumePrefix + name
	if _, err := m.pool.CreateThin(dev, (o.Size+thinpool.SectorSize-1)/thinpool.SectorSize*thinpool.SectorSize, labels); err != nil {
		if errors.Is(err, thinpool.ErrExists) {
			return nil, reasonf(ErrExists, "volume %q already exists", name)
		}
		return nil, err
	}
	if err := m.host.Mkfs(dev, o.FS); err != nil {
		return nil, errors.Join(fmt.Errorf("volume %q: %w", name, err), m.pool.Delete(dev))
	}
	labels[labelState] = stateReady
	if err := m.pool.SetLabels(dev, labels); err != nil {
		return nil, errors.Join(err, m.pool.Delete(dev))
	}
	return m.InspectVolume(name)
}

func (m *Manager) volumeView(r record, users map[string][]string) *Volume {
	name := strings.TrimPrefix(r.name(), volumePrefix)
	v := &Volume{
		Name: name, Driver: "thinpool", Mountpoint: m.volumeMountpoint(name),
		CreatedAt: r.created().Format("2006-01-02T15:04:05Z07:00"), Labels: map[string]string{},
		Options: map[string]string{"size": fmt.Sprint(r.info.Size), "fs": r.labels[labelFS]},
		Scope:   "local", Size: r.info.Size, Device: r.name(), InUseBy: users[name],
		Anonymous: r.labels[labelAnonymous] == "true",
	}
	if v.InUseBy == nil {
		v.InUseBy = []string{}
	}
	for k, val := range r.labels {
		if after, ok := strings.CutPrefix(k, labelUser); ok {
			v.Labels[after] = val
		}
	}
	if t, err := m.pool.Device(r.name()); err == nil {
		if u, err := t.Usage(); err == nil {
			v.UsedBytes = int64(u.Mapped) * m.pool.BlockSize()
		}
	}
	v.Mounted = m.host.Mounted(v.Mountpoint)
	return v
}

// volumeUsers maps each volume name to the containers that reference it.
func (m *Manager) volumeUsers() map[string][]string {
	users := map[string][]string{}
	for _, c := range records(m.pool, roleContainer) {
		for _, s := range containerMounts(c) {
			if s.Type == "volume" {
				users[s.Source] = append(users[s.Source], strings.TrimPrefix(c.name(), containerPrefix))
			}
		}
	}
	return users
}

// InspectVolume describes one volume.
func (m *Manager) InspectVolume(name string) (*Volume, error) {
	r, err := lookup(m.pool, volumePrefix+name, roleVolume, "volume", name)
	if err != nil {
		return nil, err
	}
	return m.volumeView(r, m.volumeUsers()), nil
}

// VolumeFilter selects volumes in ListVolumes.
type VolumeFilter struct {
	Dangling *bool             // referenced by no container (true) or by some (false)
	Labels   map[string]string // every label must match; an empty value matches any value
}

// ListVolumes lists the ready volumes that match f.
func (m *Manager) ListVolumes(f VolumeFilter) []*Volume {
	users := m.volumeUsers()
	var out []*Volume
	for _, r := range records(m.pool, roleVolume) {
		if !r.ready() {
			continue
		}
		v := m.volumeView(r, users)
		if f.Dangling != nil && (len(v.InUseBy) == 0) != *f.Dangling {
			continue
		}
		match := true
		for k, want := range f.Labels {
			got, ok := v.Labels[k]
			match = match && ok && (want == "" || got == want)
		}
		if match {
			out = append(out, v)
		}
	}
	return out
}

// RemoveVolume deletes a volume and its data. As Docker does, it is
// refused while any container references it, mounted or not (the error
// names them and matches ErrInUse), and while it is mounted.
func (m *Manager) RemoveVolume(name string) error {
	m.volumes.Lock()
	defer m.volumes.Unlock()
	return m.removeVolume(name)
}

// removeVolume is RemoveVolume, called with m.volumes held.
func (m *Manager) removeVolume(name string) error {
	r, err := lookup(m.pool, volumePrefix+name, roleVolume, "volume", name)
	if err != nil {
		return err
	}
	if users := m.volumeUsers()[name]; len(users) > 0 {
		return reasonf(ErrInUse, "volume %q is used by container(s) %s; remove them first", name, strings.Join(users, ", "))
	}
	if m.host.Mounted(m.volumeMountpoint(name)) {
		return reasonf(ErrInUse, "volume %q is mounted at %s by a running container", name, m.volumeMountpoint(name))
	}
	if err := m.host.Busy(r.name()); err != nil {
		return err
	}
	if err := m.pool.Delete(r.name()); err != nil {
		return err
	}
	_ = os.RemoveAll(filepath.Dir(m.volumeMountpoint(name)))
	return nil
}

// PruneVolumes removes the anonymous volumes no container references, and
// with all the named ones too, as docker volume prune [--all] does. It
// returns their names.
func (m *Manager) PruneVolumes(all bool) ([]string, error) {
	m.volumes.Lock()
	defer m.volumes.Unlock()
	dangling := true
	var removed []string
	for _, v := range m.ListVolumes(VolumeFilter{Dangling: &dangling}) {
		if v.Mounted || !(v.Anonymous || all) {
			continue
		}
		if err := m.removeVolume(v.Name); err != nil {
			return removed, err
		}
		removed = append(removed, v.Name)
	}
	return removed, nil
}

// mountVolume mounts a volume at its mountpoint if it is not mounted yet.
func (m *Manager) mountVolume(name string) (string, error) {
	r, err := lookup(m.pool, volumePrefix+name, roleVolume, "volume", name)
	if err != nil {
		return "", err
	}
	dir := m.volumeMountpoint(name)
	if m.host.Mounted(dir) {
		return dir, nil
	}
	if err := m.host.Mount(r.name(), dir); err != nil {
		return "", fmt.Errorf("mount volume %q: %w", name, err)
	}
	return dir, nil
}
