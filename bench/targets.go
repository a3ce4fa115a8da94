package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/thinpool/thinpool/blockdev"
)

// thinDaemon is a pool served by its own thinpool daemon, driven through
// thinctl exactly as a user would.
type thinDaemon struct {
	h    *harness
	pool string
	env  []string
}

// thinPool creates a pool of dataSize bytes in a new directory dir of the
// work directory and starts its daemon. The daemon is stopped at the end of
// the workload.
func (h *harness) thinPool(dir string, dataSize int64) (*thinDaemon, error) {
	d, err := h.dir(dir)
	if err != nil {
		return nil, err
	}
	pool := filepath.Join(d, "pool.img")
	t := &thinDaemon{h: h, pool: pool, env: []string{"THINPOOL_RUN_DIR=" + filepath.Join(d, "run"), "THINPOOL=" + pool}}
	if _, err := t.ctl("pool", "create", "--size", strconv.FormatInt(dataSize, 10)+"B"); err != nil {
		return nil, err
	}
	return t, t.start()
}

// thinPoolAt starts a daemon on an existing pool.
func (h *harness) thinPoolAt(pool string) (*thinDaemon, error) {
	t := &thinDaemon{h: h, pool: pool, env: []string{"THINPOOL_RUN_DIR=" + filepath.Join(filepath.Dir(pool), "run"), "THINPOOL=" + pool}}
	return t, t.start()
}

func (t *thinDaemon) start() error {
	// Registered first: an interrupt may kill "daemon start" after the
	// daemon forked.
	t.h.defer_(func() {
		if _, err := t.ctlCleanup("daemon", "stop"); err != nil {
			t.h.logf("stop the thinpool daemon of %s: %v", t.pool, err)
		}
	})
	_, err := t.ctl("daemon", "start")
	return err
}

// ctlCleanup is ctl for cleanups: not under h.ctx, so that it runs after
// an interrupt too.
func (t *thinDaemon) ctlCleanup(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return runCmd(ctx, t.env, t.h.cfg.Thinctl, append([]string{"--pool", t.pool, "-q"}, args...)...)
}

// ctl runs thinctl on the pool and returns its standard output.
func (t *thinDaemon) ctl(args ...string) (string, error) {
	return t.h.sh(t.env, t.h.cfg.Thinctl, append([]string{"--pool", t.pool, "-q"}, args...)...)
}

// attach serves device name as a loop device and returns its path.
func (t *thinDaemon) attach(name string) (string, error) {
	out, err := t.ctl("device", "attach", name)
	if err != nil {
		return "", err
	}
	dev := strings.TrimSpace(out)
	if !strings.HasPrefix(dev, "/dev/loop") {
		return "", fmt.Errorf("thinctl device attach %s printed %q, not a loop device", name, dev)
	}
	return dev, nil
}

// plainLoop creates a sparse file of size bytes and attaches a loop device
// with direct I/O to it, detached at the end of the workload.
func (h *harness) plainLoop(dir string, size int64) (dev, file string, err error) {
	d, err := h.dir(dir)
	if err != nil {
		return "", "", err
	}
	file = filepath.Join(d, "disk.img")
	if err := os.Truncate(file, 0); err != nil && !os.IsNotExist(err) {
		return "", "", err
	}
	f, err := os.Create(file)
	if err != nil {
		return "", "", err
	}
	err = f.Truncate(size)
	f.Close()
	if err != nil {
		return "", "", err
	}
	dev, err = h.loop(file, true)
	return dev, file, err
}

// loop attaches a loop device to file and detaches it at the end of the
// workload.
func (h *harness) loop(file string, directIO bool) (string, error) {
	dev, err := blockdev.Attach(file, blockdev.LoopOptions{DirectIO: directIO})
	if err != nil {
		return "", err
	}
	h.defer_(func() {
		if err := blockdev.Detach(dev); err != nil {
			h.logf("detach %s: %v", dev, err)
		}
	})
	return dev, nil
}

// qcow2Create makes a qcow2 image with 64 KiB clusters: of size bytes, or
// an overlay on backing when backing is not empty.
func (h *harness) qcow2Create(img string, size int64, backing string, opts ...string) error {
	args := []string{"create", "-q", "-f", "qcow2", "-o", strings.Join(append([]string{"cluster_size=65536"}, opts...), ",")}
	if backing != "" {
		args = append(args, "-b", backing, "-F", "qcow2", img)
	} else {
		args = append(args, img, strconv.FormatInt(size, 10))
	}
	_, err := h.sh(nil, "qemu-img", args...)
	return err
}

// qcow2Loop exports the qcow2 image img (and its backing chain) with
// qemu-storage-daemon onto a FUSE file next to it and attaches a loop
// device to that file. The loop device does buffered I/O: with direct I/O
// on, qemu-storage-daemon 7.2's FUSE export stores wrong data when writes
// overlap (fio verify fails; see the qcow2 target's About), and a
// benchmark of a path that loses data would mean nothing. Everything is
// torn down at the end of the workload. It returns the loop device and the daemon's PID.
func (h *harness) qcow2Loop(img string) (dev string, pid int, err error) {
	export := strings.TrimSuffix(img, ".qcow2") + ".export"
	if err := os.WriteFile(export, nil, 0o644); err != nil {
		return "", 0, err
	}
	logf, err := os.Create(export + ".log")
	if err != nil {
		return "", 0, err
	}
	defer logf.Close()
	cmd := exec.Command("qemu-storage-daemon",
		"--blockdev", "driver=file,node-name=f0,filename="+img,
		"--blockdev", "driver=qcow2,node-name=q0,file=f0",
		"--export", "type=fuse,id=e0,node-name=q0,mountpoint="+export+",writable=on")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", 0, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	h.defer_(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			_ = syscall.Unmount(export, syscall.MNT_DETACH)
		}
	})
	// The export is ready once the file is a FUSE mount point.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mounted, _ := isMountPoint(export)
		if mounted {
			break
		}
		select {
		case err := <-exited:
			exited <- err
			b, _ := os.ReadFile(export + ".log")
			return "", 0, fmt.Errorf("qemu-storage-daemon exited (%v): %s", err, oneLine(string(b)))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return "", 0, fmt.Errorf("qemu-storage-daemon did not export %s within 20s", img)
		}
	}
	dev, err = h.loop(export, false)
	return dev, cmd.Process.Pid, err
}

// isMountPoint reports whether path is listed in /proc/self/mountinfo.
func isMountPoint(path string) (bool, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == path {
			return true, nil
		}
	}
	return false, nil
}
