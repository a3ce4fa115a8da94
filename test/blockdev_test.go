//go:build linux && integration

package test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// poolInfo reads the fields of 'pool info --json' the tests use.
type poolInfo struct {
	DataUsed  int64 `json:"dataUsed"`
	HostBytes int64 `json:"hostBytes"`
}

func (e *env) info() poolInfo {
	var i poolInfo
	if err := json.Unmarshal([]byte(e.must("--json", "pool", "info")), &i); err != nil {
		e.t.Fatal(err)
	}
	return i
}

func (e *env) check() {
	e.t.Helper()
	if out := e.must("pool", "check"); !strings.Contains(out, "is clean") {
		e.t.Fatalf("pool check: %s", out)
	}
}

// TestFilesystemLifecycle: attach, mkfs, mount, write, umount, detach,
// reattach: the files are intact; then on a writable snapshot (the origin
// does not change), for ext4 and xfs.
func TestFilesystemLifecycle(t *testing.T) {
	for _, fs := range []string{"ext4", "xfs"} {
		t.Run(fs, func(t *testing.T) {
			requireTool(t, "mkfs."+fs)
			e := newEnv(t, "20G")
			mnt, snap := filepath.Join(e.dir, "mnt"), filepath.Join(e.dir, "snap")
			e.must("device", "create", "web", "--size", "100G")
			out := e.must("device", "mount", "web", mnt, "--mkfs", fs)
			if !strings.Contains(out, "Made "+fs) {
				t.Fatalf("mount --mkfs: %s", out)
			}
			if used := e.info().DataUsed; used > 256<<20 {
				t.Fatalf("%s on a 100 GiB device cost %d bytes of pool", fs, used)
			}
			mustSh(t, time.Minute, fmt.Sprintf("echo origin > %s/a.txt && head -c 20M /dev/urandom > %s/big && sync", mnt, mnt))
			sum := mustSh(t, time.Minute, "sha256sum "+mnt+"/big | cut -d' ' -f1")
			e.must("device", "umount", mnt)
			if out := e.must("device", "ls"); strings.Contains(out, "/dev/loop") {
				t.Fatalf("still attached after umount:\n%s", out)
			}
			dev := strings.TrimSpace(e.must("device", "attach", "web"))
			if !strings.HasPrefix(dev, "/dev/loop") {
				t.Fatalf("attach printed %q", dev)
			}
			if fs == "ext4" {
				mustSh(t, 2*time.Minute, "e2fsck -fn "+dev)
			} else {
				mustSh(t, 2*time.Minute, "xfs_repair -n "+dev)
			}
			e.must("device", "detach", dev)
			e.must("device", "mount", "web", mnt)
			if got := mustSh(t, time.Minute, "cat "+mnt+"/a.txt; sha256sum "+mnt+"/big | cut -d' ' -f1"); got != "origin\n"+sum {
				t.Fatalf("after reattach: %q", got)
			}
			// A writable snapshot diverges; the origin does not change.
			e.must("snapshot", "create", "web", "web-snap", "--freeze", mnt)
			e.must("device", "mount", "web-snap", snap)
			mustSh(t, time.Minute, fmt.Sprintf("echo snapshot > %s/a.txt && rm %s/big && echo new > %s/b.txt && sync", snap, snap, snap))
			if got := mustSh(t, time.Minute, "cat "+mnt+"/a.txt "+snap+"/a.txt; ls "+mnt+" "+snap); !strings.Contains(got, "origin\nsnapshot\n") ||
				!strings.Contains(got, "big") {
				t.Fatalf("origin and snapshot: %q", got)
			}
			if got := mustSh(t, time.Minute, "sha256sum "+mnt+"/big | cut -d' ' -f1"); got != sum {
				t.Fatal("origin's file changed after writes to the snapshot")
			}
			// A mounted device cannot be removed or detached.
			if msg := e.fails("device", "rm", "web-snap"); !strings.Contains(msg, "attached") {
				t.Fatalf("rm of a mounted device: %s", msg)
			}
			if msg := e.fails("device", "detach", "web"); !strings.Contains(msg, "mounted at") {
				t.Fatalf("detach of a mounted device: %s", msg)
			}
			e.must("device", "umount", snap)
			e.must("device", "umount", "web")
			e.must("daemon", "stop")
			e.check()
		})
	}
}

// TestReadOnlySnapshotAttachesReadOnly: a read-only snapshot's loop device
// refuses writes.
func TestReadOnlySnapshotAttachesReadOnly(t *testing.T) {
	e := newEnv(t, "2G")
	e.must("device", "create", "a", "--size", "64M")
	e.must("snapshot", "create", "a", "ro", "--readonly")
	dev := strings.TrimSpace(e.must("device", "attach", "ro"))
	if out, err := sh(t, time.Minute, "dd if=/dev/zero of="+dev+" bs=4k count=1 oflag=direct"); err == nil {
		t.Fatalf("write to a read-only snapshot's loop device succeeded: %s", out)
	}
	if got := strings.TrimSpace(mustSh(t, time.Minute, "blockdev --getro "+dev)); got != "1" {
		t.Fatalf("blockdev --getro = %q", got)
	}
	var st struct {
		Attached int `json:"attached"`
	}
	e.mustJSON(&st, "daemon", "status")
	if st.Attached != 1 {
		t.Fatalf("daemon status: %d attached, want 1", st.Attached)
	}
	e.must("device", "detach", "ro")
	if e.mustJSON(&st, "daemon", "status"); st.Attached != 0 {
		t.Fatalf("daemon status after detach: %d attached, want 0", st.Attached)
	}
}

// TestFioVerify checks data integrity with fio --verify=crc32c on the raw
// loop device, random and sequential.
func TestFioVerify(t *testing.T) {
	requireTool(t, "fio")
	e := newEnv(t, "4G")
	e.must("device", "create", "raw", "--size", "1G")
	dev := strings.TrimSpace(e.must("device", "attach", "raw"))
	for _, rw := range []string{"randwrite", "write"} {
		mustSh(t, 5*time.Minute, fmt.Sprintf("cd "+e.dir+" && fio --name=verify-%s --filename=%s --rw=%s --bs=4k --size=256M --direct=1 "+
			"--ioengine=libaio --iodepth=16 --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=0 --output-format=terse >/dev/null", rw, dev, rw))
	}
	// Verify after a snapshot too: the copy-on-write path.
	e.must("snapshot", "create", "raw", "raw-snap")
	mustSh(t, 5*time.Minute, fmt.Sprintf("cd "+e.dir+" && fio --name=verify-cow --filename=%s --rw=randwrite --bs=16k --size=256M --direct=1 "+
		"--ioengine=libaio --iodepth=16 --verify=crc32c --verify_fatal=1 --randrepeat=0 >/dev/null", dev))
	e.must("device", "detach", "raw")
	e.must("daemon", "stop")
	e.check()
}

// TestFstrimReturnsSpace: deleting files and fstrim lower the pool's data
// use and the pool file's host space.
func TestFstrimReturnsSpace(t *testing.T) {
	requireTool(t, "fstrim")
	e := newEnv(t, "4G")
	mnt := filepath.Join(e.dir, "mnt")
	e.must("device", "create", "v", "--size", "2G")
	e.must("device", "mount", "v", mnt, "--mkfs", "ext4")
	mustSh(t, time.Minute, "head -c 300M /dev/urandom > "+mnt+"/f && sync")
	full := e.info()
	mustSh(t, time.Minute, "rm "+mnt+"/f && sync && fstrim -v "+mnt)
	// The daemon commits within a second; the freed blocks are then punched.
	var after poolInfo
	for i := 0; i < 50; i++ {
		if after = e.info(); after.HostBytes <= full.HostBytes-250<<20 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if after.DataUsed > full.DataUsed-250<<20 {
		t.Fatalf("fstrim: data used %d -> %d", full.DataUsed, after.DataUsed)
	}
	if after.HostBytes > full.HostBytes-250<<20 {
		t.Fatalf("fstrim: host space %d -> %d", full.HostBytes, after.HostBytes)
	}
	e.must("device", "umount", mnt)
}

// TestPoolFull: writes to a full pool fail promptly with an I/O error,
// nothing written before is damaged, and pool grow lets writes go on.
func TestPoolFull(t *testing.T) {
	e := newEnv(t, "256M")
	mnt := filepath.Join(e.dir, "mnt")
	e.must("device", "create", "v", "--size", "2G")
	e.must("device", "mount", "v", mnt, "--mkfs", "ext4")
	mustSh(t, time.Minute, "head -c 50M /dev/urandom > "+mnt+"/keep && sync")
	sum := mustSh(t, time.Minute, "sha256sum "+mnt+"/keep")
	start := time.Now()
	out, err := sh(t, 3*time.Minute, "dd if=/dev/urandom of="+mnt+"/fill bs=1M count=600 conv=fsync status=none")
	if err == nil {
		t.Fatalf("filling a 256 MiB pool with 600 MiB succeeded: %s", out)
	}
	t.Logf("full pool: dd failed after %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(out))
	mustSh(t, time.Minute, "rm -f "+mnt+"/fill; sync")
	e.must("pool", "grow", "--size", "1G")
	mustSh(t, 2*time.Minute, "head -c 300M /dev/urandom > "+mnt+"/more && sync")
	if got := mustSh(t, time.Minute, "sha256sum "+mnt+"/keep"); got != sum {
		t.Fatal("data written before the pool filled changed")
	}
	e.must("device", "umount", mnt)
	dev := strings.TrimSpace(e.must("device", "attach", "v"))
	mustSh(t, 2*time.Minute, "e2fsck -fn "+dev)
	e.must("device", "detach", "v")
	e.must("daemon", "stop")
	e.check()
}

// TestDaemonKill9: kill -9 the daemon while a writer fsyncs files; after a
// restart the filesystem is clean after journal replay, every fsynced file
// is intact, and the pool checks clean. THINPOOL_CRASH_ROUNDS sets rounds.
func TestDaemonKill9(t *testing.T) {
	rounds := 3
	if n := os.Getenv("THINPOOL_CRASH_ROUNDS"); n != "" {
		fmt.Sscanf(n, "%d", &rounds)
	}
	e := newEnv(t, "8G")
	mnt := filepath.Join(e.dir, "mnt")
	e.must("device", "create", "v", "--size", "4G")
	e.must("device", "mount", "v", mnt, "--mkfs", "ext4")
	e.must("device", "umount", mnt)
	for r := 0; r < rounds; r++ {
		e.must("device", "mount", "v", mnt)
		// The writer fsyncs each file and then logs its name and checksum.
		log := filepath.Join(e.dir, fmt.Sprintf("synced-%d", r))
		script := fmt.Sprintf(`set -e; i=0; while true; do f=%s/r%d-$i; head -c 1M /dev/urandom > $f.tmp;
			sync $f.tmp; mv $f.tmp $f; sync %s; echo "$(sha256sum $f)" >> %s; i=$((i+1)); done`, mnt, r, mnt, log)
		writer := startBackground(t, script)
		time.Sleep(time.Duration(1500+r*700) * time.Millisecond)
		pid := e.daemonPID()
		if pid == 0 {
			t.Fatal("no daemon pid")
		}
		mustSh(t, 10*time.Second, fmt.Sprintf("kill -9 %d", pid))
		writer.wait(30 * time.Second) // fails with I/O errors now
		// The next daemon cleans the stale mount and loop device.
		e.must("daemon", "start")
		e.must("device", "mount", "v", mnt) // replays the ext4 journal
		e.must("device", "umount", mnt)
		dev := strings.TrimSpace(e.must("device", "attach", "v"))
		if out, err := sh(t, 2*time.Minute, "e2fsck -fn "+dev); err != nil {
			t.Fatalf("round %d: e2fsck after kill -9: %v\n%s", r, err, out)
		}
		e.must("device", "detach", "v")
		e.must("device", "mount", "v", mnt)
		b, err := os.ReadFile(log)
		if err != nil || len(b) == 0 {
			t.Fatalf("round %d: the writer synced nothing before the kill: %v", r, err)
		}
		if out, err := sh(t, 2*time.Minute, "sha256sum -c --quiet "+log); err != nil {
			t.Fatalf("round %d: fsynced files damaged after kill -9: %v\n%s", r, err, out)
		}
		t.Logf("round %d: %d fsynced files intact", r, strings.Count(string(b), "\n"))
		e.must("device", "umount", mnt)
		e.must("daemon", "stop")
		e.check()
	}
}
