package volumes

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/thinpool/thinpool/blockdev"
	"github.com/thinpool/thinpool/thinpool"
)

// MountOptions are the choices of Manager.Mount.
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

// Probe returns the filesystem type found on the device ("ext4", "xfs"),
// or "" if it has none we know.
func Probe(t *thinpool.Thin) (string, error) {
	b := make([]byte, 4096)
	if _, err := t.ReadAt(b, 0); err != nil && t.Size() >= int64(len(b)) {
		return "", err
	}
	switch {
	case bytes.Equal(b[:4], []byte("XFSB")):
		return "xfs", nil
	case binary.LittleEndian.Uint16(b[1024+56:]) == 0xEF53:
		return "ext4", nil // ext2/3/4 share the magic; mount with ext4
	}
	return "", nil
}

// Mount attaches the device called name if needed, makes a filesystem on
// it if it has none and o.Mkfs asks for one, and mounts it at dir.
func (m *Manager) Mount(name, dir string, o MountOptions) (*MountResult, error) {
	switch o.Mkfs {
	case "", "ext4", "xfs":
	default:
		return nil, reasonf(thinpool.ErrInvalid, "--mkfs %q: ext4 or xfs", o.Mkfs)
	}
	dir = filepath.Clean(dir)
	t, err := m.pool.Device(name)
	if err != nil {
		return nil, err
	}
	fstype, err := Probe(t)
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
	m.mu.Lock()
	a, attached := m.att[t.ID()]
	m.mu.Unlock()
	if attached {
		if cur, ok := blockdev.MountedAt(a.Loop); ok {
			return nil, reasonf(ErrBusy, "device %q is already mounted at %s", name, cur)
		}
	}
	at, err := m.Attach(name, ro && !format)
	if err != nil {
		return nil, err
	}
	res := &MountResult{Attachment: *at}
	fail := func(err error) (*MountResult, error) {
		if !attached {
			_ = m.Detach(at.Loop)
		}
		return nil, err
	}
	if format {
		before := m.pool.Usage().UsedBlocks
		if err := firstCause(blockdev.Mkfs(at.Loop, o.Mkfs), m.writeErr(at.Loop)); err != nil {
			return fail(err)
		}
		if err := m.pool.Sync(); err != nil {
			return fail(err)
		}
		fstype, res.Formatted = o.Mkfs, true
		res.MkfsCost = int64(m.pool.Usage().UsedBlocks-before) * m.pool.BlockSize()
		m.logf("made %s on %q (%s): %d bytes of pool", fstype, name, at.Loop, res.MkfsCost)
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
	m.mu.Lock()
	if cur, ok := m.att[t.ID()]; ok {
		cur.MountDir, cur.FSType = dir, fstype
	}
	m.mu.Unlock()
	res.MountDir, res.FSType = dir, fstype
	m.logf("mounted %q (%s) at %s", name, at.Loop, dir)
	return res, nil
}

// Umount unmounts the filesystem of a device (by mount directory, device
// name or loop device) and detaches it.
func (m *Manager) Umount(key string) error {
	m.mu.Lock()
	a, ok := m.find(key)
	var loop string
	if ok {
		loop = a.Loop
	}
	m.mu.Unlock()
	if !ok {
		return NotMounted(key)
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
	return m.Detach(loop)
}
