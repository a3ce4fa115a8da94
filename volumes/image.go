package volumes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/thinpool/thinpool/thinpool"
	"github.com/thinpool/thinpool/volumes/archive"
	"github.com/thinpool/thinpool/volumes/layer"
)

// DefaultBaseSize is the size of the base device every image layer chain
// starts from, as Docker's devicemapper dm.basesize.
const DefaultBaseSize = 10 << 30

// ImageLayer is one layer of an image.
type ImageLayer struct {
	ChainID string `json:"chainId"`
	DiffID  string `json:"diffId"`
	Device  string `json:"device"`
	Size    int64  `json:"size"` // pool bytes the layer added over its parent
	Shared  bool   `json:"shared"`
}

// Image is what 'image ls' and 'image inspect' show.
type Image struct {
	Name         string          `json:"name"`
	ID           string          `json:"id"` // the config digest
	Device       string          `json:"device"`
	Created      time.Time       `json:"created"`
	Layers       []ImageLayer    `json:"layers"`
	Size         int64           `json:"size"`       // all layers
	SharedSize   int64           `json:"sharedSize"` // layers another image uses too
	UniqueSize   int64           `json:"uniqueSize"` // layers only this image uses
	Containers   []string        `json:"containers"`
	Config       json.RawMessage `json:"config,omitempty"`
	VirtualSize  int64           `json:"virtualSize"` // the device size
	ImportedFrom string          `json:"-"`
}

// ImportProgress reports an import: the layer being applied (1-based), how
// many, its chain ID, whether it was already in the pool, and bytes read.
type ImportProgress func(layer, layers int, chainID string, reused bool, bytes int64)

// ImportOptions are the choices of ImportImage.
type ImportOptions struct {
	Name     string // NAME[:TAG] for the image, overriding the archive's
	BaseSize int64  // size of the base device if it does not exist yet
	Progress ImportProgress
}

// image finds an image by name (a missing tag means "latest").
func (m *Manager) image(ref string) (record, error) {
	ref, err := ParseImageRef(ref)
	if err != nil {
		return record{}, err
	}
	return lookup(m.pool, imageDevice(ref), roleImage, "image", ref)
}

// ParseImageRef checks an image reference (NAME[:TAG]) as Docker does,
// with go-containerregistry's name package, and returns it as records
// keep it: as given, with ":latest" added when it has no tag. The name is
// not expanded (alpine stays alpine, not index.docker.io/library/alpine).
// An invalid reference ("x:", ":y", "UPPER:tag", "a b:c") is an error of
// kind thinpool.ErrInvalid that also matches name.ErrBadName.
func ParseImageRef(ref string) (string, error) {
	t, err := name.NewTag(ref, name.WithDefaultTag(""))
	if err != nil {
		return "", reasonf(thinpool.ErrInvalid, "invalid image name %q: %w", ref, err)
	}
	if t.TagStr() == "" {
		ref += ":latest"
	}
	if dev := imageDevice(ref); thinpool.ValidateName(dev) != nil {
		return "", reasonf(thinpool.ErrInvalid, "invalid image name %q: its device name %q is longer than %d bytes", ref, dev, thinpool.MaxNameLen)
	}
	return ref, nil
}

func layerDevice(chainID string) string {
	return layerPrefix + strings.TrimPrefix(chainID, "sha256:")
}

// base returns the base device, creating it with an empty ext4 filesystem
// if the pool has none.
func (m *Manager) base(size int64) (record, error) {
	if r, err := lookup(m.pool, baseDevice, roleBase, "base device", baseDevice); err == nil && r.ready() {
		return r, nil
	} else if err == nil {
		_ = m.pool.Delete(baseDevice) // a half-made base
	}
	if size == 0 {
		size = DefaultBaseSize
	}
	labels := map[string]string{labelRole: roleBase, labelState: stateCreating, labelFS: "ext4", labelCreated: now()}
	if _, err := m.pool.CreateThin(baseDevice, size, labels); err != nil {
		return record{}, err
	}
	if err := m.host.Mkfs(baseDevice, "ext4"); err != nil {
		return record{}, errors.Join(err, m.pool.Delete(baseDevice))
	}
	labels[labelState] = stateReady
	if err := m.pool.SetLabels(baseDevice, labels); err != nil {
		return record{}, err
	}
	return lookup(m.pool, baseDevice, roleBase, "base device", baseDevice)
}

// ImportImage imports every image of a docker save tarball, OCI layout or
// rootfs tar. Each layer becomes a read-only snapshot of the layer below
// (the base device for the first), made by applying the layer's tar to a
// writable snapshot; a layer already in the pool (same chain ID) is reused.
func (m *Manager) ImportImage(ctx context.Context, path string, stdin io.Reader, o ImportOptions) ([]*Image, error) {
	ar, err := archive.Open(path, stdin)
	if err != nil {
		return nil, err
	}
	defer ar.Close()
	m.images.Lock()
	defer m.images.Unlock()
	if len(ar.Images) == 0 {
		return nil, fmt.Errorf("%s holds no image", path)
	}
	if o.Name != "" && len(ar.Images) > 1 {
		return nil, reasonf(thinpool.ErrInvalid, "--name with an archive of %d images", len(ar.Images))
	}
	base, err := m.base(o.BaseSize)
	if err != nil {
		return nil, fmt.Errorf("base device: %w", err)
	}
	var out []*Image
	for _, img := range ar.Images {
		ref := o.Name
		if ref == "" {
			ref = img.Name
		}
		if ref == "" {
			ref = "sha256:" + strings.TrimPrefix(img.ConfigDigest, "sha256:")[:12]
		}
		ref, err := ParseImageRef(ref)
		if err != nil {
			return out, err
		}
		im, err := m.importOne(ctx, base, ref, img, o.Progress)
		if err != nil {
			// The layers made before the one that failed are ready but no
			// image lists them: a failed import leaves nothing behind.
			m.gcLayers()
			return out, fmt.Errorf("import %s: %w", ref, err)
		}
		out = append(out, im)
	}
	return out, nil
}

func (m *Manager) importOne(ctx context.Context, base record, ref string, img archive.Image, progress ImportProgress) (*Image, error) {
	diffIDs := make([]string, len(img.Layers))
	for i, l := range img.Layers {
		diffIDs[i] = l.DiffID
	}
	chain := archive.ChainIDs(diffIDs)
	parent := base.name()
	for i, l := range img.Layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		dev := layerDevice(chain[i])
		if r, err := lookup(m.pool, dev, roleLayer, "layer", chain[i]); err == nil && r.ready() {
			if progress != nil {
				progress(i+1, len(img.Layers), chain[i], true, 0)
			}
			parent = dev
			continue
		} else if err == nil {
			if err := m.pool.Delete(dev); err != nil { // half-made: start again
				return nil, err
			}
		}
		prev := ""
		if i > 0 {
			prev = chain[i-1]
		}
		if err := m.applyLayer(ctx, parent, dev, chain[i], prev, l, func(n int64) {
			if progress != nil {
				progress(i+1, len(img.Layers), chain[i], false, n)
			}
		}); err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i+1, l.DiffID, err)
		}
		parent = dev
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dev := imageDevice(ref)
	if r, err := lookup(m.pool, dev, roleImage, "image", ref); err == nil {
		if r.labels[labelConfigDigest] == img.ConfigDigest && r.ready() {
			return m.InspectImage(ref)
		}
		if users := m.imageUsers(ref); len(users) > 0 {
			return nil, reasonf(ErrInUse, "image %q exists and containers %s use it; remove them or import under another --name", ref, strings.Join(users, ", "))
		}
		if err := m.pool.Delete(dev); err != nil {
			return nil, err
		}
	}
	if len(img.Config) > thinpool.MaxLabelValueLen {
		return nil, fmt.Errorf("image config of %d bytes is larger than %d", len(img.Config), thinpool.MaxLabelValueLen)
	}
	labels := map[string]string{labelRole: roleImage, labelState: stateReady, labelRef: ref, labelFS: "ext4",
		labelLayers: jsonLabel(chain), labelConfig: string(img.Config), labelConfigDigest: img.ConfigDigest,
		labelCreated: img.Created.UTC().Format(time.RFC3339Nano)}
	if _, err := m.pool.SnapshotLabeled(parent, dev, true, labels); err != nil {
		return nil, err
	}
	m.gcLayers()
	return m.InspectImage(ref)
}

// applyLayer makes dev, a writable snapshot of parent, applies the layer's
// tar to its filesystem, and marks it read-only and ready.
func (m *Manager) applyLayer(ctx context.Context, parent, dev, chainID, parentChain string, l archive.Layer, progress func(int64)) error {
	labels := map[string]string{labelRole: roleLayer, labelState: stateCreating, labelChainID: chainID,
		labelDiffID: l.DiffID, labelParent: parentChain, labelFS: "ext4", labelCreated: now()}
	if _, err := m.pool.SnapshotLabeled(parent, dev, false, labels); err != nil {
		return err
	}
	fail := func(err error) error { return errors.Join(err, m.pool.Delete(dev)) }
	dir := filepath.Join(m.workDir, "layers", strings.TrimPrefix(dev, layerPrefix))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	defer os.Remove(dir)
	if err := m.host.Mount(dev, dir); err != nil {
		return fail(err)
	}
	rc, err := l.Open()
	if err == nil {
		// Without root (the tests) files stay the caller's: chown would fail.
		_, err = layer.Apply(ctx, dir, &countingReader{r: rc, fn: progress}, layer.Options{NoSameOwner: os.Geteuid() != 0})
		if cerr := rc.Close(); err == nil {
			err = cerr
		}
	}
	// A full pool fails the filesystem's writeback, which the apply does
	// not see: sync, and check the device, before trusting the layer.
	if err = firstCause(err, m.host.UnmountChecked(dir)); err != nil {
		return fail(err)
	}
	size, err := m.addedBytes(parent, dev)
	if err != nil {
		return fail(err)
	}
	labels[labelSize] = fmt.Sprint(size)
	if err := m.pool.SetReadOnly(dev, true); err != nil {
		return fail(err)
	}
	labels[labelState] = stateReady
	if err := m.pool.SetLabels(dev, labels); err != nil {
		return fail(err)
	}
	return nil
}

// addedBytes is the pool space dev maps that parent does not map the same.
func (m *Manager) addedBytes(parent, dev string) (int64, error) {
	ranges, err := m.pool.Diff(parent, dev)
	if err != nil {
		return 0, err
	}
	_, byKind := thinpool.DiffBlocks(ranges)
	added := byKind[thinpool.DiffRightOnly] + byKind[thinpool.DiffDifferent]
	return int64(added) * m.pool.BlockSize(), nil
}

type countingReader struct {
	r  io.Reader
	n  int64
	fn func(int64)
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	if c.fn != nil {
		c.fn(c.n)
	}
	return n, err
}

// imageUsers lists the containers made from an image.
func (m *Manager) imageUsers(ref string) []string {
	var users []string
	for _, c := range records(m.pool, roleContainer) {
		if c.labels[labelImage] == ref {
			users = append(users, strings.TrimPrefix(c.name(), containerPrefix))
		}
	}
	return users
}

func imageLayers(r record) []string {
	var chain []string
	_ = json.Unmarshal([]byte(r.labels[labelLayers]), &chain)
	return chain
}

// InspectImage describes one image.
func (m *Manager) InspectImage(ref string) (*Image, error) {
	r, err := m.image(ref)
	if err != nil {
		return nil, err
	}
	return m.imageView(r, m.layerUse(), true), nil
}

// layerUse counts the images that use each chain ID.
func (m *Manager) layerUse() map[string]int {
	use := map[string]int{}
	for _, r := range records(m.pool, roleImage) {
		for _, c := range imageLayers(r) {
			use[c]++
		}
	}
	return use
}

func (m *Manager) imageView(r record, use map[string]int, config bool) *Image {
	im := &Image{Name: r.labels[labelRef], ID: r.labels[labelConfigDigest], Device: r.name(), Created: r.created(),
		VirtualSize: r.info.Size, Containers: m.imageUsers(r.labels[labelRef])}
	if im.Containers == nil {
		im.Containers = []string{}
	}
	if config {
		im.Config = json.RawMessage(r.labels[labelConfig])
	}
	for _, c := range imageLayers(r) {
		l := ImageLayer{ChainID: c, Device: layerDevice(c), Shared: use[c] > 1}
		if t, err := m.pool.Device(l.Device); err == nil {
			lab := t.Info().Labels
			l.DiffID = lab[labelDiffID]
			fmt.Sscan(lab[labelSize], &l.Size)
		}
		im.Layers = append(im.Layers, l)
		im.Size += l.Size
		if l.Shared {
			im.SharedSize += l.Size
		} else {
			im.UniqueSize += l.Size
		}
	}
	return im
}

// ListImages lists the images.
func (m *Manager) ListImages() []*Image {
	use := m.layerUse()
	var out []*Image
	for _, r := range records(m.pool, roleImage) {
		if r.ready() {
			out = append(out, m.imageView(r, use, false))
		}
	}
	return out
}

// RemoveImage deletes an image. It is refused while a container uses it;
// its layers stay while another image needs them.
func (m *Manager) RemoveImage(ref string) error {
	m.images.Lock()
	defer m.images.Unlock()
	r, err := m.image(ref)
	if err != nil {
		return err
	}
	if users := m.imageUsers(r.labels[labelRef]); len(users) > 0 {
		return reasonf(ErrInUse, "image %q is used by container(s) %s", r.labels[labelRef], strings.Join(users, ", "))
	}
	if err := m.pool.Delete(r.name()); err != nil {
		return err
	}
	m.gcLayers()
	return nil
}

// gcLayers deletes the layers no image lists.
func (m *Manager) gcLayers() {
	use := m.layerUse()
	for _, r := range records(m.pool, roleLayer) {
		if use[r.labels[labelChainID]] == 0 && r.ready() {
			if err := m.pool.Delete(r.name()); err != nil {
				m.logf("remove unused layer %s: %v", r.name(), err)
			}
		}
	}
}

// rollback deletes what a crash left half-made: devices whose state label
// says a step was under way.
func (m *Manager) rollback() error {
	var errs []error
	for _, i := range m.pool.Devices() {
		if i.Labels[labelRole] != "" && i.Labels[labelState] == stateCreating {
			m.logf("rolling back half-made %s %q", i.Labels[labelRole], i.Name)
			if err := m.pool.Delete(i.Name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) == 0 {
		m.gcLayers()
	}
	return errors.Join(errs...)
}

// CommitContainer turns a container's current state into a new image: a
// read-only snapshot of it becomes the top layer, over the image's layers.
// The layer's diff ID is synthetic (no tar is made): sha256 of the
// container device and time.
func (m *Manager) CommitContainer(name, ref string) (*Image, error) {
	m.images.Lock()
	defer m.images.Unlock()
	c, err := m.container(name)
	if err != nil {
		return nil, err
	}
	src, err := m.image(c.labels[labelImage])
	if err != nil {
		return nil, fmt.Errorf("the container's image: %w", err)
	}
	ref, err = ParseImageRef(ref)
	if err != nil {
		return nil, err
	}
	if _, err := m.image(ref); err == nil {
		return nil, reasonf(ErrExists, "image %q already exists", ref)
	}
	if err := m.syncContainer(c.name()); isWriteFailure(err) {
		// The error stays until the container is mounted again.
		return nil, fmt.Errorf("container %q lost writes since it was mounted: %w", name, err)
	} else if err != nil {
		return nil, fmt.Errorf("container %q: %w", name, err)
	}
	chain := imageLayers(src)
	diffID := digestOf(fmt.Sprintf("commit %s %d", c.name(), time.Now().UnixNano()))
	prev := ""
	if len(chain) > 0 {
		prev = chain[len(chain)-1]
	}
	newChain := archive.ChainIDs([]string{prev, diffID})[1]
	if prev == "" {
		newChain = diffID
	}
	dev := layerDevice(newChain)
	labels := map[string]string{labelRole: roleLayer, labelState: stateCreating, labelChainID: newChain, labelDiffID: diffID,
		labelParent: prev, labelFS: src.labels[labelFS], labelCreated: now()}
	if _, err := m.pool.SnapshotLabeled(c.name(), dev, true, labels); err != nil {
		return nil, err
	}
	size, _ := m.addedBytes(src.name(), dev)
	labels[labelSize], labels[labelState] = fmt.Sprint(size), stateReady
	if err := m.pool.SetLabels(dev, labels); err != nil {
		return nil, errors.Join(err, m.pool.Delete(dev))
	}
	cfg := commitConfig([]byte(src.labels[labelConfig]), diffID, name)
	ilabels := map[string]string{labelRole: roleImage, labelState: stateReady, labelRef: ref, labelFS: src.labels[labelFS],
		labelLayers: jsonLabel(append(append([]string{}, chain...), newChain)), labelConfig: string(cfg),
		labelConfigDigest: digestOf(string(cfg)), labelCreated: now()}
	if _, err := m.pool.SnapshotLabeled(dev, imageDevice(ref), true, ilabels); err != nil {
		return nil, errors.Join(err, m.pool.Delete(dev))
	}
	return m.InspectImage(ref)
}

// syncContainer writes back the root filesystem of the container device
// dev if it is mounted, so that a snapshot of it holds what was written,
// and fails if its device lost a write since it was attached.
func (m *Manager) syncContainer(dev string) error {
	m.mu.Lock()
	mt, mounted := m.mounted[dev]
	m.mu.Unlock()
	if !mounted {
		return nil
	}
	return m.host.Sync(mt.root)
}

// HistoryEntry is one step of 'image history'.
type HistoryEntry struct {
	Created   string `json:"created"`
	CreatedBy string `json:"createdBy"`
	Comment   string `json:"comment,omitempty"`
	ChainID   string `json:"chainId,omitempty"` // "" for a step that made no layer
	Size      int64  `json:"size"`
}

// ImageHistory lists how an image was built, newest first, from its config,
// with the layer each step made.
func (m *Manager) ImageHistory(ref string) ([]HistoryEntry, error) {
	r, err := m.image(ref)
	if err != nil {
		return nil, err
	}
	var cfg struct {
		History []struct {
			Created    string `json:"created"`
			CreatedBy  string `json:"created_by"`
			Comment    string `json:"comment"`
			EmptyLayer bool   `json:"empty_layer"`
		} `json:"history"`
	}
	_ = json.Unmarshal([]byte(r.labels[labelConfig]), &cfg)
	chain := imageLayers(r)
	view := m.imageView(r, m.layerUse(), false)
	var out []HistoryEntry
	li := 0
	for _, h := range cfg.History {
		e := HistoryEntry{Created: h.Created, CreatedBy: h.CreatedBy, Comment: h.Comment}
		if !h.EmptyLayer && li < len(chain) {
			e.ChainID, e.Size = chain[li], view.Layers[li].Size
			li++
		}
		out = append(out, e)
	}
	for ; li < len(chain); li++ { // layers the history does not describe
		out = append(out, HistoryEntry{ChainID: chain[li], Size: view.Layers[li].Size})
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// Info is the storage section 'thinctl info' prints, as docker info does.
type Info struct {
	Images, Layers, Containers, Volumes int
	BaseSize                            int64
	BackingFS                           string
}

// PoolInfo counts the objects in a pool, with or without a daemon.
func PoolInfo(p *thinpool.Pool) Info {
	var i Info
	for _, d := range p.Devices() {
		switch d.Labels[labelRole] {
		case roleImage:
			i.Images++
		case roleLayer:
			i.Layers++
		case roleContainer:
			i.Containers++
		case roleVolume:
			i.Volumes++
		case roleBase:
			i.BaseSize, i.BackingFS = d.Size, d.Labels[labelFS]
		}
	}
	if i.BaseSize == 0 {
		i.BaseSize, i.BackingFS = DefaultBaseSize, "ext4"
	}
	return i
}

// imageDevice is the device name of an image: references such as
// ghcr.io/org/app:1 hold '/', which device names cannot, so it is written
// %2F (the image.ref label keeps the reference as given).
func imageDevice(ref string) string {
	return imagePrefix + strings.ReplaceAll(ref, "/", "%2F")
}
