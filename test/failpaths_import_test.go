//go:build linux && integration

package test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/thinpool/thinpool/daemon"
)

// The tests in this file are issue 11's import failure paths: an import
// into a pool that fills up, and imports interrupted with Ctrl-C, through
// the daemon and without it. Each ends with nothing half-made in the pool,
// a clean pool check, and what was there before intact.

// smallImage is a one-layer image holding /data/keep, 4 MiB of noise; it
// needs no busybox, since the tests only read its file from the host.
func smallImage(t *testing.T) (path, keepSHA string) {
	t.Helper()
	keep := noise(41, 4<<20)
	return writeImage(t, "small:1", newLayer(t).dir("data").file("data/keep", keep).bytes()), sha(keep)
}

// bigImage is a one-layer docker save tarball holding /big/file, size bytes
// of incompressible noise.
func bigImage(t *testing.T, name string, size int) (path, fileSHA string) {
	t.Helper()
	data := noise(42, size)
	return writeImage(t, name, newLayer(t).dir("big").file("big/file", data).bytes()), sha(data)
}

// requireIntact creates a container from small:1, mounts it and compares
// /data/keep with what was imported.
func (e *env) requireIntact(ctr, keepSHA string) {
	e.t.Helper()
	e.must("container", "create", "--name", ctr, "small:1")
	root := e.mountContainer(ctr)
	if got := fileSHA(e.t, filepath.Join(root, "data/keep")); got != keepSHA {
		e.t.Fatal("small:1's /data/keep does not read back as imported")
	}
	e.must("container", "umount", ctr)
	e.must("container", "rm", ctr)
}

// imageNames lists the images 'image ls' shows.
func (e *env) imageNames() []string {
	e.t.Helper()
	var imgs []imageJSON
	e.mustJSON(&imgs, "image", "ls")
	var names []string
	for _, im := range imgs {
		names = append(names, im.Name)
	}
	slices.Sort(names)
	return names
}

// TestImageImportPoolFull: an image larger than the pool fails to import,
// non-zero with the no-space message, instead of reporting success over a
// filesystem whose writeback failed; no layer or image of it remains, the
// image imported before still reads back intact and the pool checks clean.
func TestImageImportPoolFull(t *testing.T) {
	e := newEnv(t, "256M")
	small, keepSHA := smallImage(t)
	e.must("image", "import", small)
	big, _ := bigImage(t, "big:latest", 400<<20)
	names := e.deviceNames()

	msg := e.failsOneLine("image", "import", big)
	t.Logf("import into a full pool: %s", msg)
	for _, want := range []string{"no space left in pool (256 MiB data, ", " free): grow it with 'thinctl pool grow'"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("the error %q does not say %q", msg, want)
		}
	}
	e.roles() // nothing left in state creating
	if got := e.deviceNames(); !slices.Equal(got, names) {
		t.Fatalf("after the failed import the devices are %v, want %v", got, names)
	}
	if got := e.imageNames(); !slices.Equal(got, []string{"small:1"}) {
		t.Fatalf("after the failed import image ls shows %v", got)
	}
	e.requireIntact("c", keepSHA)
	e.must("daemon", "stop")
	e.check()
}

// interrupt runs thinctl, waits until started says the work is under way,
// sends SIGINT and returns its stderr, exit code, and how long it took to
// exit after the signal. It fails the test if thinctl ends before started
// is true or does not exit within a minute of the signal.
func (e *env) interrupt(started func() bool, args ...string) (string, int, time.Duration) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, thinctlBin, append([]string{"--pool", e.pool}, args...)...)
	cmd.Env = append(os.Environ(), "THINPOOL_RUN_DIR="+e.runDir)
	cmd.WaitDelay = 10 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(2 * time.Minute)
	for !started() {
		select {
		case err := <-done:
			e.t.Fatalf("thinctl %s ended before the test could interrupt it: %v: %s", strings.Join(args, " "), err, stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			e.t.Fatalf("thinctl %s never started its work", strings.Join(args, " "))
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		e.t.Fatal(err)
	}
	sent := time.Now()
	select {
	case <-done:
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-done
		e.t.Fatalf("thinctl %s did not exit within a minute of SIGINT", strings.Join(args, " "))
	}
	return stderr.String(), cmd.ProcessState.ExitCode(), time.Since(sent)
}

// requireInterrupted checks what a client interrupted with SIGINT did: it
// exited 130 promptly with one line saying it was interrupted.
func requireInterrupted(t *testing.T, stderr string, code int, took time.Duration) {
	t.Helper()
	t.Logf("after SIGINT: exit %d in %v: %q", code, took.Round(time.Millisecond), stderr)
	if code != 130 {
		t.Fatalf("exit code after SIGINT is %d (%s), want 130", code, strings.TrimSpace(stderr))
	}
	if stderr != "thinctl: interrupted: nothing imported\n" {
		t.Fatalf("stderr after SIGINT is %q, want \"thinctl: interrupted: nothing imported\"", stderr)
	}
	if took > 15*time.Second {
		t.Fatalf("the client took %v to exit after SIGINT", took)
	}
}

// TestImageImportInterrupted: SIGINT to 'image import' running in the
// daemon cancels the daemon's work: the client exits 130 promptly saying
// so, the layer being applied is unmounted and deleted, no image appears
// later, the pool checks clean and the import then succeeds.
func TestImageImportInterrupted(t *testing.T) {
	e := newEnv(t, "4G")
	small, keepSHA := smallImage(t)
	e.must("image", "import", small)
	big, bigSHA := bigImage(t, "big:1", 1<<30)
	names := e.deviceNames()

	layers := filepath.Join(daemon.RunDir(e.pool), "layers") + "/"
	var mountedAt time.Time
	layerMounted := func() bool {
		b, _ := os.ReadFile("/proc/self/mountinfo")
		return strings.Contains(string(b), layers)
	}
	stderr, code, took := e.interrupt(func() bool {
		if mountedAt.IsZero() && layerMounted() {
			mountedAt = time.Now()
		}
		// Half a second into the layer's apply.
		return !mountedAt.IsZero() && time.Since(mountedAt) > 500*time.Millisecond
	}, "image", "import", big)
	requireInterrupted(t, stderr, code, took)
	// The daemon stopped its work: nothing of it is mounted now, and no
	// image appears later.
	if layerMounted() {
		t.Fatal("the layer is still mounted in the daemon after the client exited")
	}
	time.Sleep(2 * time.Second)
	if got := e.imageNames(); !slices.Equal(got, []string{"small:1"}) {
		t.Fatalf("after the interrupted import image ls shows %v", got)
	}
	e.roles()
	if got := e.deviceNames(); !slices.Equal(got, names) {
		t.Fatalf("after the interrupted import the devices are %v, want %v", got, names)
	}
	e.must("daemon", "stop")
	e.check()

	im := e.importImage(big)
	if len(im) != 1 || im[0].Name != "big:1" {
		t.Fatalf("re-import: %+v", im)
	}
	e.must("container", "create", "--name", "b", "big:1")
	root := e.mountContainer("b")
	if got := fileSHA(t, filepath.Join(root, "big/file")); got != bigSHA {
		t.Fatal("big/file differs after the re-import")
	}
	e.must("container", "umount", "b")
	e.requireIntact("c", keepSHA)
	e.must("daemon", "stop")
	e.check()
}

// TestDeviceImportInterruptedOffline: SIGINT to 'device import' with no
// daemon running removes the device it created: no empty or partial device
// remains, the pool checks clean, and the import then succeeds.
func TestDeviceImportInterruptedOffline(t *testing.T) {
	e := newEnv(t, "4G")
	e.must("device", "create", "keep", "--size", "64M")
	keep := filepath.Join(e.dir, "keep.img")
	writeNoise(t, keep, 64<<20, 7)
	e.must("device", "import", "keep", keep)
	img := filepath.Join(e.dir, "disk.img")
	writeNoise(t, img, 2<<30, 8)
	if pid := e.daemonPID(); pid != 0 {
		t.Fatalf("a daemon runs (pid %d); the test is for an import without one", pid)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(e.pool, &st); err != nil {
		t.Fatal(err)
	}
	before := st.Blocks * 512
	stderr, code, took := e.interrupt(func() bool {
		// 128 MiB of the image is in the pool file.
		return syscall.Stat(e.pool, &st) == nil && st.Blocks*512 > before+128<<20
	}, "device", "import", "v", img)
	requireInterrupted(t, stderr, code, took)
	if got := e.deviceNames(); !slices.Equal(got, []string{"keep"}) {
		t.Fatalf("after the interrupted import the devices are %v, want [keep]", got)
	}
	e.check()
	out := filepath.Join(e.dir, "keep.out")
	e.must("device", "export", "keep", out)
	if fileSHA(t, out) != fileSHA(t, keep) {
		t.Fatal("device keep changed")
	}
	e.must("device", "import", "v", img)
	e.check()
}

// writeNoise writes size bytes of noise from seed to path.
func writeNoise(t *testing.T, path string, size int64, seed byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	s[0] = seed
	if _, err := io.CopyN(f, rand.NewChaCha8(s), size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestContainerCommitPoolFull: a commit of a mounted container whose
// writes did not fit in the pool fails with the no-space message instead of
// making an image of a filesystem that lost them; nothing is left of it.
func TestContainerCommitPoolFull(t *testing.T) {
	e := newEnv(t, "256M")
	small, keepSHA := smallImage(t)
	e.must("image", "import", small)
	e.must("container", "create", "--name", "c", "small:1")
	root := e.mountContainer("c")
	// Buffered writes: dd succeeds, writeback fails later.
	mustSh(t, 2*time.Minute, "dd if=/dev/urandom of="+root+"/fill bs=1M count=400 status=none")
	names := e.deviceNames()
	msg := e.failsOneLine("container", "commit", "c", "full:1")
	t.Logf("commit over a full pool: %s", msg)
	if !strings.Contains(msg, `container "c" lost writes since it was mounted: no space left in pool (256 MiB data, `) {
		t.Fatalf("the error %q does not say the pool is full", msg)
	}
	if got := e.imageNames(); !slices.Equal(got, []string{"small:1"}) {
		t.Fatalf("after the failed commit image ls shows %v", got)
	}
	if got := e.deviceNames(); !slices.Equal(got, names) {
		t.Fatalf("after the failed commit the devices are %v, want %v", got, names)
	}
	e.must("container", "umount", "c")
	e.must("container", "rm", "c")
	e.requireIntact("d", keepSHA)
	e.must("daemon", "stop")
	e.check()
}
