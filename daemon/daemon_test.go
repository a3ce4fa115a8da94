package daemon

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/thinpool/thinpool/blockdev"
	"github.com/thinpool/thinpool/thinpool"
	"github.com/thinpool/thinpool/volumes"
)

func TestBusyError(t *testing.T) {
	err := error(&BusyError{Holders: []Holder{
		{PID: 10, Comm: "sh", Mount: "/mnt/a", How: "cwd"},
		{PID: 11, Comm: "vim", Mount: "/mnt/a", How: "fd"},
		{PID: 12, Comm: "sleep", Mount: "/mnt/b", How: "root"},
	}})
	want := "/mnt/a is busy: held by pid 10 (sh, cwd), pid 11 (vim, fd); /mnt/b is busy: held by pid 12 (sleep, root)"
	if err.Error() != want {
		t.Fatalf("got  %q\nwant %q", err.Error(), want)
	}
	if !errors.Is(err, volumes.ErrInUse) {
		t.Fatal("a BusyError does not match volumes.ErrInUse")
	}
}

// requireRoot skips unless the daemon can serve: root, FUSE and loop
// devices, and mkfs.ext4.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the daemon serves FUSE files and loop devices: root only")
	}
	for _, dev := range []string{"/dev/fuse", "/dev/loop-control"} {
		if _, err := os.Stat(dev); err != nil {
			t.Skipf("no %s", dev)
		}
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("no mkfs.ext4")
	}
}

// TestRunStop: a daemon serves its socket and the model on its host; a
// Stop while a process holds a mount is refused with a *BusyError and
// changes nothing; the end of Run's context stops it once nothing is held;
// the run directory goes and the pool is committed.
func TestRunStop(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "pool.img")
	p, err := thinpool.Create(path, thinpool.Options{DataSize: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(dir, "run")
	report := filepath.Join(dir, "start-error")
	t.Setenv(startErrorEnv, report) // as if Spawn started this daemon
	d, err := New(p, Options{RunDir: runDir, Logf: t.Logf})
	if err != nil {
		p.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	for i := 0; !Answers(runDir); i++ {
		if i == 200 {
			t.Fatal("the daemon does not answer")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if pid, ok := PID(runDir); !ok || pid != os.Getpid() {
		t.Fatalf("PID = %d, %v", pid, ok)
	}
	if v, ok := os.LookupEnv(startErrorEnv); ok {
		t.Fatalf("the serving daemon still has %s=%s: an error at shutdown would be taken for one at start", startErrorEnv, v)
	}
	if _, err := d.Manager().CreateVolume("v", volumes.VolumeOptions{Size: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(dir, "mnt")
	res, err := d.Host().MountDevice("volume.v", mnt, MountOptions{})
	if err != nil || res.FSType != "ext4" || res.Formatted {
		t.Fatalf("mount: %+v, %v", res, err)
	}
	holder := exec.Command("sleep", "60")
	holder.Dir = mnt
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	held, err := d.Stop(false, "test")
	var busy *BusyError
	if !errors.As(err, &busy) || !errors.Is(err, volumes.ErrInUse) || len(held) != 0 ||
		len(busy.Holders) != 1 || busy.Holders[0].PID != holder.Process.Pid || busy.Holders[0].How != "cwd" {
		t.Fatalf("Stop with a busy mount: %v, %v", held, err)
	}
	if !blockdev.IsMounted(mnt) {
		t.Fatal("a refused Stop unmounted")
	}
	_ = holder.Process.Kill()
	_ = holder.Wait()
	cancel(errors.New("test over"))
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if held, err := d.Stop(false, "late"); held != nil || err != nil {
		t.Fatalf("Stop after Run: %v, %v", held, err)
	}
	ReportStartError(errors.New("at shutdown"))
	if _, err := os.Stat(report); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a daemon that served reported an error as one at start: %v", err)
	}
	if blockdev.IsMounted(mnt) {
		t.Fatal("the mount outlived the daemon")
	}
	if _, err := os.Stat(runDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("run directory: %v", err)
	}
	p, err = thinpool.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Device("volume.v"); err != nil {
		t.Fatal(err)
	}
	if r, err := p.Check(); err != nil || len(r.Errors) > 0 || len(r.Leaks) > 0 {
		t.Fatalf("check: %v %+v", err, r)
	}
}
