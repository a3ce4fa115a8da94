package archive

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"

	gname "github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// WriteDockerSave is a test helper: it writes a docker save tarball at path
// holding one image, so that tests of other packages can build images from
// tar layers they make. The tarball is what docker load reads.
//
// name is "repo:tag", or "" for an untagged image. layers are uncompressed
// tars, base first; they are stored uncompressed, as docker save does.
// config is the image config as encoding/json would decode it (for example
// {"config": {"Env": [...]}, "history": [...]}); keys that
// go-containerregistry's v1.ConfigFile does not know are dropped. Its rootfs
// is replaced with the layers' diffIDs; os and architecture default to linux
// and the host's. History entries without empty_layer are matched to the
// layers in order, and layers left over get one made up.
//
// It holds every layer in memory: it is not for large images.
func WriteDockerSave(path string, name string, layers [][]byte, config map[string]any) error {
	img, err := buildImage(layers, config)
	if err != nil {
		return fmt.Errorf("archive: write %s: %w", path, err)
	}
	var ref gname.Reference // nil: no RepoTags
	if name != "" {
		tag, err := gname.NewTag(name)
		if err != nil {
			return fmt.Errorf("archive: write %s: %w", path, err)
		}
		ref = tag
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("archive: write: %w", err)
	}
	err = tarball.Write(ref, img, f)
	if err = errors.Join(err, f.Close()); err != nil {
		return fmt.Errorf("archive: write %s: %w", path, err)
	}
	return nil
}

// buildImage makes a v1.Image of uncompressed layers and config.
func buildImage(layers [][]byte, config map[string]any) (v1.Image, error) {
	raw, err := json.Marshal(config)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if cfg.OS == "" {
		cfg.OS = "linux"
	}
	if cfg.Architecture == "" {
		cfg.Architecture = runtime.GOARCH
	}
	cfg.RootFS = v1.RootFS{Type: "layers"}
	history := cfg.History
	cfg.History = nil
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, err
	}
	var adds []mutate.Addendum
	next := 0
	for _, h := range history {
		if h.EmptyLayer {
			adds = append(adds, mutate.Addendum{History: h})
			continue
		}
		if next == len(layers) {
			return nil, fmt.Errorf("config history has more layer steps than the %d layers", len(layers))
		}
		adds = append(adds, mutate.Addendum{Layer: static.NewLayer(layers[next], types.DockerUncompressedLayer), History: h})
		next++
	}
	for ; next < len(layers); next++ {
		adds = append(adds, mutate.Addendum{
			Layer:   static.NewLayer(layers[next], types.DockerUncompressedLayer),
			History: v1.History{CreatedBy: fmt.Sprintf("archive.WriteDockerSave layer %d", next+1)},
		})
	}
	return mutate.Append(img, adds...)
}
