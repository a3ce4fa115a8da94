package bench

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"
)

// The container workload: the life of a container, as Docker drives its
// storage driver. Import a 4-layer image whose third layer holds one big
// file (Config.ImageFileSize), create a container, start it (mount its
// root file system), modify 4 KiB in the middle of the big file (open,
// pwrite, fsync, close) and remove the container. thinpool runs it
// through thinctl; overlayfs does what Docker's overlay2 driver does.

func init() {
	register(workload{
		id:    "container",
		about: "container workflow: import a 4-layer image, create a container, start it, modify 4 KiB of a big image file, remove it",
		steps: func(h *harness) int { return h.cfg.Runs * len(h.containerTargets()) },
		run:   runContainer,
	})
}

// containerTargets are the targets of the container workload that can run.
func (h *harness) containerTargets() []string {
	var ts []string
	for _, t := range []string{TargetThinpool, TargetOverlayfs} {
		if h.on(t) {
			ts = append(ts, t)
		}
	}
	return ts
}

const (
	// containerRef is the name the image is imported under.
	containerRef = "thinpool-bench:1"
	// containerBigFile is the big file in the image (third layer).
	containerBigFile = "data/big.bin"
	// containerModifySize is how much of the big file the modify step writes.
	containerModifySize = 4096
)

// The steps of one run, in order: the rows of the table.
var containerSteps = []struct{ id, title string }{
	{"import", "import a 4-layer image"},
	{"create", "create a container"},
	{"mount", "start: mount the container's root file system"},
	{"modify", "modify 4 KiB in a big file (open, write, fsync)"},
	{"remove", "remove: unmount and delete the container"},
}

// containerRun is one run of the workload on one target.
type containerRun struct {
	h      *harness
	t      *Table // times
	space  *Table // space used
	target string
	img    *benchImage
	dir    string // this run's directory for this target
	run    int
}

// containerStepError is a step that failed.
type containerStepError struct {
	step string
	err  error
}

func (e *containerStepError) Error() string { return e.step + ": " + e.err.Error() }
func (e *containerStepError) Unwrap() error { return e.err }

// step syncs the file systems, so that no earlier writeback is billed to
// the step, then times f and records it in row id.
func (c *containerRun) step(id string, f func() error) error {
	unix.Sync()
	d, err := timed(f)
	if err != nil {
		return &containerStepError{step: id, err: err}
	}
	c.h.record(c.t, c.t.Row(id), c.target, float64(d)/float64(time.Millisecond))
	return nil
}

// recordSpace records bytes in row id of the space table.
func (c *containerRun) recordSpace(id string, bytes int64) {
	c.h.record(c.space, c.space.Row(id), c.target, float64(bytes)/(1<<20))
}

func runContainer(h *harness) error {
	size := humanize.IBytes(uint64(h.cfg.ImageFileSize))
	ts := h.containerTargets()
	t := h.table(&Table{
		ID:       "container",
		Title:    "Container workflow: import, create, start, modify 4 KiB of a " + size + " file, remove",
		Unit:     "ms",
		Lower:    true,
		Method:   containerMethod(h, size),
		Commands: containerCommands(),
		Goal:     "4 KiB modify of a 1 GiB image file ≥ 100× faster than overlayfs copy-up",
	})
	for _, s := range containerSteps {
		title := s.title
		switch s.id {
		case "import":
			title += fmt.Sprintf(" (%s + %s)", size, humanize.IBytes(uint64(smallLayersBytes)))
		case "modify":
			title = "modify 4 KiB in a " + size + " file (open, write, fsync)"
		}
		t.row(s.id, title, 0)
	}
	space := h.table(&Table{
		ID:    "container-space",
		Title: "Container workflow: space used on disk",
		Unit:  "MiB",
		Lower: true,
		Method: "What the import and the container take on disk, measured in the same runs as the times. " +
			"thinpool: growth of the pool's used data (`thinctl pool info --json`, `dataUsed`: 64 KiB blocks) over the import, " +
			"and from before the start to after the modify (what the container's changes, ext4's journal and superblock writes included, cost). " +
			"overlayfs: blocks allocated (st_blocks) under the layer directories after the import, and under the container's upper directory after the modify (the copied-up file).",
	})
	space.row("import", "import: new data on disk", 0)
	space.row("modify", "container's changes after start and a 4 KiB modify", 0)
	for _, tg := range []string{TargetThinpool, TargetOverlayfs} {
		if rt := h.rep.Target(tg); rt != nil && rt.Skipped != "" {
			for _, tb := range []*Table{t, space} {
				for _, r := range tb.Rows {
					r.note(tg, "skipped: "+rt.Skipped)
				}
			}
		}
	}
	if len(ts) == 0 {
		return nil
	}

	dir, err := h.dir("container", "image")
	if err != nil {
		return err
	}
	img, err := buildBenchImage(dir, h.cfg.ImageFileSize)
	if err != nil {
		return fmt.Errorf("build the image: %w", err)
	}
	h.logf("  image %s: %d layers, %s", img.path, img.layers, humanize.IBytes(uint64(img.tarSize)))

	broken := map[string]bool{}
	for run := range h.cfg.Runs {
		for _, tg := range rotate(ts, run) {
			h.progress("container run %d: %s", run+1, tg)
			if broken[tg] {
				continue
			}
			d, err := h.dir("container", fmt.Sprint(run), tg)
			if err != nil {
				return err
			}
			c := &containerRun{h: h, t: t, space: space, target: tg, img: img, dir: d, run: run}
			switch tg {
			case TargetThinpool:
				err = c.thinpool()
			case TargetOverlayfs:
				err = c.overlayfs()
			}
			if err != nil {
				if h.ctx.Err() != nil {
					return h.ctx.Err()
				}
				h.logf("container on %s: %v", tg, err)
				c.failed(err)
				broken[tg] = true
			}
			// Unmount and stop what the run started, then free its disk
			// space before the next run.
			h.cleanup()
			if mountedUnder(d) {
				h.logf("container: %s still has mounts; left in place", d)
			} else if err := os.RemoveAll(d); err != nil {
				h.logf("container: remove %s: %v", d, err)
			}
		}
	}
	return nil
}

// failed notes err on the rows of the step that failed and those after it.
func (c *containerRun) failed(err error) {
	msg := "failed: " + err.Error()
	from := 0
	var se *containerStepError
	if errors.As(err, &se) {
		msg = "failed in " + se.step + " (run " + fmt.Sprint(c.run+1) + "): " + se.err.Error()
		from = slices.IndexFunc(containerSteps, func(s struct{ id, title string }) bool { return s.id == se.step })
	}
	for i, s := range containerSteps {
		if i >= from {
			c.t.Row(s.id).note(c.target, msg)
			if r := c.space.Row(s.id); r != nil && len(r.Samples[c.target]) <= c.run {
				r.note(c.target, msg)
			}
		}
	}
}

func containerMethod(h *harness, size string) string {
	return fmt.Sprintf("The image is a docker save tarball made once per harness run: a base layer of %d small files (256 B to 8 KiB), "+
		"a layer of %d libraries (1 to 4 MiB), a layer holding one %s file (`/%s`), and a small app layer; "+
		"all contents are pseudo-random (ChaCha8), so nothing is sparse or compressible. "+
		"Each run starts each target from nothing (a fresh pool, fresh directories), runs the five steps in order and cleans up; the order of the targets rotates from run to run. "+
		"Every step starts after a `sync`, and its time is wall-clock milliseconds, caches warm (the image file was just written; the big file was just imported). "+
		"**thinpool**: everything goes through the thinctl binary and its pool daemon. Before the first step, a one-file image is imported and removed (untimed), so that the pool's base device (an empty ext4, made once per pool, as devicemapper makes it when the daemon starts) exists. "+
		"*import* is `thinctl image import` (each layer: snapshot, mount, apply the tar, unmount, make read-only; the layers are checked against their diff IDs); "+
		"*create* is `thinctl container create` (a writable snapshot); *start* is `thinctl container mount` (loop device on the thin device's FUSE file, ext4 mount); "+
		"*modify* opens the file in the mounted root O_RDWR, pwrites 4 KiB in its middle, fsyncs and closes; *remove* is `thinctl container umount` then `thinctl container rm`. "+
		"**overlayfs** does what Docker's overlay2 driver does: *import* reads manifest.json and the config of the same tarball, extracts each layer into a directory of its own with Go's archive/tar (owners, modes, times; "+
		"whiteouts would become overlay whiteouts), checks each layer's sha256 against the config's diff_ids as docker load does, then syncfs; "+
		"*create* makes the container's upper, work and merged directories; *start* mounts overlay with the layer directories as lowerdir (index=off when the kernel has the parameter, as Docker passes it); "+
		"*modify* is the same open, pwrite, fsync and close in the merged directory, where opening the file for writing copies all %s of it up into the upper directory; "+
		"*remove* unmounts and deletes the container's directories (`rm -rf`). Docker's init layer (/etc/hosts and friends) is left out. "+
		"Pool size for thinpool: %s of data.",
		baseLayerFiles, libLayerFiles, size, containerBigFile, size, humanize.IBytes(uint64(containerPoolSize(h.cfg.ImageFileSize))))
}

func containerCommands() []string {
	return []string{
		"# thinpool: a fresh pool per run (THINPOOL=DIR/pool.img)",
		"thinctl pool create --size SIZE && thinctl daemon start",
		"thinctl image import warmup.tar && thinctl image rm " + warmupRef + "  # untimed: makes the base device",
		"thinctl image import image.tar  # import",
		"thinctl container create --name cN " + containerRef + "  # create",
		"thinctl container mount cN DIR/rootfs  # start",
		"open DIR/rootfs/" + containerBigFile + " O_RDWR; pwrite 4 KiB at SIZE/2; fsync; close  # modify",
		"thinctl container umount cN && thinctl container rm cN  # remove",
		"# overlayfs: fresh directories per run",
		"for each layer N of image.tar: extract into layers/N (archive/tar, sha256 checked); syncfs  # import",
		"mkdir cN cN/diff cN/work cN/merged  # create",
		"mount -t overlay overlay -o lowerdir=layers/3:layers/2:layers/1:layers/0,upperdir=cN/diff,workdir=cN/work,index=off cN/merged  # start",
		"open cN/merged/" + containerBigFile + " O_RDWR; pwrite 4 KiB at SIZE/2; fsync; close  # modify: copies the whole file up",
		"umount cN/merged && rm -rf cN  # remove",
	}
}

// containerPoolSize is the data size of the pools the workload creates:
// room for the image, the base device's ext4 and the container.
func containerPoolSize(fileSize int64) int64 { return 2*fileSize + 4<<30 }

// thinpool runs the workload through thinctl on a fresh pool.
func (c *containerRun) thinpool() error {
	h := c.h
	rel, err := filepath.Rel(h.work, c.dir)
	if err != nil {
		return err
	}
	pool, err := h.thinPool(rel, containerPoolSize(c.img.bigSize))
	if err != nil {
		return err
	}
	if _, err := pool.ctl("image", "import", c.img.warmup); err != nil {
		return fmt.Errorf("warm-up import: %w", err)
	}
	if _, err := pool.ctl("image", "rm", warmupRef); err != nil {
		return fmt.Errorf("warm-up image rm: %w", err)
	}
	used0, err := containerPoolUsed(pool)
	if err != nil {
		return err
	}
	if err := c.step("import", func() error {
		_, err := pool.ctl("image", "import", c.img.path)
		return err
	}); err != nil {
		return err
	}
	used1, err := containerPoolUsed(pool)
	if err != nil {
		return err
	}
	c.recordSpace("import", used1-used0)

	name := fmt.Sprintf("c%d", c.run)
	if err := c.step("create", func() error {
		_, err := pool.ctl("container", "create", "--name", name, containerRef)
		return err
	}); err != nil {
		return err
	}
	root := filepath.Join(c.dir, "rootfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	used2, err := containerPoolUsed(pool)
	if err != nil {
		return err
	}
	// Unmount at the end unless remove did; also after a failed or
	// interrupted mount, which may have got as far as mounting.
	mounted := true
	h.defer_(func() {
		if mounted {
			if _, err := pool.ctlCleanup("container", "umount", name); err != nil {
				h.logf("container: %v", err)
			}
		}
	})
	if err := c.step("mount", func() error {
		_, err := pool.ctl("container", "mount", name, root)
		return err
	}); err != nil {
		return err
	}
	if err := c.modify(filepath.Join(root, containerBigFile)); err != nil {
		return err
	}
	used3, err := containerPoolUsed(pool)
	if err != nil {
		return err
	}
	c.recordSpace("modify", used3-used2)
	return c.step("remove", func() error {
		if _, err := pool.ctl("container", "umount", name); err != nil {
			return err
		}
		mounted = false
		_, err := pool.ctl("container", "rm", name)
		return err
	})
}

// containerPoolUsed is the pool's used data in bytes.
func containerPoolUsed(pool *thinDaemon) (int64, error) {
	out, err := pool.ctl("--json", "pool", "info")
	if err != nil {
		return 0, err
	}
	var info struct {
		DataUsed *int64 `json:"dataUsed"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil || info.DataUsed == nil {
		return 0, fmt.Errorf("thinctl pool info --json printed %q: %v", oneLine(out), err)
	}
	return *info.DataUsed, nil
}

// overlayfs runs the workload as Docker's overlay2 driver would.
func (c *containerRun) overlayfs() error {
	h := c.h
	var layers []string
	if err := c.step("import", func() error {
		var err error
		layers, err = overlayImport(h.ctx, c.img.path, filepath.Join(c.dir, "layers"))
		return err
	}); err != nil {
		return err
	}
	used, err := allocatedBytes(filepath.Join(c.dir, "layers"))
	if err != nil {
		return err
	}
	c.recordSpace("import", used)

	cdir := filepath.Join(c.dir, "containers", fmt.Sprintf("c%d", c.run))
	upper, work, merged := filepath.Join(cdir, "diff"), filepath.Join(cdir, "work"), filepath.Join(cdir, "merged")
	if err := c.step("create", func() error {
		for _, d := range []string{cdir, upper, work, merged} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	lower := slices.Clone(layers)
	slices.Reverse(lower) // overlay's lowerdir lists the top layer first
	opts := "lowerdir=" + strings.Join(lower, ":") + ",upperdir=" + upper + ",workdir=" + work
	if _, err := os.Stat("/sys/module/overlay/parameters/index"); err == nil {
		opts += ",index=off"
	}
	mounted := false
	h.defer_(func() {
		if mounted {
			if err := unix.Unmount(merged, 0); err != nil {
				h.logf("container: unmount %s: %v; detaching", merged, err)
				_ = unix.Unmount(merged, unix.MNT_DETACH)
			}
		}
	})
	if err := c.step("mount", func() error {
		err := unix.Mount("overlay", merged, "overlay", 0, opts)
		mounted = err == nil
		return err
	}); err != nil {
		return err
	}
	if err := c.modify(filepath.Join(merged, containerBigFile)); err != nil {
		return err
	}
	if used, err = allocatedBytes(upper); err != nil {
		return err
	}
	c.recordSpace("modify", used)
	return c.step("remove", func() error {
		if err := unix.Unmount(merged, 0); err != nil {
			return fmt.Errorf("unmount %s: %w", merged, err)
		}
		mounted = false
		return os.RemoveAll(cdir)
	})
}

// modify is the modify step on the big file at path: open it for
// writing, write 4 KiB in its middle, fsync, close. Then, untimed, it
// checks the file's size and reads the 4 KiB back.
func (c *containerRun) modify(path string) error {
	buf := make([]byte, containerModifySize)
	for i := range buf {
		buf[i] = byte(0xa5 + i + c.run)
	}
	off := c.img.bigSize / 2 &^ (containerModifySize - 1)
	if err := c.step("modify", func() error {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteAt(buf, off)
		if err == nil {
			err = f.Sync()
		}
		return errors.Join(err, f.Close())
	}); err != nil {
		return err
	}
	check := func() error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if fi.Size() != c.img.bigSize {
			return fmt.Errorf("%s is %d bytes, want %d", path, fi.Size(), c.img.bigSize)
		}
		got := make([]byte, len(buf))
		if _, err := f.ReadAt(got, off); err != nil {
			return err
		}
		if !bytes.Equal(got, buf) {
			return fmt.Errorf("%s: the 4 KiB written at %d read back different", path, off)
		}
		return nil
	}
	if err := check(); err != nil {
		return &containerStepError{step: "modify", err: err}
	}
	return nil
}

// allocatedBytes is the space allocated to the files under dir (st_blocks),
// each inode counted once.
func allocatedBytes(dir string) (int64, error) {
	var total int64
	seen := map[[2]uint64]bool{}
	err := filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		key := [2]uint64{st.Dev, st.Ino}
		if !seen[key] {
			seen[key] = true
			total += st.Blocks * 512
		}
		return nil
	})
	return total, err
}

// mountedUnder reports whether anything is mounted at or under dir.
func mountedUnder(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return true // cannot tell: assume so
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			return true
		}
	}
	return false
}

// overlayImport does what docker load does with the overlay2 driver: each
// layer of the docker save tarball at path, in the order its
// manifest.json lists them, is extracted into a directory of its own
// under dir and checked against the config's diff ID; then the file
// system is synced. It returns the layer directories, base first.
func overlayImport(ctx context.Context, path, dir string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	index, err := indexTar(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	read := func(name string) ([]byte, error) {
		e, ok := index[name]
		if !ok || e.size > 16<<20 {
			return nil, fmt.Errorf("%s: no %s (or too large)", path, name)
		}
		return io.ReadAll(io.NewSectionReader(f, e.off, e.size))
	}
	raw, err := read("manifest.json")
	if err != nil {
		return nil, err
	}
	var manifest []struct {
		Config string
		Layers []string
	}
	if err := json.Unmarshal(raw, &manifest); err != nil || len(manifest) != 1 {
		return nil, fmt.Errorf("%s: manifest.json: want one image (%v)", path, err)
	}
	if raw, err = read(manifest[0].Config); err != nil {
		return nil, err
	}
	var config struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(raw, &config); err != nil {
		return nil, fmt.Errorf("%s: config: %w", path, err)
	}
	if len(config.RootFS.DiffIDs) != len(manifest[0].Layers) {
		return nil, fmt.Errorf("%s: %d diff_ids for %d layers", path, len(config.RootFS.DiffIDs), len(manifest[0].Layers))
	}
	var dirs []string
	for i, name := range manifest[0].Layers {
		e, ok := index[name]
		if !ok {
			return nil, fmt.Errorf("%s: no layer %s", path, name)
		}
		d := filepath.Join(dir, fmt.Sprint(i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		sum := sha256.New()
		r := io.TeeReader(io.NewSectionReader(f, e.off, e.size), sum)
		if err := extractLayer(ctx, bufio.NewReaderSize(r, 1<<20), d); err != nil {
			return nil, fmt.Errorf("layer %d: %w", i+1, err)
		}
		if _, err := io.Copy(io.Discard, r); err != nil { // the tar's padding
			return nil, err
		}
		if got := "sha256:" + hex.EncodeToString(sum.Sum(nil)); got != config.RootFS.DiffIDs[i] {
			return nil, fmt.Errorf("layer %d is %s, the config says %s", i+1, got, config.RootFS.DiffIDs[i])
		}
		dirs = append(dirs, d)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return dirs, unix.Syncfs(fd)
}

// tarEntry locates a regular file's data in a tar file.
type tarEntry struct{ off, size int64 }

// indexTar maps the names of the regular files in the tar f to where
// their data is.
func indexTar(f *os.File) (map[string]tarEntry, error) {
	index := map[string]tarEntry{}
	tr := tar.NewReader(f) // f is a Seeker: Next skips the data
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return index, nil
		}
		if err != nil {
			return nil, err
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, err
		}
		index[filepath.Clean(hdr.Name)] = tarEntry{off: off, size: hdr.Size}
	}
}

// extractLayer extracts the layer tar r into dir as Docker's overlay2
// driver does: owners, modes and times kept, whiteouts turned into overlay
// whiteouts (a 0/0 character device; an opaque directory gets the
// trusted.overlay.opaque xattr). Names are confined to dir lexically; the
// image is the benchmark's own.
func extractLayer(ctx context.Context, r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	buf := make([]byte, 1<<20)
	type dirTime struct {
		path string
		t    time.Time
	}
	var dirs []dirTime
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.Clean("/"+hdr.Name))
		// A parent the tar does not hold is made, as Docker's unpacker does.
		if parent := filepath.Dir(p); parent != dir {
			if err := os.MkdirAll(parent, 0o755); err != nil {
				return err
			}
		}
		base := filepath.Base(p)
		switch {
		case base == ".wh..wh..opq":
			if err := unix.Setxattr(filepath.Dir(p), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
				return err
			}
			continue
		case strings.HasPrefix(base, ".wh."):
			wh := filepath.Join(filepath.Dir(p), strings.TrimPrefix(base, ".wh."))
			if err := unix.Mknod(wh, unix.S_IFCHR, 0); err != nil {
				return err
			}
			continue
		}
		mode := hdr.FileInfo().Mode()
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
			if err := os.Chmod(p, mode.Perm()); err != nil {
				return err
			}
			dirs = append(dirs, dirTime{p, hdr.ModTime})
		case tar.TypeReg:
			if err := writeTarFile(p, tr, buf, mode.Perm()); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(hdr.Linkname, p); err != nil {
				return err
			}
		case tar.TypeLink:
			if err := os.Link(filepath.Join(dir, filepath.Clean("/"+hdr.Linkname)), p); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unsupported tar entry type %q", hdr.Name, hdr.Typeflag)
		}
		if err := os.Lchown(p, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeDir {
			if err := lutimes(p, hdr.ModTime); err != nil {
				return err
			}
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := lutimes(dirs[i].path, dirs[i].t); err != nil {
			return err
		}
	}
	return nil
}

func writeTarFile(p string, r io.Reader, buf []byte, perm os.FileMode) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	// Plain Writer and Reader, so that CopyBuffer uses buf.
	_, err = io.CopyBuffer(struct{ io.Writer }{f}, struct{ io.Reader }{r}, buf)
	if err == nil {
		err = f.Chmod(perm)
	}
	return errors.Join(err, f.Close())
}

func lutimes(p string, t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// The bench image.

const (
	// warmupRef is the one-file image thinpool imports before the
	// first step, to make its base device.
	warmupRef = "thinpool-bench-warmup:1"
	// baseLayerFiles and libLayerFiles are how many files the first two
	// layers hold.
	baseLayerFiles = 300
	libLayerFiles  = 8
)

// smallLayersBytes is the file content of every layer but the big file's,
// as benchLayers writes it.
var smallLayersBytes = func() int64 {
	var n int64
	for _, s := range baseLayerSizes() {
		n += s
	}
	for i := range libLayerFiles {
		n += libSize(i)
	}
	return n + int64(appLayerBytes)
}()

// benchImage is the image the workload imports.
type benchImage struct {
	path    string // docker save tarball
	warmup  string // docker save tarball of warmupRef
	layers  int
	tarSize int64 // bytes of path
	bigSize int64 // size of containerBigFile
}

// imageEpoch is the time of every file and history entry in the image.
var imageEpoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// buildBenchImage writes the image into dir.
func buildBenchImage(dir string, bigSize int64) (*benchImage, error) {
	img := &benchImage{path: filepath.Join(dir, "image.tar"), warmup: filepath.Join(dir, "warmup.tar"), bigSize: bigSize}
	layers := benchLayers(bigSize)
	img.layers = len(layers)
	if err := writeDockerSave(img.path, containerRef, layers); err != nil {
		return nil, err
	}
	warm := []imageLayer{{createdBy: "COPY warmup /", write: func(tw *tar.Writer) error {
		return tarBytes(tw, "warmup", 0o644, []byte("makes the pool's base device\n"))
	}}}
	if err := writeDockerSave(img.warmup, warmupRef, warm); err != nil {
		return nil, err
	}
	fi, err := os.Stat(img.path)
	if err != nil {
		return nil, err
	}
	img.tarSize = fi.Size()
	return img, nil
}

// imageLayer is one layer of an image to write.
type imageLayer struct {
	createdBy string
	// write writes the layer's entries to tw. It must write the same
	// bytes every time: writeDockerSave calls it twice.
	write func(tw *tar.Writer) error
}

// baseLayerSizes are the sizes of the base layer's files.
func baseLayerSizes() []int64 {
	r := rand.New(rand.NewPCG(1, 2))
	sizes := make([]int64, baseLayerFiles)
	for i := range sizes {
		sizes[i] = 256 + r.Int64N(8<<10-256)
	}
	return sizes
}

// libSize is the size of file i of the library layer: 1 to 4 MiB.
func libSize(i int) int64 { return int64(i%4+1) << 20 }

// The app layer's files.
const (
	appVersion    = "1\n"
	appMain       = "#!/bin/sh\necho hello from the bench image\n"
	appStaticSize = 256 << 10
	appLayerBytes = len(appVersion) + len(appMain) + appStaticSize
)

// benchLayers are the layers of the bench image, base first.
func benchLayers(bigSize int64) []imageLayer {
	base := func(tw *tar.Writer) error {
		for _, d := range []string{"bin", "etc", "tmp", "usr", "usr/bin", "usr/share", "usr/share/doc", "var"} {
			if err := tarDir(tw, d); err != nil {
				return err
			}
		}
		for i, size := range baseLayerSizes() {
			pkg := fmt.Sprintf("usr/share/doc/pkg%02d", i/15)
			if i%15 == 0 {
				if err := tarDir(tw, pkg); err != nil {
					return err
				}
			}
			if err := tarRandom(tw, fmt.Sprintf("%s/file%02d", pkg, i%15), 0o644, size, uint64(100+i)); err != nil {
				return err
			}
		}
		return tarSymlink(tw, "bin/sh", "/usr/bin/busybox")
	}
	libs := func(tw *tar.Writer) error {
		for _, d := range []string{"usr", "usr/lib"} {
			if err := tarDir(tw, d); err != nil {
				return err
			}
		}
		for i := range libLayerFiles {
			if err := tarRandom(tw, fmt.Sprintf("usr/lib/lib%02d.so.1", i), 0o755, libSize(i), uint64(500+i)); err != nil {
				return err
			}
		}
		return nil
	}
	data := func(tw *tar.Writer) error {
		if err := tarDir(tw, filepath.Dir(containerBigFile)); err != nil {
			return err
		}
		return tarRandom(tw, containerBigFile, 0o644, bigSize, 900)
	}
	app := func(tw *tar.Writer) error {
		if err := tarDir(tw, "app"); err != nil {
			return err
		}
		if err := tarBytes(tw, "app/VERSION", 0o644, []byte(appVersion)); err != nil {
			return err
		}
		if err := tarBytes(tw, "app/main.sh", 0o755, []byte(appMain)); err != nil {
			return err
		}
		return tarRandom(tw, "app/static.bin", 0o644, appStaticSize, 1000)
	}
	return []imageLayer{
		{createdBy: "ADD rootfs.tar /", write: base},
		{createdBy: "RUN apt-get install -y libs", write: libs},
		{createdBy: "COPY big.bin /data/", write: data},
		{createdBy: "COPY app /app", write: app},
	}
}

func tarDir(tw *tar.Writer, name string) error {
	return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, ModTime: imageEpoch})
}

func tarSymlink(tw *tar.Writer, name, target string) error {
	return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: imageEpoch})
}

func tarBytes(tw *tar.Writer, name string, mode int64, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: imageEpoch}); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

// tarRandom adds a file of size pseudo-random bytes, the same for the
// same seed.
func tarRandom(tw *tar.Writer, name string, mode, size int64, seed uint64) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: size, ModTime: imageEpoch}); err != nil {
		return err
	}
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	rng := rand.NewChaCha8(key)
	buf := make([]byte, min(size, 1<<20))
	for left := size; left > 0; {
		b := buf[:min(left, int64(len(buf)))]
		_, _ = rng.Read(b) // never fails
		if _, err := tw.Write(b); err != nil {
			return err
		}
		left -= int64(len(b))
	}
	return nil
}

// countWriter counts the bytes written to w.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeDockerSave writes a docker save tarball of one image, ref, made of
// layers, streaming: each layer is written twice, once to learn its size
// and diff ID (sha256) and once into the tarball, so no layer is ever
// held in memory or in a temporary file. The tarball holds the config
// (<sha256>.json) and manifest.json first, then <diff ID>/layer.tar for
// each layer, uncompressed, as docker save writes them.
// archive.WriteDockerSave does the same from layers in memory.
func writeDockerSave(path, ref string, layers []imageLayer) (err error) {
	diffIDs := make([]string, len(layers))
	sizes := make([]int64, len(layers))
	for i, l := range layers {
		sum := sha256.New()
		cw := &countWriter{w: sum}
		if err := writeLayer(cw, l); err != nil {
			return err
		}
		diffIDs[i], sizes[i] = hex.EncodeToString(sum.Sum(nil)), cw.n
	}
	history := make([]map[string]any, len(layers))
	for i, l := range layers {
		history[i] = map[string]any{"created": imageEpoch, "created_by": l.createdBy}
	}
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      imageEpoch,
		"config":       map[string]any{"Env": []string{"PATH=/usr/bin:/bin"}, "Cmd": []string{"/app/main.sh"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": prefixAll("sha256:", diffIDs)},
		"history":      history,
	})
	if err != nil {
		return err
	}
	sum := sha256.Sum256(config)
	configName := hex.EncodeToString(sum[:]) + ".json"
	var layerNames []string
	for _, id := range diffIDs {
		layerNames = append(layerNames, id+"/layer.tar")
	}
	manifest, err := json.Marshal([]map[string]any{{"Config": configName, "RepoTags": []string{ref}, "Layers": layerNames}})
	if err != nil {
		return err
	}

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	if err := tarBytes(tw, configName, 0o644, config); err != nil {
		return err
	}
	if err := tarBytes(tw, "manifest.json", 0o644, manifest); err != nil {
		return err
	}
	for i, l := range layers {
		if err := tarDir(tw, diffIDs[i]); err != nil {
			return err
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: layerNames[i], Mode: 0o644, Size: sizes[i], ModTime: imageEpoch}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if err := writeLayer(tw, l); err != nil {
			return fmt.Errorf("layer %d: %w", i+1, err)
		}
	}
	if err := tw.Close(); err != nil { // also fails if a layer came out shorter
		return err
	}
	return bw.Flush()
}

// writeLayer writes layer l as a tar to w.
func writeLayer(w io.Writer, l imageLayer) error {
	tw := tar.NewWriter(w)
	if err := l.write(tw); err != nil {
		return err
	}
	return tw.Close()
}

func prefixAll(prefix string, s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = prefix + x
	}
	return out
}
