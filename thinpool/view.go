package thinpool

import (
	"encoding/hex"
	"slices"

	"github.com/thinpool/thinpool/extent"
)

// View is the pool's metadata at one point in time: its usage and every
// device with its mappings, as one transaction left them. Dumps use it, so
// that a dump of a pool in use is consistent.
type View struct {
	Usage   Usage
	Devices []DeviceView // ordered by id
}

// DeviceView is one device of a View.
type DeviceView struct {
	DeviceInfo
	// Mappings are the device's extents in virtual order, adjacent ones
	// merged. Pool blocks may be shared with other devices.
	Mappings []extent.Mapping
}

// View returns the pool's metadata at this moment. It holds the lock only
// to take lazy clones of the maps (O(devices)); the mappings are read
// from the clones afterwards, while the pool goes on.
func (p *Pool) View() (*View, error) {
	p.syncMu.Lock()
	journal := p.journalOff
	p.mu.RLock()
	if err := p.usable(); err != nil {
		p.mu.RUnlock()
		p.syncMu.Unlock()
		return nil, err
	}
	v := &View{Usage: p.usageLocked(journal), Devices: make([]DeviceView, 0, len(p.st.devs))}
	maps := make([]*extent.Map, 0, len(p.st.devs))
	for _, d := range p.st.devs {
		v.Devices = append(v.Devices, DeviceView{DeviceInfo: p.info(d)})
		if p.st.trees == nil {
			maps = append(maps, d.mem().Clone())
			continue
		}
		// Format 3 reads the mappings under the lock for now; sharing the
		// roots (IncRoot) and reading after would not stop the pool.
		m := extent.NewMap()
		if err := d.m.Ascend(func(e extent.Mapping) bool {
			m.AppendSorted(e)
			return true
		}); err != nil {
			p.mu.RUnlock()
			p.syncMu.Unlock()
			return nil, err
		}
		maps = append(maps, m)
	}
	p.mu.RUnlock()
	p.syncMu.Unlock()
	for i, m := range maps {
		ms := make([]extent.Mapping, 0, m.Len())
		m.Ascend(func(e extent.Mapping) bool {
			ms = append(ms, e)
			return true
		})
		v.Devices[i].Mappings = ms
	}
	slices.SortFunc(v.Devices, func(a, b DeviceView) int { return int(a.ID) - int(b.ID) })
	return v, nil
}

// FormatUUID writes a pool UUID in the usual 8-4-4-4-12 hex form.
func FormatUUID(u [16]byte) string {
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
