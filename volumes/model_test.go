package volumes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/thinpool/thinpool/blockdev"
	"github.com/thinpool/thinpool/thinpool"
)

// The tests here run the model against fakeHost: no root, no kernel. The
// root tests in test/ run it against the daemon's real Host.

// TestImportImage: an image's layers become a chain of read-only
// snapshots; a whiteout hides a file of a lower layer; a layer two images
// share is stored once; importing again changes nothing.
func TestImportImage(t *testing.T) {
	m, h := newModel(t, 256<<20)
	p := m.Pool()
	var mu sync.Mutex
	var reused []bool
	progress := func(layer, layers int, chainID string, r bool, bytes int64) {
		mu.Lock()
		defer mu.Unlock()
		if bytes == 0 || r {
			reused = append(reused, r)
		}
	}
	path := dockerSave(t, map[string]v1.Image{
		"app:1":  image(t, baseLayer(t), appLayer(t), configLayer(t)),
		"tool:1": image(t, baseLayer(t), toolLayer(t)),
	})
	imgs, err := m.ImportImage(context.Background(), path, nil, ImportOptions{BaseSize: testBaseSize, Progress: progress})
	if err != nil {
		t.Fatal(err)
	}
	if names(imgs) != "app:1,tool:1" {
		t.Fatalf("imported %s", names(imgs))
	}
	if !slices.Contains(reused, true) {
		t.Errorf("no layer was reported reused: %v", reused)
	}
	if got := devicesWithRole(p, roleLayer); len(got) != 4 {
		t.Fatalf("layers %v: want 4 (the shared base layer once)", got)
	}
	app, err := m.InspectImage("app:1")
	if err != nil {
		t.Fatal(err)
	}
	tool, err := m.InspectImage("tool:1")
	if err != nil {
		t.Fatal(err)
	}
	if len(app.Layers) != 3 || len(tool.Layers) != 2 || app.Layers[0].ChainID != tool.Layers[0].ChainID {
		t.Fatalf("layers: app %+v, tool %+v", app.Layers, tool.Layers)
	}
	if !app.Layers[0].Shared || app.Layers[1].Shared || app.SharedSize != app.Layers[0].Size || app.Size != app.SharedSize+app.UniqueSize {
		t.Errorf("sizes of app: %+v", app)
	}
	for _, l := range app.Layers {
		if l.Size <= 0 {
			t.Errorf("layer %s adds %d bytes", l.ChainID, l.Size)
		}
		d, err := p.Device(l.Device)
		if err != nil || !d.Info().ReadOnly {
			t.Errorf("layer device %s: %v, read-only %v", l.Device, err, err == nil && d.Info().ReadOnly)
		}
	}
	if ls := m.ListImages(); len(ls) != 2 {
		t.Errorf("ListImages: %d images", len(ls))
	}
	hist, err := m.ImageHistory("app:1")
	if err != nil || len(hist) != 3 || hist[0].CreatedBy != "layer 3" || hist[0].ChainID != app.Layers[2].ChainID {
		t.Errorf("history: %+v, %v", hist, err)
	}

	// What a container of app:1 sees: all three layers, less the whiteout.
	if _, err := m.CreateContainer("c", ContainerOptions{Image: "app:1"}); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "root")
	if _, err := m.MountContainer("c", root); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"etc": "/", "etc/os-release": "ID=test\n", "data": "/", "bin": "/", "bin/sh": "#!sh\n",
		"app": "/", "app/main": "main v1\n", "app/config": "debug=false\n"}
	if got := tree(t, root); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("container of app:1 sees\n%v\nwant\n%v", got, want)
	}
	if err := m.UnmountContainer("c"); err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveContainer("c", false); err != nil {
		t.Fatal(err)
	}
	if got := h.mountedDevs(); len(got) != 0 {
		t.Errorf("still mounted: %v", got)
	}

	// Again: nothing new.
	before := len(p.Devices())
	mustImport(t, m, path)
	if after := len(p.Devices()); after != before {
		t.Errorf("a second import made %d devices", after-before)
	}

	// Removing an image keeps the layers the other one uses.
	if err := m.RemoveImage("app:1"); err != nil {
		t.Fatal(err)
	}
	if got := devicesWithRole(p, roleLayer); len(got) != 2 {
		t.Errorf("after image rm, layers %v: want tool's 2", got)
	}
	if tool, err := m.InspectImage("tool:1"); err != nil || tool.Layers[0].Shared {
		t.Errorf("tool:1 after rm of app:1: %+v, %v", tool, err)
	}
}

// TestContainerLifecycle: a container's writes go to its own snapshot;
// commit makes an image of them (synced while it is mounted); rm discards
// only the container's changes, and neither image changes.
func TestContainerLifecycle(t *testing.T) {
	m, _ := newModel(t, 256<<20)
	img := importApp(t, m)
	c, err := m.CreateContainer("web", ContainerOptions{Image: "app:1"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Image != "app:1" || c.UsedBytes != 0 || c.Size != img.VirtualSize {
		t.Fatalf("new container: %+v", c)
	}
	root := filepath.Join(t.TempDir(), "web")
	if c, err = m.MountContainer("web", root); err != nil || c.MountedAt != root {
		t.Fatalf("mount: %+v, %v", c, err)
	}
	mustWrite(t, filepath.Join(root, "app/main"), "main v2\n")
	mustWrite(t, filepath.Join(root, "app/new.txt"), "new\n")
	if err := os.Remove(filepath.Join(root, "bin/sh")); err != nil {
		t.Fatal(err)
	}
	if err := m.UnmountContainer("web"); err != nil {
		t.Fatal(err)
	}
	if c, err := m.InspectContainer("web"); err != nil || c.UsedBytes == 0 || c.MountedAt != "" {
		t.Fatalf("after writes: %+v, %v", c, err)
	}
	// Mounted again, the container still holds its changes.
	if _, err := m.MountContainer("web", root); err != nil {
		t.Fatal(err)
	}
	if got := tree(t, root); got["app/new.txt"] != "new\n" || got["app/main"] != "main v2\n" || got["bin/sh"] != "" {
		t.Fatalf("remounted container: %v", got)
	}
	// Commit while mounted: what the container wrote is synced first.
	mustWrite(t, filepath.Join(root, "app/late.txt"), "late\n")
	img2, err := m.CommitContainer("web", "app:2")
	if err != nil {
		t.Fatal(err)
	}
	if len(img2.Layers) != 4 || img2.Layers[3].Size <= 0 {
		t.Fatalf("committed image: %+v", img2)
	}
	if err := m.RemoveContainer("web", false); !errors.Is(err, ErrInUse) {
		t.Fatalf("rm of a mounted container: %v, want ErrInUse", err)
	}
	if err := m.RemoveContainer("web", true); err != nil {
		t.Fatalf("rm -f: %v", err)
	}
	if _, err := m.InspectContainer("web"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("inspect after rm: %v", err)
	}

	for _, tc := range []struct {
		image string
		want  map[string]string
	}{
		{"app:1", map[string]string{"app/main": "main v1\n", "app/new.txt": "", "app/late.txt": "", "bin/sh": "#!sh\n"}},
		{"app:2", map[string]string{"app/main": "main v2\n", "app/new.txt": "new\n", "app/late.txt": "late\n", "bin/sh": ""}},
	} {
		t.Run(tc.image, func(t *testing.T) {
			name := "of-" + tc.image[len("app:"):]
			if _, err := m.CreateContainer(name, ContainerOptions{Image: tc.image}); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(t.TempDir(), name)
			if _, err := m.MountContainer(name, dir); err != nil {
				t.Fatal(err)
			}
			got := tree(t, dir)
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s in a container of %s: %q, want %q", k, tc.image, got[k], v)
				}
			}
			if err := m.RemoveContainer(name, true); err != nil {
				t.Fatal(err)
			}
		})
	}
	// The image a container uses cannot go; app:2 stands on its own.
	if _, err := m.CreateContainer("user", ContainerOptions{Image: "app:1"}); err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveImage("app:1"); !errors.Is(err, ErrInUse) {
		t.Fatalf("rm of an image in use: %v", err)
	}
	if err := m.RemoveContainer("user", false); err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveImage("app:1"); err != nil {
		t.Fatal(err)
	}
	if got := devicesWithRole(m.Pool(), roleLayer); len(got) != 4 {
		t.Errorf("layers after rm of app:1: %v; app:2 needs 4", got)
	}
}

// TestContainerGrow: a container larger than its image grows its device and
// filesystem before it is ready.
func TestContainerGrow(t *testing.T) {
	m, h := newModel(t, 256<<20)
	img := importApp(t, m)
	c, err := m.CreateContainer("big", ContainerOptions{Image: "app:1", Size: 2 * img.VirtualSize})
	if err != nil {
		t.Fatal(err)
	}
	if c.Size != 2*img.VirtualSize || h.grown[c.Device] != 1 {
		t.Fatalf("container %+v, grown %d times", c, h.grown[c.Device])
	}
	if _, err := m.CreateContainer("small", ContainerOptions{Image: "app:1", Size: img.VirtualSize / 2}); !errors.Is(err, thinpool.ErrInvalid) {
		t.Fatalf("a container smaller than its image: %v", err)
	}
}

// TestVolumes: create, list, inspect, remove and prune volumes.
func TestVolumes(t *testing.T) {
	m, h := newModel(t, 256<<20)
	v, err := m.CreateVolume("data", VolumeOptions{Size: 8 << 20, Labels: map[string]string{"team": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	if v.Name != "data" || v.Size != 8<<20 || v.Labels["team"] != "a" || v.Anonymous || v.Mounted || len(v.InUseBy) != 0 {
		t.Fatalf("volume %+v", v)
	}
	if _, err := m.CreateVolume("data", VolumeOptions{}); !errors.Is(err, ErrExists) {
		t.Fatalf("create of an existing volume: %v", err)
	}
	if _, err := m.CreateVolume("x", VolumeOptions{FS: "btrfs"}); !errors.Is(err, thinpool.ErrInvalid) {
		t.Fatalf("--fs btrfs: %v", err)
	}
	random, err := m.CreateVolume("", VolumeOptions{Size: 8 << 20})
	if err != nil || len(random.Name) != 64 || random.Anonymous {
		t.Fatalf("a volume with no name: %+v, %v", random, err)
	}
	yes := true
	if got := m.ListVolumes(VolumeFilter{Labels: map[string]string{"team": ""}}); len(got) != 1 || got[0].Name != "data" {
		t.Errorf("ls --filter label=team: %v", got)
	}
	if got := m.ListVolumes(VolumeFilter{Dangling: &yes}); len(got) != 2 {
		t.Errorf("ls --filter dangling=true: %d volumes", len(got))
	}
	// Prune without --all keeps named volumes.
	if removed, err := m.PruneVolumes(false); err != nil || len(removed) != 0 {
		t.Fatalf("prune: %v, %v", removed, err)
	}
	if removed, err := m.PruneVolumes(true); err != nil || len(removed) != 2 {
		t.Fatalf("prune --all: %v, %v", removed, err)
	}
	if err := m.RemoveVolume("data"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rm of a pruned volume: %v", err)
	}
	if got := devicesWithRole(m.Pool(), roleVolume); len(got) != 0 || len(h.mountedDevs()) != 0 {
		t.Fatalf("left: volumes %v, mounted %v", got, h.mountedDevs())
	}
}

// TestContainerVolumes: a container's volume mounts, named (made by -v if
// missing) and anonymous: mounted with the container, held while any
// container references them, and rm -v removes the anonymous ones only.
func TestContainerVolumes(t *testing.T) {
	m, h := newModel(t, 256<<20)
	importApp(t, m)
	hostDir := t.TempDir()
	var specs []MountSpec
	for _, flag := range []string{"data:/data", "/cache", hostDir + ":/host:ro"} {
		s, err := ParseVolumeFlag(flag)
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, s)
	}
	c, err := m.CreateContainer("web", ContainerOptions{Image: "app:1", Mounts: specs})
	if err != nil {
		t.Fatal(err)
	}
	anon := c.Mounts[1].Source
	if c.Mounts[0].Source != "data" || len(anon) != 64 {
		t.Fatalf("mounts %+v", c.Mounts)
	}
	data, err := m.InspectVolume("data")
	if err != nil || !slices.Equal(data.InUseBy, []string{"web"}) || data.Anonymous {
		t.Fatalf("volume data: %+v, %v", data, err)
	}
	if v, err := m.InspectVolume(anon); err != nil || !v.Anonymous {
		t.Fatalf("anonymous volume: %+v, %v", v, err)
	}
	if err := m.RemoveVolume("data"); !errors.Is(err, ErrInUse) {
		t.Fatalf("rm of a volume a container uses: %v", err)
	}
	if removed, err := m.PruneVolumes(true); err != nil || len(removed) != 0 {
		t.Fatalf("prune --all removed volumes in use: %v, %v", removed, err)
	}

	root := filepath.Join(t.TempDir(), "root")
	if _, err := m.MountContainer("web", root); err != nil {
		t.Fatal(err)
	}
	if !h.Mounted(data.Mountpoint) || !h.Mounted(filepath.Join(root, "data")) || !h.Mounted(filepath.Join(root, "host")) {
		t.Fatalf("mounted: %v; binds %v", h.mountedDevs(), h.binds)
	}
	if h.binds[filepath.Join(root, "data")] != data.Mountpoint || h.binds[filepath.Join(root, "host")] != hostDir {
		t.Fatalf("binds %v", h.binds)
	}
	if v, _ := m.InspectVolume("data"); !v.Mounted {
		t.Error("inspect: the volume is not mounted")
	}
	mustWrite(t, filepath.Join(data.Mountpoint, "db"), "rows\n")
	if err := m.UnmountContainer("web"); err != nil {
		t.Fatal(err)
	}
	if got := h.mountedDevs(); len(got) != 0 || len(h.binds) != 0 {
		t.Fatalf("after unmount: mounted %v, binds %v", got, h.binds)
	}
	if err := m.UnmountContainer("web"); !errors.Is(err, ErrNotAttached) {
		t.Fatalf("unmount of an unmounted container: %v", err)
	}
	// The volume's data is in its device.
	if _, err := m.MountContainer("web", root); err != nil {
		t.Fatal(err)
	}
	if got := tree(t, data.Mountpoint); got["db"] != "rows\n" {
		t.Fatalf("volume after remount: %v", got)
	}
	if _, err := m.MountContainer("web", root); !errors.Is(err, ErrInUse) {
		t.Fatalf("second mount: %v", err)
	}
	if err := m.RemoveContainer("web", true); err != nil {
		t.Fatal(err)
	}
	removed, err := m.RemoveAnonymousVolumes(c.Mounts)
	if err != nil || !slices.Equal(removed, []string{anon}) {
		t.Fatalf("rm -v removed %v, %v; want the anonymous %s", removed, err, anon)
	}
	if err := m.RemoveVolume("data"); err != nil {
		t.Fatalf("rm of a volume no container uses: %v", err)
	}
}

// TestErrors: each error matches its kind with errors.Is.
func TestErrors(t *testing.T) {
	m, _ := newModel(t, 256<<20)
	importApp(t, m)
	if _, err := m.CreateContainer("c", ContainerOptions{Image: "app:1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreateVolume("v", VolumeOptions{Size: 8 << 20}); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "c")
	if _, err := m.MountContainer("c", root); err != nil {
		t.Fatal(err)
	}
	offline := Offline(m.Pool())
	tests := []struct {
		name string
		do   func() error
		kind error
	}{
		{"inspect missing image", func() error { _, err := m.InspectImage("nope"); return err }, ErrNotFound},
		{"inspect missing container", func() error { _, err := m.InspectContainer("nope"); return err }, ErrNotFound},
		{"inspect missing volume", func() error { _, err := m.InspectVolume("nope"); return err }, ErrNotFound},
		{"container of missing image", func() error { _, err := m.CreateContainer("d", ContainerOptions{Image: "nope"}); return err }, ErrNotFound},
		{"rm missing container", func() error { return m.RemoveContainer("nope", false) }, ErrNotFound},
		{"rm missing image", func() error { return m.RemoveImage("nope") }, ErrNotFound},
		{"container exists", func() error { _, err := m.CreateContainer("c", ContainerOptions{Image: "app:1"}); return err }, ErrExists},
		{"volume exists", func() error { _, err := m.CreateVolume("v", VolumeOptions{}); return err }, ErrExists},
		{"commit to existing image", func() error { _, err := m.CommitContainer("c", "app:1"); return err }, ErrExists},
		{"rm image in use", func() error { return m.RemoveImage("app:1") }, ErrInUse},
		{"rm mounted container", func() error { return m.RemoveContainer("c", false) }, ErrInUse},
		{"mount mounted container", func() error { _, err := m.MountContainer("c", root+"2"); return err }, ErrInUse},
		{"bad container name", func() error { _, err := m.CreateContainer("-x", ContainerOptions{Image: "app:1"}); return err }, thinpool.ErrInvalid},
		{"bad image name", func() error { _, err := m.InspectImage("UPPER"); return err }, thinpool.ErrInvalid},
		{"relative mount target", func() error {
			_, err := m.CreateContainer("d", ContainerOptions{Image: "app:1", Mounts: []MountSpec{{Type: "volume", Source: "v", Target: "data"}}})
			return err
		}, thinpool.ErrInvalid},
		{"offline volume create", func() error { _, err := offline.CreateVolume("w", VolumeOptions{}); return err }, ErrNoHost},
		{"offline container mount", func() error { _, err := offline.MountContainer("c", root+"3"); return err }, ErrNoHost},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); !errors.Is(err, tc.kind) {
				t.Fatalf("got %v, want an error matching %v", err, tc.kind)
			}
		})
	}
	// The offline manager reads records.
	if got := offline.ListContainers(); len(got) != 1 || got[0].Name != "c" {
		t.Fatalf("offline ls: %+v", got)
	}
	if _, err := offline.CreateVolume("w", VolumeOptions{}); err == nil || devicesWithRole(m.Pool(), roleVolume)[0] != "volume.v" || len(devicesWithRole(m.Pool(), roleVolume)) != 1 {
		t.Fatalf("offline create left %v", devicesWithRole(m.Pool(), roleVolume))
	}
}

// TestHostFailures: when the host fails a step (a mount, a write), the
// step leaves nothing half-made.
func TestHostFailures(t *testing.T) {
	errMount := errors.New("mount refused")
	t.Run("mount during import", func(t *testing.T) {
		m, h := newModel(t, 256<<20)
		n := 0
		h.before = func(op, dev string) error {
			if op == "mount" {
				if n++; n == 2 {
					return errMount
				}
			}
			return nil
		}
		_, err := m.ImportImage(context.Background(), dockerSave(t, map[string]v1.Image{"app:1": image(t, baseLayer(t), appLayer(t))}), nil, ImportOptions{BaseSize: testBaseSize})
		if !errors.Is(err, errMount) {
			t.Fatalf("import: %v", err)
		}
		requireOnly(t, m, h, roleBase)
	})
	t.Run("write during import", func(t *testing.T) {
		// The pool's data area is smaller than the layer: its write
		// back fails as a filesystem's writeback fails on a full pool.
		m, h := newModel(t, 2<<20)
		big := make([]byte, 3<<20)
		for i := range big {
			big[i] = byte(i*7 + i/4096)
		}
		_, err := m.ImportImage(context.Background(), dockerSave(t, map[string]v1.Image{"big:1": image(t, layerTar(t, file("blob", string(big))))}), nil, ImportOptions{BaseSize: testBaseSize})
		var werr *blockdev.WriteError
		if !errors.As(err, &werr) || !errors.Is(err, thinpool.ErrNoSpace) {
			t.Fatalf("import into a full pool: %v; want a WriteError matching thinpool.ErrNoSpace", err)
		}
		requireOnly(t, m, h, roleBase)
	})
	t.Run("write during mkfs", func(t *testing.T) {
		m, h := newModel(t, 256<<20)
		h.failWrites["volume.v"] = true
		if _, err := m.CreateVolume("v", VolumeOptions{Size: 8 << 20}); !isWriteFailure(err) {
			t.Fatalf("create volume: %v", err)
		}
		requireOnly(t, m, h)
	})
	t.Run("grow", func(t *testing.T) {
		m, h := newModel(t, 256<<20)
		img := importApp(t, m)
		h.before = func(op, dev string) error {
			if op == "growfs" {
				return errMount
			}
			return nil
		}
		_, err := m.CreateContainer("c", ContainerOptions{Image: "app:1", Size: 2 * img.VirtualSize,
			Mounts: []MountSpec{{Type: "volume", Target: "/anon"}}})
		if !errors.Is(err, errMount) {
			t.Fatalf("create: %v", err)
		}
		requireOnly(t, m, h, roleBase, roleLayer, roleImage)
	})
	t.Run("write before commit", func(t *testing.T) {
		m, h := newModel(t, 256<<20)
		importApp(t, m)
		c, err := m.CreateContainer("c", ContainerOptions{Image: "app:1"})
		if err != nil {
			t.Fatal(err)
		}
		root := filepath.Join(t.TempDir(), "c")
		if _, err := m.MountContainer("c", root); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, filepath.Join(root, "lost"), "lost")
		h.failWrites[c.Device] = true
		if _, err := m.CommitContainer("c", "app:2"); !isWriteFailure(err) {
			t.Fatalf("commit of a container that lost writes: %v", err)
		}
		if _, err := m.InspectImage("app:2"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("the failed commit made an image: %v", err)
		}
		if got := devicesWithRole(m.Pool(), roleLayer); len(got) != 3 {
			t.Fatalf("layers after a failed commit: %v", got)
		}
	})
}

// requireOnly fails unless the pool holds only devices of the roles given
// and nothing is mounted.
func requireOnly(t *testing.T, m *Manager, h *fakeHost, roles ...string) {
	t.Helper()
	for _, i := range m.Pool().Devices() {
		if !slices.Contains(roles, i.Labels[labelRole]) {
			t.Errorf("left behind: %s (%s, %s)", i.Name, i.Labels[labelRole], i.Labels[labelState])
		}
	}
	if got := h.mountedDevs(); len(got) != 0 {
		t.Errorf("left mounted: %v", got)
	}
}

// TestRollback: a crash in the middle of a step leaves devices labelled
// "creating" (and layers no image lists); the next New removes them. The
// crash is a copy of the pool file taken, synced, while the step is under
// way; the copy is then opened as the pool after a restart.
func TestRollback(t *testing.T) {
	for _, tc := range []struct {
		name  string
		op    string // the host call during which the pool is copied
		nth   int
		step  func(m *Manager) error
		roles []string // what remains after the rollback
	}{
		{"import", "mount", 2, func(m *Manager) error {
			_, err := m.ImportImage(context.Background(), dockerSave(t, map[string]v1.Image{"app:1": image(t, baseLayer(t), appLayer(t), configLayer(t))}), nil, ImportOptions{BaseSize: testBaseSize})
			return err
		}, []string{roleBase}},
		{"volume", "mkfs", 1, func(m *Manager) error {
			_, err := m.CreateVolume("v", VolumeOptions{Size: 8 << 20})
			return err
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, h := newModel(t, 32<<20)
			crashed := filepath.Join(t.TempDir(), "crashed.img")
			n := 0
			h.before = func(op, dev string) error {
				if op != tc.op {
					return nil
				}
				if n++; n != tc.nth {
					return nil
				}
				if err := m.Pool().Sync(); err != nil {
					return err
				}
				if err := copyFile(m.Pool().Path(), crashed); err != nil {
					return err
				}
				return errors.New("crash")
			}
			if err := tc.step(m); err == nil {
				t.Fatal("the step did not reach the crash")
			}
			p, err := thinpool.Open(crashed)
			if err != nil {
				t.Fatal(err)
			}
			defer checkAndClose(t, p)
			creating := 0
			for _, i := range p.Devices() {
				if i.Labels[labelState] == stateCreating {
					creating++
				}
			}
			if creating != 1 {
				t.Fatalf("the crash left %d devices creating: %+v", creating, p.Devices())
			}
			New(p, newFakeHost(p), t.TempDir(), t.Logf)
			for _, i := range p.Devices() {
				if !slices.Contains(tc.roles, i.Labels[labelRole]) {
					t.Errorf("after rollback: %s (%s, %s)", i.Name, i.Labels[labelRole], i.Labels[labelState])
				}
			}
		})
	}
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}
