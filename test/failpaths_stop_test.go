//go:build linux && integration

package test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/thinpool/thinpool/daemon"
	"golang.org/x/sys/unix"
)

// holdMount starts `sleep` with its working directory dir, as a shell cd'd
// into a mount would be; cleanup kills it. It returns the process.
func holdMount(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	c := exec.Command("sleep", "600")
	c.Dir = dir
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = c.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = c.Process.Kill()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
	})
	return c
}

// release kills the holder and waits until it is gone.
func release(t *testing.T, c *exec.Cmd) {
	t.Helper()
	_ = c.Process.Kill()
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/cwd", c.Process.Pid)); err != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("holder pid %d did not exit", c.Process.Pid)
}

// mountedHere reports whether dir is a mount point in our namespace.
func mountedHere(t *testing.T, dir string) bool {
	t.Helper()
	for _, m := range mountsBelow(t, dir, "\x00") {
		if m == dir {
			return true
		}
	}
	return false
}

// writeSynced writes n random bytes to path, fsyncs it, and returns their
// SHA-256.
func writeSynced(t *testing.T, path string, n int) string {
	t.Helper()
	b := noise(uint64(n), n)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return sha(b)
}

// waitExit waits until pid is gone.
func waitExit(t *testing.T, pid int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still runs after %v", pid, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDaemonStopBusyMount: with a process cd'd into a mounted device,
// 'daemon stop' and SIGTERM refuse, naming the mount and the pid; the
// daemon keeps serving, and the synced file reads back. Once the holder has
// gone a plain stop succeeds and the file is there after a remount.
func TestDaemonStopBusyMount(t *testing.T) {
	requireTool(t, "mkfs.ext4")
	e := newEnv(t, "4G")
	mnt := filepath.Join(e.dir, "mnt")
	e.must("device", "create", "web", "--size", "1G")
	e.must("device", "mount", "web", mnt, "--mkfs", "ext4")
	t.Cleanup(func() { _, _, _ = e.run(time.Minute, "device", "umount", mnt) })
	sum := writeSynced(t, filepath.Join(mnt, "synced"), 4<<20)
	holder := holdMount(t, mnt)
	pid := e.daemonPID()

	_, errOut, code := e.run(time.Minute, "daemon", "stop")
	if code == 0 {
		t.Fatalf("daemon stop with a busy mount exited 0: %s", errOut)
	}
	if !strings.Contains(errOut, mnt) || !strings.Contains(errOut, strconv.Itoa(holder.Process.Pid)) ||
		strings.Count(errOut, "\n") != 1 {
		t.Fatalf("daemon stop must name the mount %s and pid %d on one line: %q", mnt, holder.Process.Pid, errOut)
	}
	if e.daemonPID() != pid || !mountedHere(t, mnt) {
		t.Fatal("the refused stop did not leave the daemon running and the mount in place")
	}
	if got := fileSHA(t, filepath.Join(mnt, "synced")); got != sum {
		t.Fatal("the synced file changed after a refused stop")
	}
	// The daemon still serves: a new file written and synced.
	sum2 := writeSynced(t, filepath.Join(mnt, "after-refusal"), 1<<20)
	if out := e.must("device", "ls"); !strings.Contains(out, "/dev/loop") {
		t.Fatalf("the device is no longer attached:\n%s", out)
	}

	// SIGTERM with the mount busy keeps serving and logs why.
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if e.daemonPID() != pid {
		t.Fatal("SIGTERM with a busy mount stopped the daemon")
	}
	log, _ := os.ReadFile(filepath.Join(daemon.RunDir(e.pool), "daemon.log"))
	if !strings.Contains(string(log), "not stopping") || !strings.Contains(string(log), strconv.Itoa(holder.Process.Pid)) {
		t.Fatalf("the log does not say why SIGTERM did not stop the daemon:\n%s", log)
	}
	if got := fileSHA(t, filepath.Join(mnt, "synced")); got != sum {
		t.Fatal("the synced file changed after SIGTERM")
	}
	writeSynced(t, filepath.Join(mnt, "after-sigterm"), 64<<10)

	release(t, holder)
	e.must("daemon", "stop")
	waitExit(t, pid, 30*time.Second)
	if mountedHere(t, mnt) {
		t.Fatal("daemon stop left the mount")
	}
	e.check()
	e.must("device", "mount", "web", mnt)
	if fileSHA(t, filepath.Join(mnt, "synced")) != sum || fileSHA(t, filepath.Join(mnt, "after-refusal")) != sum2 {
		t.Fatal("synced files differ after the remount")
	}
	e.must("device", "umount", mnt)
	e.must("daemon", "stop")
	e.check()
}

// TestDaemonStopForce: 'daemon stop --force' with a busy mount syncs and
// lazily unmounts it, and the daemon keeps serving the filesystem until its
// holder lets go; then it detaches, commits and exits. Nothing synced is
// lost, and what the holder writes and syncs meanwhile survives too.
func TestDaemonStopForce(t *testing.T) {
	requireTool(t, "mkfs.ext4")
	e := newEnv(t, "4G")
	mnt := filepath.Join(e.dir, "mnt")
	e.must("device", "create", "web", "--size", "1G")
	e.must("device", "mount", "web", mnt, "--mkfs", "ext4")
	t.Cleanup(func() { _, _, _ = e.run(time.Minute, "device", "umount", mnt) })
	sum := writeSynced(t, filepath.Join(mnt, "synced"), 4<<20)
	holder := holdMount(t, mnt)
	pid := e.daemonPID()

	out, errOut, code := e.run(time.Minute, "daemon", "stop", "--force")
	if code != 0 {
		t.Fatalf("daemon stop --force: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, mnt) || !strings.Contains(out, strconv.Itoa(holder.Process.Pid)) {
		t.Fatalf("daemon stop --force must say what it left held, and by whom: %q", out)
	}
	if mountedHere(t, mnt) {
		t.Fatal("daemon stop --force left the mount in the namespace")
	}
	if e.daemonPID() != pid {
		t.Fatal("the daemon exited while a lazily unmounted filesystem is still held")
	}
	// The holder still reads and writes its filesystem through the daemon.
	held := fmt.Sprintf("/proc/%d/cwd", holder.Process.Pid)
	if got := fileSHA(t, filepath.Join(held, "synced")); got != sum {
		t.Fatal("the synced file changed under its holder after stop --force")
	}
	sum2 := writeSynced(t, filepath.Join(held, "late"), 1<<20)
	if out := e.must("daemon", "status"); !strings.Contains(out, "stopping") {
		t.Fatalf("daemon status while the daemon drains: %q", out)
	}
	// Other commands are refused while it drains, and say why.
	if msg := e.fails("device", "ls"); !strings.Contains(msg, "stopping") && !strings.Contains(msg, "in use") {
		t.Fatalf("device ls while the daemon drains: %q", msg)
	}

	release(t, holder)
	waitExit(t, pid, 60*time.Second)
	e.check()
	e.must("device", "mount", "web", mnt)
	if fileSHA(t, filepath.Join(mnt, "synced")) != sum || fileSHA(t, filepath.Join(mnt, "late")) != sum2 {
		t.Fatal("files synced before and during the drain differ after the remount")
	}
	e.must("device", "umount", mnt)
	e.must("daemon", "stop")
	e.check()
}

// runPTY runs thinctl with a pseudo-terminal as its stdin, stdout and
// stderr, answers its y/N question with answer, and returns what it wrote
// and its exit code.
func (e *env) runPTY(answer string, args ...string) (string, int) {
	e.t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	defer master.Close()
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		e.t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		e.t.Fatal(err)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command(thinctlBin, append([]string{"--pool", e.pool}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.Env = append(os.Environ(), "THINPOOL_RUN_DIR="+e.runDir)
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	tty.Close()
	out := make(chan string, 64)
	go func() {
		b := make([]byte, 4096)
		for {
			k, err := master.Read(b)
			if k > 0 {
				out <- string(b[:k])
			}
			if err != nil {
				close(out)
				return
			}
		}
	}()
	var got strings.Builder
	answered := false
	deadline := time.After(time.Minute)
	for {
		select {
		case chunk, ok := <-out:
			if !ok {
				code := 0
				if err := cmd.Wait(); err != nil {
					code = -1
					if ee, ok := err.(*exec.ExitError); ok {
						code = ee.ExitCode()
					}
				}
				return got.String(), code
			}
			got.WriteString(chunk)
			if !answered && strings.Contains(got.String(), "[y/N]") {
				answered = true
				if _, err := master.Write([]byte(answer + "\n")); err != nil {
					e.t.Fatal(err)
				}
			}
		case <-deadline:
			_ = cmd.Process.Kill()
			e.t.Fatalf("thinctl %v on a terminal: no end after a minute: %q", args, got.String())
		}
	}
}

// volumeNames lists the volumes by name.
func (e *env) volumeNames() map[string]bool {
	e.t.Helper()
	var vs []struct{ Name string }
	e.mustJSON(&vs, "volume", "ls")
	out := map[string]bool{}
	for _, v := range vs {
		out[v.Name] = true
	}
	return out
}

// anonVolume returns the anonymous volume a container mounts at target.
func (e *env) anonVolume(container, target string) string {
	e.t.Helper()
	var c struct {
		Mounts []struct {
			Type, Source, Target string
		} `json:"mounts"`
	}
	e.mustJSON(&c, "container", "inspect", container)
	for _, m := range c.Mounts {
		if m.Target == target && m.Type == "volume" {
			return m.Source
		}
	}
	e.t.Fatalf("container %s has no volume at %s: %+v", container, target, c.Mounts)
	return ""
}

// TestVolumeInUseAndPrune: volume rm, with or without -f, refuses a volume
// a container uses; volume prune asks first, removes only anonymous unused
// volumes, and with --all also unused named ones.
func TestVolumeInUseAndPrune(t *testing.T) {
	requireTool(t, "mkfs.ext4")
	e := newEnv(t, "8G")
	img := writeImage(t, "plain:1", newLayer(t).dir("etc").file("etc/hostname", []byte("plain\n")).bytes())
	e.must("image", "import", img)
	e.must("container", "create", "--name", "c1", "-v", "vol2:/data", "plain:1")
	e.must("volume", "create", "named1", "--size", "1G")
	for _, args := range [][]string{{"volume", "rm", "vol2"}, {"volume", "rm", "-f", "vol2"}} {
		if msg := e.failsOneLine(args...); !strings.Contains(msg, "c1") {
			t.Fatalf("%v must name the container: %s", args, msg)
		}
	}
	e.must("volume", "inspect", "vol2")
	e.must("container", "create", "--name", "c2", "-v", "/anon", "plain:1")
	e.must("container", "create", "--name", "c3", "--mount", "type=volume,target=/scratch", "plain:1")
	anon2, anon3 := e.anonVolume("c2", "/anon"), e.anonVolume("c3", "/scratch")
	if anon2 == anon3 || len(anon2) != 64 {
		t.Fatalf("anonymous volumes %q and %q", anon2, anon3)
	}
	var v []struct{ Labels map[string]string }
	e.mustJSON(&v, "volume", "inspect", anon2)
	e.must("container", "rm", "c3") // its anonymous volume stays, unused

	for _, args := range [][]string{{"volume", "rm", "vol2"}, {"volume", "rm", "-f", "vol2"}, {"volume", "rm", "--force", anon2}} {
		msg := e.failsOneLine(args...)
		if !strings.Contains(msg, "c1") && !strings.Contains(msg, "c2") {
			t.Fatalf("%v must name the container: %s", args, msg)
		}
		if !strings.Contains(msg, "in use") && !strings.Contains(msg, "used by") {
			t.Fatalf("%v: %s", args, msg)
		}
	}
	root := e.mountContainer("c1")
	writeSynced(t, filepath.Join(root, "data", "kept"), 64<<10)
	e.must("container", "umount", "c1")

	all := map[string]bool{"vol2": true, "named1": true, anon2: true, anon3: true}
	if got := e.volumeNames(); len(got) != len(all) {
		t.Fatalf("volumes: %v, want %v", got, all)
	}
	// No terminal to ask on: refused, nothing removed.
	msg := e.failsOneLine("volume", "prune")
	if !strings.Contains(msg, "-f") {
		t.Fatalf("volume prune without a terminal: %s", msg)
	}
	if got := e.volumeNames(); len(got) != len(all) {
		t.Fatalf("volume prune without -f removed volumes: %v", got)
	}
	// On a terminal it asks; anything but y keeps everything.
	if out, code := e.runPTY("n", "volume", "prune"); code != 0 || !strings.Contains(out, "[y/N]") {
		t.Fatalf("volume prune answered n: exit %d: %q", code, out)
	}
	if got := e.volumeNames(); len(got) != len(all) {
		t.Fatalf("volume prune answered n removed volumes: %v", got)
	}
	// -f: the anonymous volume no container uses, only.
	if out := e.must("volume", "prune", "-f"); !strings.Contains(out, anon3) {
		t.Fatalf("volume prune -f: %s", out)
	}
	delete(all, anon3)
	if got := e.volumeNames(); len(got) != len(all) || !got["named1"] || !got["vol2"] || !got[anon2] {
		t.Fatalf("after prune -f: %v", got)
	}
	// --all: unused named volumes too.
	if out := e.must("volume", "prune", "--all", "--force"); !strings.Contains(out, "named1") {
		t.Fatalf("volume prune --all -f: %s", out)
	}
	if got := e.volumeNames(); len(got) != 2 || !got["vol2"] || !got[anon2] {
		t.Fatalf("after prune --all -f: %v", got)
	}
	root = e.mountContainer("c1")
	if !exists(filepath.Join(root, "data", "kept")) {
		t.Fatal("the volume in use lost its file")
	}
	e.must("container", "umount", "c1")
	// Answered y on a terminal, prune removes an unused anonymous volume.
	e.must("container", "create", "--name", "c5", "-v", "/tmp5", "plain:1")
	anon5 := e.anonVolume("c5", "/tmp5")
	e.must("container", "rm", "c5")
	if out, code := e.runPTY("y", "volume", "prune"); code != 0 || !strings.Contains(out, anon5) {
		t.Fatalf("volume prune answered y: exit %d: %q", code, out)
	}
	if got := e.volumeNames(); len(got) != 2 || got[anon5] {
		t.Fatalf("after prune answered y: %v", got)
	}
	// rm -v removes a container's anonymous volumes, not its named ones.
	e.must("container", "create", "--name", "c4", "-v", "vol2:/data", "-v", "/cache", "plain:1")
	anon4 := e.anonVolume("c4", "/cache")
	if out := e.must("container", "rm", "-v", "c4"); !strings.Contains(out, anon4) {
		t.Fatalf("container rm -v: %q", out)
	}
	if got := e.volumeNames(); len(got) != 2 || !got["vol2"] || !got[anon2] {
		t.Fatalf("after container rm -v: %v", got)
	}
	e.must("daemon", "stop")
	e.check()
}

// TestListingStartsNoDaemon: with no daemon running, the listing commands
// answer from the pool file and start none, and commands that fail on a
// missing object fail the same way without starting one; none of them
// leaves a run directory.
func TestListingStartsNoDaemon(t *testing.T) {
	requireTool(t, "mkfs.ext4")
	e := newEnv(t, "8G")
	img := writeImage(t, "plain:1", newLayer(t).dir("etc").file("etc/hostname", []byte("plain\n")).bytes())
	e.must("image", "import", img)
	e.must("container", "create", "--name", "c1", "-v", "vol1:/data", "plain:1")
	e.must("daemon", "stop")
	rd := daemon.RunDir(e.pool)
	if exists(rd) {
		entries, _ := os.ReadDir(rd)
		t.Errorf("a clean daemon stop left its run directory %s: %v", rd, entries)
		if m := mountsBelow(t, rd, "\x00"); len(m) > 0 {
			t.Fatalf("mounts left in %s: %v", rd, m)
		}
		os.RemoveAll(rd) // to see whether the commands below make one
	}
	noDaemon := func(what string) {
		t.Helper()
		if pid := e.daemonPID(); pid > 0 {
			t.Fatalf("%s started a daemon (pid %d)", what, pid)
		}
		if exists(rd) {
			t.Fatalf("%s left the run directory %s", what, rd)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"image", "ls"}, "plain:1"},
		{[]string{"container", "ls"}, "c1"},
		{[]string{"volume", "ls"}, "vol1"},
		{[]string{"--json", "image", "ls"}, `"plain:1"`},
		{[]string{"--json", "container", "ls"}, `"c1"`},
		{[]string{"--json", "volume", "ls"}, `"vol1"`},
		{[]string{"volume", "inspect", "vol1"}, `"vol1"`},
		{[]string{"container", "inspect", "c1"}, `"c1"`},
		{[]string{"image", "inspect", "plain:1"}, `"plain:1"`},
		{[]string{"image", "history", "plain:1"}, "LAYER"},
	} {
		out := e.must(tc.args...)
		if !strings.Contains(out, tc.want) {
			t.Fatalf("%v: %q lacks %s", tc.args, out, tc.want)
		}
		if strings.HasPrefix(tc.args[0], "--json") && !json.Valid([]byte(out)) {
			t.Fatalf("%v: not JSON: %s", tc.args, out)
		}
		noDaemon(strings.Join(tc.args, " "))
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"container", "mount", "nosuch", filepath.Join(e.dir, "m")}, `container "nosuch" not found`},
		{[]string{"container", "rm", "nosuch"}, `container "nosuch" not found`},
		{[]string{"volume", "rm", "nosuch"}, `volume "nosuch" not found`},
		{[]string{"volume", "inspect", "nosuch"}, `volume "nosuch" not found`},
		{[]string{"image", "rm", "nosuch:1"}, "nosuch"},
		{[]string{"container", "create", "--name", "c2", "nosuch:1"}, "nosuch"},
		{[]string{"device", "attach", "nosuch"}, `device "nosuch" not found`},
		{[]string{"device", "mount", "nosuch", filepath.Join(e.dir, "m")}, `device "nosuch" not found`},
	} {
		msg := e.failsOneLine(tc.args...)
		if !strings.Contains(msg, tc.want) {
			t.Fatalf("%v: %q lacks %s", tc.args, msg, tc.want)
		}
		noDaemon(strings.Join(tc.args, " "))
	}
	// volume prune with no terminal to ask on fails before it starts one.
	if msg := e.failsOneLine("volume", "prune"); !strings.Contains(msg, "-f") {
		t.Fatalf("volume prune without a terminal: %s", msg)
	}
	noDaemon("volume prune without a terminal")

	// A daemon that cannot start (another process holds the pool's lock)
	// leaves no run directory either.
	lock, err := os.Open(e.pool)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"device", "attach", "nosuch"}, {"container", "mount", "c1", filepath.Join(e.dir, "m")}, {"image", "ls"}} {
		if msg := e.failsOneLine(args...); !strings.Contains(msg, "in use") {
			t.Fatalf("%v with the pool locked: %s", args, msg)
		}
		noDaemon(strings.Join(args, " ") + " with the pool locked")
	}
	lock.Close()

	// A command that needs the daemon still starts it, and stop cleans up.
	e.must("container", "mount", "c1", filepath.Join(e.dir, "m"))
	if e.daemonPID() == 0 {
		t.Fatal("container mount did not start the daemon")
	}
	e.must("container", "umount", "c1")
	e.must("daemon", "stop")
	if exists(rd) {
		t.Fatalf("daemon stop left %s", rd)
	}
	e.check()
}

// busyContainer mounts container c1 with volume vol1 at /data, writes and
// syncs data/synced (its sha is sum), and starts a process holding the
// volume; pid is the daemon's.
func busyContainer(t *testing.T) (e *env, root, sum string, holder *exec.Cmd, pid int) {
	t.Helper()
	requireTool(t, "mkfs.ext4")
	e = newEnv(t, "8G")
	img := writeImage(t, "plain:1", newLayer(t).dir("etc").file("etc/hostname", []byte("plain\n")).bytes())
	e.must("image", "import", img)
	e.must("container", "create", "--name", "c1", "-v", "vol1:/data", "plain:1")
	root = e.mountContainer("c1")
	sum = writeSynced(t, filepath.Join(root, "data", "synced"), 2<<20)
	holder = holdMount(t, filepath.Join(root, "data"))
	return e, root, sum, holder, e.daemonPID()
}

// TestDaemonStopBusyContainer: a process whose working directory is in a
// container's volume, bind-mounted under the container's root, keeps
// 'daemon stop' from tearing anything down; the refusal names the pid and
// the file synced in the volume reads back, then and after a clean stop
// and remount.
func TestDaemonStopBusyContainer(t *testing.T) {
	e, root, sum, holder, pid := busyContainer(t)

	msg := e.failsOneLine("daemon", "stop")
	if !strings.Contains(msg, strconv.Itoa(holder.Process.Pid)) || !strings.Contains(msg, "busy") {
		t.Fatalf("daemon stop must name pid %d: %q", holder.Process.Pid, msg)
	}
	if e.daemonPID() != pid || !mountedHere(t, root) || !mountedHere(t, filepath.Join(root, "data")) {
		t.Fatal("the refused stop tore something down")
	}
	if fileSHA(t, filepath.Join(root, "data", "synced")) != sum {
		t.Fatal("the synced file in the volume changed after a refused stop")
	}
	release(t, holder)
	e.must("daemon", "stop")
	waitExit(t, pid, 30*time.Second)
	if m := mountsBelow(t, e.dir, "\x00"); len(m) > 0 {
		t.Fatalf("daemon stop left mounts: %v", m)
	}
	e.check()
	root = e.mountContainer("c1")
	if fileSHA(t, filepath.Join(root, "data", "synced")) != sum {
		t.Fatal("the synced file in the volume differs after the remount")
	}
	e.must("container", "umount", "c1")
	e.must("daemon", "stop")
	e.check()
}

// TestDaemonStopForceContainer: --force with a process inside a mounted
// container's volume lazily unmounts the container (root, volume, binds);
// the holder goes on reading and writing its volume through the daemon,
// which exits once it is released; both files are there after a remount.
func TestDaemonStopForceContainer(t *testing.T) {
	e, _, sum, holder, pid := busyContainer(t)

	out := e.must("daemon", "stop", "--force")
	if !strings.Contains(out, strconv.Itoa(holder.Process.Pid)) {
		t.Fatalf("daemon stop --force must name pid %d: %q", holder.Process.Pid, out)
	}
	if m := mountsBelow(t, e.dir, filepath.Join(e.dir, "run")); len(m) > 0 {
		t.Fatalf("mounts left in the namespace after stop --force: %v", m)
	}
	held := fmt.Sprintf("/proc/%d/cwd", holder.Process.Pid)
	if fileSHA(t, filepath.Join(held, "synced")) != sum {
		t.Fatal("the synced file changed under its holder")
	}
	sum2 := writeSynced(t, filepath.Join(held, "late"), 256<<10)
	if e.daemonPID() != pid {
		t.Fatal("the daemon exited while its filesystem is held")
	}
	release(t, holder)
	waitExit(t, pid, 60*time.Second)
	e.check()
	root := e.mountContainer("c1")
	if fileSHA(t, filepath.Join(root, "data", "synced")) != sum || fileSHA(t, filepath.Join(root, "data", "late")) != sum2 {
		t.Fatal("files synced before and during the drain differ after the remount")
	}
	e.must("container", "umount", "c1")
	e.must("daemon", "stop")
	e.check()
}
