//go:build linux && integration

package test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestSmallInputTraps runs issue 11's small input traps through the real
// binary, with the pool daemon running, so the commands go over its socket:
// each refusal is one line with its reason and a non-zero exit, and a bare
// size is MiB.
func TestSmallInputTraps(t *testing.T) {
	requireTool(t, "mkfs.ext4")
	e := newEnv(t, "1G")
	img := writeImage(t, "good:1", newLayer(t).file("hello", []byte("hi\n")).bytes())
	e.must("device", "create", "web", "--size", "64")
	e.must("device", "attach", "web") // starts the daemon
	if e.daemonPID() == 0 {
		t.Fatal("no daemon")
	}
	var d struct {
		Size int64 `json:"size"`
	}
	if err := json.Unmarshal([]byte(e.must("device", "inspect", "web")), &d); err != nil || d.Size != 64<<20 {
		t.Fatalf("device create --size 64: %d bytes (%v), want 64 MiB", d.Size, err)
	}
	tests := []struct {
		args []string
		want string // all of stderr
	}{
		{[]string{"device", "detach", "nothing"}, "thinctl: no attached device or loop device named \"nothing\"\n"},
		{[]string{"image", "frobnicate"}, "thinctl: unknown command \"frobnicate\" for \"thinctl image\"\n"},
		{[]string{"image", "import", img, "--name", "a b:c"}, "thinctl: invalid image name \"a b:c\": repository can only contain the characters `abcdefghijklmnopqrstuvwxyz0123456789_-./`: a b\n"},
		{[]string{"image", "import", img, "--name", "x:"}, "thinctl: invalid image name \"x:\": x: must specify a tag name after the colon\n"},
		{[]string{"image", "import", img, "--name", ":y"}, "thinctl: invalid image name \":y\": a repository name must be specified\n"},
		{[]string{"image", "import", img, "--name", "UPPER:tag"}, "thinctl: invalid image name \"UPPER:tag\": repository can only contain the characters `abcdefghijklmnopqrstuvwxyz0123456789_-./`: UPPER\n"},
	}
	for _, tc := range tests {
		_, errOut, code := e.run(time.Minute, tc.args...)
		if code == 0 || errOut != tc.want {
			t.Errorf("thinctl %s: exit %d, stderr %q; want non-zero and %q", strings.Join(tc.args, " "), code, errOut, tc.want)
		}
	}
	// Nothing was imported under a bad name; a good one still imports.
	if out := e.must("--json", "image", "ls"); strings.TrimSpace(out) != "[]" {
		t.Errorf("image ls after refused imports:\n%s", out)
	}
	e.must("image", "import", img, "--name", "fine:v1")
	// A volume that overcommits the pool warns, as lvcreate does, on the
	// client's stderr, and is made.
	_, errOut, code := e.run(3*time.Minute, "volume", "create", "big", "--size", "2G")
	if code != 0 || !strings.HasPrefix(errOut, "WARNING: Sum of all thin volume sizes (") ||
		!strings.Contains(errOut, ") exceeds the size of thin pool "+e.pool+" (1.0 GiB): overcommitted ") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("volume create --size 2G on a 1 GiB pool: exit %d, stderr %q", code, errOut)
	}
	e.must("device", "detach", "web")
	e.must("daemon", "stop")
	e.check()
}
