package volumes

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/thinpool/thinpool/errdefs"
	"github.com/thinpool/thinpool/thinpool"
)

// Records of images, layers, containers and volumes are thin devices and
// their labels: the pool's metadata is the one source of truth, committed
// atomically with the devices, so a crash never leaves them out of step.
//
// Device names carry a prefix per kind; the role label decides what a
// device is.
const (
	baseDevice      = "thinpool.base"
	layerPrefix     = "layer."
	imagePrefix     = "image."
	containerPrefix = "container."
	volumePrefix    = "volume."
)

// Label keys. Part of the pool's metadata format; do not rename.
const (
	labelRole    = "thinpool.role"  // base, layer, image, container, volume
	labelState   = "thinpool.state" // creating while a step is under way; ready after
	labelCreated = "thinpool.created"
	labelFS      = "thinpool.fs"

	labelChainID = "layer.chain"
	labelDiffID  = "layer.diff"
	labelParent  = "layer.parent"
	labelSize    = "layer.size"

	labelRef          = "image.ref"
	labelLayers       = "image.layers" // JSON array of chain IDs, base first
	labelConfig       = "image.config"
	labelConfigDigest = "image.configDigest"

	labelImage  = "container.image"
	labelMounts = "container.mounts" // JSON []MountSpec
	labelSizeRq = "container.size"

	labelUser      = "user."            // prefix of a volume's user labels
	labelAnonymous = "volume.anonymous" // "true": made by a container mount with no source
)

// Roles.
const (
	roleBase      = "base"
	roleLayer     = "layer"
	roleImage     = "image"
	roleContainer = "container"
	roleVolume    = "volume"
)

const (
	stateCreating = "creating"
	stateReady    = "ready"
)

var (
	// ErrNotFound is returned for a missing image, container or volume.
	ErrNotFound = errdefs.New(errdefs.ErrNotFound, "volumes: not found")
	// ErrExists is returned when the name of a new object is taken.
	ErrExists = errdefs.New(errdefs.ErrAlreadyExists, "volumes: already exists")
	// ErrInUse is returned when removing an object that another needs.
	ErrInUse = errdefs.New(errdefs.ErrInUse, "volumes: in use")
)

// record is a device seen as an object of the model.
type record struct {
	info   thinpool.DeviceInfo
	labels map[string]string
}

func (r record) ready() bool  { return r.labels[labelState] == stateReady }
func (r record) name() string { return r.info.Name }
func (r record) created() time.Time {
	if t, err := time.Parse(time.RFC3339Nano, r.labels[labelCreated]); err == nil {
		return t
	}
	return r.info.Created
}

// records returns the devices with the given role, sorted by name.
func records(p *thinpool.Pool, role string) []record {
	var out []record
	for _, i := range p.Devices() {
		if i.Labels[labelRole] == role {
			out = append(out, record{info: i, labels: i.Labels})
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].info.Name < out[b].info.Name })
	return out
}

// lookup returns the device called name if it has the role.
func lookup(p *thinpool.Pool, name, role, what, display string) (record, error) {
	t, err := p.Device(name)
	if errors.Is(err, thinpool.ErrNotFound) {
		return record{}, reasonf(ErrNotFound, "%s %q not found", what, display)
	}
	if err != nil {
		return record{}, err
	}
	i := t.Info()
	if i.Labels[labelRole] != role {
		return record{}, fmt.Errorf("device %q exists but is not a %s", name, what)
	}
	return record{info: i, labels: i.Labels}, nil
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

func jsonLabel(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own types
	}
	return string(b)
}

// validObjectName checks a container or volume name as Docker does:
// [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 128 bytes.
func validObjectName(kind, name string) error {
	if name == "" || len(name) > 128 {
		return reasonf(thinpool.ErrInvalid, "%s name %q must be 1 to 128 characters", kind, name)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || (i > 0 && strings.ContainsRune("_.-", r))
		if !ok {
			return reasonf(thinpool.ErrInvalid, "%s name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", kind, name)
		}
	}
	return nil
}
