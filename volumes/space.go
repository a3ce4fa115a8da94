package volumes

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/thinpool/thinpool/thinpool"
)

// Low space, as LVM handles it: dmeventd warns when a thin pool's data or
// metadata use crosses 80%, 90% and 95%, and with
// thin_pool_autoextend_threshold and thin_pool_autoextend_percent set it
// extends the pool when use crosses the threshold.
//
// REF: https://man7.org/linux/man-pages/man7/lvmthin.7.html ("Automatically
// extend thin pool LV", "Thin pool usage monitoring").

// The configuration device holds pool-wide settings as labels, since the
// engine keeps no other key/value store: they commit with the metadata and
// travel with the pool file. It is never written, so it costs no data.
const (
	configDevice = "thinpool.config"
	roleConfig   = "config"

	// Label keys on configDevice. Part of the pool's metadata format; see
	// FORMAT.md "Device labels used by thinpool itself". Do not rename.
	labelAutoextendThreshold = "autoextend.threshold"
	labelAutoextendPercent   = "autoextend.percent"
)

// DefaultAutoextendPercent is LVM's thin_pool_autoextend_percent default.
const DefaultAutoextendPercent = 20

// Autoextend is the pool's autoextend policy, as LVM's
// thin_pool_autoextend_threshold and thin_pool_autoextend_percent: when data
// (or metadata) use reaches Threshold percent, the daemon grows the data
// area (or the metadata area, up to its reserve) by Percent percent of its
// size, as often as needed to go back below Threshold, while the host file
// system has room. Threshold 0 (or 100, as in LVM) turns it off.
type Autoextend struct {
	Threshold int `json:"threshold"`
	Percent   int `json:"percent"`
}

// Enabled reports whether the policy grows the pool at all.
func (a Autoextend) Enabled() bool { return a.Threshold > 0 && a.Threshold < 100 }

// Validate refuses what LVM refuses: a threshold below 50 (LVM raises it
// to 50; we say so instead) or above 100, and a percent that grows nothing.
func (a Autoextend) Validate() error {
	switch {
	case a.Threshold != 0 && (a.Threshold < 50 || a.Threshold > 100):
		return reasonf(thinpool.ErrInvalid, "autoextend threshold %d%%: want 50 to 100 (100 or 0 turns autoextend off)", a.Threshold)
	case a.Percent < 0 || a.Percent > 1000:
		return reasonf(thinpool.ErrInvalid, "autoextend percent %d%%: want 1 to 1000", a.Percent)
	case a.Enabled() && a.Percent == 0:
		return reasonf(thinpool.ErrInvalid, "autoextend threshold %d%% needs a percent to grow by (1 to 1000)", a.Threshold)
	}
	return nil
}

// ReadAutoextend returns the pool's autoextend policy; a pool that never
// had one set has autoextend off.
func ReadAutoextend(p *thinpool.Pool) (Autoextend, error) {
	t, err := p.Device(configDevice)
	if errors.Is(err, thinpool.ErrNotFound) {
		return Autoextend{}, nil
	}
	if err != nil {
		return Autoextend{}, err
	}
	l := t.Info().Labels
	if l[labelRole] != roleConfig {
		return Autoextend{}, fmt.Errorf("device %q exists but is not the pool's configuration", configDevice)
	}
	var a Autoextend
	for key, v := range map[string]*int{labelAutoextendThreshold: &a.Threshold, labelAutoextendPercent: &a.Percent} {
		if s, ok := l[key]; ok {
			if *v, err = strconv.Atoi(s); err != nil {
				return Autoextend{}, fmt.Errorf("configuration label %s=%q: %w", key, s, err)
			}
		}
	}
	return a, nil
}

// SetAutoextend stores the pool's autoextend policy in its configuration
// device, creating that device if the pool has none, and commits.
func SetAutoextend(p *thinpool.Pool, a Autoextend) error {
	if err := a.Validate(); err != nil {
		return err
	}
	labels := map[string]string{
		labelAutoextendThreshold: strconv.Itoa(a.Threshold),
		labelAutoextendPercent:   strconv.Itoa(a.Percent),
	}
	t, err := p.Device(configDevice)
	if errors.Is(err, thinpool.ErrNotFound) {
		labels[labelRole] = roleConfig
		labels[labelCreated] = now()
		if _, err := p.CreateThin(configDevice, thinpool.SectorSize, labels); err != nil {
			return fmt.Errorf("create the configuration device: %w", err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	cur := t.Info().Labels
	if cur[labelRole] != roleConfig {
		return fmt.Errorf("device %q exists but is not the pool's configuration", configDevice)
	}
	for k, v := range cur {
		if _, ok := labels[k]; !ok {
			labels[k] = v
		}
	}
	if err := p.SetLabels(configDevice, labels); err != nil {
		return fmt.Errorf("set autoextend: %w", err)
	}
	return p.Sync()
}

// IsInternal reports whether a device is part of how thinpool stores its
// own settings (the configuration device): not a thin volume of the user's.
func IsInternal(i thinpool.DeviceInfo) bool {
	return i.Name == configDevice && i.Labels[labelRole] == roleConfig
}

// Overcommit returns the sum of the virtual sizes of the pool's thin
// devices and the size of its data area, as lvcreate compares them to warn
// "Sum of all thin volume sizes exceeds the size of thin pool".
func Overcommit(p *thinpool.Pool) (virtual, data int64) {
	for _, i := range p.Devices() {
		if !IsInternal(i) {
			virtual += i.Size
		}
	}
	u := p.Usage()
	return virtual, int64(u.DataBlocks) * u.BlockSize
}
