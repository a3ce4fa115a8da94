package thinpool

import (
	"maps"
	"slices"
	"time"

	"github.com/thinpool/thinpool/errdefs"
	"github.com/thinpool/thinpool/extent"
)

// DeviceInfo describes a thin device.
type DeviceInfo struct {
	ID   DevID
	Name string
	// Size is the virtual size in bytes.
	Size int64
	// Origin is the device this one was snapshotted from (0 if none), and
	// OriginName its name if it still exists.
	Origin     DevID
	OriginName string
	ReadOnly   bool
	Created    time.Time
	Labels     map[string]string
}

func (p *Pool) info(d *device) DeviceInfo {
	m := d.meta
	i := DeviceInfo{ID: m.id, Name: m.name, Size: int64(m.size), Origin: m.origin,
		ReadOnly: m.readOnly(), Created: time.Unix(0, m.created), Labels: maps.Clone(m.labels)}
	if o, ok := p.st.devs[m.origin]; ok {
		i.OriginName = o.meta.name
	}
	return i
}

// Devices lists every device, ordered by id.
func (p *Pool) Devices() []DeviceInfo {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]DeviceInfo, 0, len(p.st.devs))
	for _, d := range p.st.devs {
		out = append(out, p.info(d))
	}
	slices.SortFunc(out, func(a, b DeviceInfo) int { return int(a.ID) - int(b.ID) })
	return out
}

// lookup finds a live device by name. Called with mu held.
func (p *Pool) lookup(name string) (*device, error) {
	if err := p.usable(); err != nil {
		return nil, err
	}
	d, ok := p.st.names[name]
	if !ok {
		return nil, errdefs.Newf(ErrNotFound, "device %q not found", name)
	}
	return d, nil
}

// Device returns a handle to the device called name.
func (p *Pool) Device(name string) (*Thin, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	d, err := p.lookup(name)
	if err != nil {
		return nil, err
	}
	return &Thin{p: p, d: d}, nil
}

// DeviceByID returns a handle to the device with the given id.
func (p *Pool) DeviceByID(id DevID) (*Thin, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if err := p.usable(); err != nil {
		return nil, err
	}
	d, ok := p.st.devs[id]
	if !ok {
		return nil, errdefs.Newf(ErrNotFound, "device id %d not found", id)
	}
	return &Thin{p: p, d: d}, nil
}

func checkSize(size int64) error {
	if size <= 0 || size%SectorSize != 0 || size > MaxDeviceSize {
		return invalidf("size %d is not a positive multiple of %d bytes up to %d", size, SectorSize, int64(MaxDeviceSize))
	}
	return nil
}

// CreateThin creates an empty thin device of size bytes (a multiple of
// SectorSize; it may exceed the pool) and commits it.
func (p *Pool) CreateThin(name string, size int64, labels map[string]string) (*Thin, error) {
	if err := checkSize(size); err != nil {
		return nil, err
	}
	meta := &devMeta{origin: 0, size: uint64(size), created: time.Now().UnixNano(), name: name, labels: maps.Clone(labels)}
	return p.create(opCreate, meta, nil)
}

// Snapshot creates a device called name that shares every block of origin
// (copy-on-write), and commits it. Writes to origin wait while it is taken,
// so the snapshot holds exactly the writes that completed before. The cost
// is one reference update per extent of origin, whatever its size.
func (p *Pool) Snapshot(origin, name string, readOnly bool) (*Thin, error) {
	return p.SnapshotLabeled(origin, name, readOnly, nil)
}

// SnapshotLabeled is Snapshot with labels for the new device, committed
// atomically with it.
func (p *Pool) SnapshotLabeled(origin, name string, readOnly bool, labels map[string]string) (*Thin, error) {
	p.mu.RLock()
	err := p.usable()
	d, ok := p.st.names[origin]
	p.mu.RUnlock()
	if err == nil && !ok {
		err = errdefs.Newf(ErrNotFound, "origin %q not found", origin)
	}
	if err != nil {
		return nil, err
	}
	d.wgate.Lock()
	defer d.wgate.Unlock()
	// create fills in the origin's id and size under the lock.
	meta := &devMeta{created: time.Now().UnixNano(), name: name, labels: maps.Clone(labels)}
	if readOnly {
		meta.flags = flagReadOnly
	}
	return p.create(opSnapshot, meta, d)
}

func (p *Pool) create(kind opKind, meta *devMeta, origin *device) (*Thin, error) {
	p.mu.Lock()
	if err := p.usable(); err != nil {
		p.mu.Unlock()
		return nil, err
	}
	extra := meta.encodedSize() + devHeaderSize
	if origin != nil {
		if origin.deleted {
			p.mu.Unlock()
			return nil, errdefs.Newf(ErrNotFound, "origin %q not found", origin.meta.name)
		}
		meta.origin, meta.size = origin.meta.id, origin.meta.size
		extra += entries(origin.m) * growSnapshot
	}
	if err := ValidateName(meta.name); err != nil {
		p.mu.Unlock()
		return nil, err
	}
	if _, ok := p.st.names[meta.name]; ok {
		p.mu.Unlock()
		return nil, errdefs.Newf(ErrExists, "device %q already exists", meta.name)
	}
	if err := validateLabels(meta.labels); err != nil {
		p.mu.Unlock()
		return nil, err
	}
	if err := p.admit(extra, 0); err != nil {
		p.mu.Unlock()
		return nil, err
	}
	meta.id = p.st.nextID
	if err := p.applyLocked(op{kind: kind, dev: meta.id, meta: meta}); err != nil {
		p.mu.Unlock()
		return nil, err
	}
	t := &Thin{p: p, d: p.st.devs[meta.id]}
	p.mu.Unlock()
	return t, p.Sync()
}

// Delete removes the device called name and commits. Its blocks that no
// other device shares become free once the delete is committed. Snapshots of
// it are not affected.
func (p *Pool) Delete(name string) error {
	p.mu.RLock()
	d, err := p.lookup(name)
	p.mu.RUnlock()
	if err != nil {
		return err
	}
	d.wgate.Lock()
	p.mu.Lock()
	if err = p.usable(); err == nil && d.deleted {
		err = errdefs.Newf(ErrNotFound, "device %q not found", name)
	}
	if err == nil {
		// Dropping references can split reference runs (M1).
		err = p.admit(entries(d.m)*growSegment-entries(d.m)*mappingSize-d.meta.encodedSize(), 0)
	}
	if err == nil {
		err = p.applyLocked(op{kind: opDelete, dev: d.meta.id})
	}
	p.mu.Unlock()
	d.wgate.Unlock()
	if err != nil {
		return err
	}
	return p.Sync()
}

// update applies change to a copy of the record of the device called name,
// then journals and commits it.
func (p *Pool) update(name string, change func(*devMeta) error) error {
	p.mu.Lock()
	d, err := p.lookup(name)
	if err != nil {
		p.mu.Unlock()
		return err
	}
	m := d.meta.clone()
	if err = change(m); err == nil {
		err = p.admit(m.encodedSize()-d.meta.encodedSize(), 0)
	}
	if err == nil {
		err = p.applyLocked(op{kind: opUpdate, dev: m.id, meta: m})
	}
	p.mu.Unlock()
	if err != nil {
		return err
	}
	return p.Sync()
}

// Rename gives a device a new name.
func (p *Pool) Rename(name, newName string) error {
	if err := ValidateName(newName); err != nil {
		return err
	}
	return p.update(name, func(m *devMeta) error {
		if _, ok := p.st.names[newName]; ok && newName != name {
			return errdefs.Newf(ErrExists, "device %q already exists", newName)
		}
		m.name = newName
		return nil
	})
}

// Resize grows a device to size bytes. Shrinking is refused.
func (p *Pool) Resize(name string, size int64) error {
	if err := checkSize(size); err != nil {
		return err
	}
	return p.update(name, func(m *devMeta) error {
		if uint64(size) < m.size {
			return invalidf("cannot shrink %q from %d to %d bytes", name, m.size, size)
		}
		if m.readOnly() {
			return errdefs.Newf(ErrReadOnly, "device %q is read-only", name)
		}
		m.size = uint64(size)
		return nil
	})
}

// SetReadOnly marks a device read-only or writable.
func (p *Pool) SetReadOnly(name string, readOnly bool) error {
	return p.update(name, func(m *devMeta) error {
		m.flags &^= flagReadOnly
		if readOnly {
			m.flags |= flagReadOnly
		}
		return nil
	})
}

// SetLabels replaces the labels of a device. They are committed atomically
// with the rest of the pool's metadata.
func (p *Pool) SetLabels(name string, labels map[string]string) error {
	if err := validateLabels(labels); err != nil {
		return err
	}
	return p.update(name, func(m *devMeta) error {
		m.labels = maps.Clone(labels)
		return nil
	})
}

// Mappings returns the extents of the device called name, in virtual order.
func (p *Pool) Mappings(name string) ([]extent.Mapping, error) {
	p.mu.RLock()
	d, err := p.lookup(name)
	if err != nil {
		p.mu.RUnlock()
		return nil, err
	}
	var out []extent.Mapping
	err = d.m.Ascend(func(m extent.Mapping) bool {
		out = append(out, m)
		return true
	})
	p.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	return out, nil
}
