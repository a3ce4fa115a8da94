package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// deviceSize returns the size 'device inspect' reports for name.
func deviceSize(t *testing.T, pool, name string) int64 {
	t.Helper()
	var d deviceJSON
	if err := json.Unmarshal([]byte(mustRun(t, pool, "device", "inspect", name)), &d); err != nil {
		t.Fatal(err)
	}
	return d.Size
}

// poolInfoJSON returns 'pool info --json'.
func poolInfoJSON(t *testing.T, pool string) poolInfo {
	t.Helper()
	var i poolInfo
	if err := json.Unmarshal([]byte(mustRun(t, pool, "--json", "pool", "info")), &i); err != nil {
		t.Fatal(err)
	}
	return i
}

// TestSizeFlags: a bare number is MiB for every --size, as lvcreate -L;
// --block-size takes KiB as lvcreate --chunksize; +SIZE grows by SIZE, as
// lvextend -L +1G.
func TestSizeFlags(t *testing.T) {
	t.Run("pool create bare MiB", func(t *testing.T) {
		pool := filepath.Join(t.TempDir(), "pool.img")
		mustRun(t, pool, "pool", "create", "--size", "200", "--block-size", "128", "--metadata-size", "8")
		i := poolInfoJSON(t, pool)
		if i.DataTotal != 200<<20 || i.BlockSize != 128<<10 || i.MetadataArea != 8<<20 {
			t.Fatalf("pool create --size 200 --block-size 128 --metadata-size 8: data %d, block %d, metadata %d", i.DataTotal, i.BlockSize, i.MetadataArea)
		}
	})
	pool := newPool(t, "1G")
	mustRun(t, pool, "device", "create", "x", "--size", "100")
	if got := deviceSize(t, pool, "x"); got != 100<<20 {
		t.Fatalf("device create --size 100: %d bytes, want 100 MiB", got)
	}
	mustRun(t, pool, "device", "resize", "x", "--size", "+1G")
	if got := deviceSize(t, pool, "x"); got != 100<<20+1<<30 {
		t.Fatalf("device resize --size +1G: %d bytes, want 1124 MiB", got)
	}
	mustRun(t, pool, "device", "resize", "x", "--size", "+24")
	if got := deviceSize(t, pool, "x"); got != 1148<<20 {
		t.Fatalf("device resize --size +24: %d bytes, want 1148 MiB", got)
	}
	mustRun(t, pool, "device", "resize", "x", "--size", "2048")
	if got := deviceSize(t, pool, "x"); got != 2<<30 {
		t.Fatalf("device resize --size 2048: %d bytes, want 2 GiB", got)
	}
	meta := poolInfoJSON(t, pool).MetadataArea
	mustRun(t, pool, "pool", "grow", "--size", "+1G", "--metadata-size", "+4")
	if i := poolInfoJSON(t, pool); i.DataTotal != 2<<30 || i.MetadataArea != meta+4<<20 {
		t.Fatalf("pool grow --size +1G --metadata-size +4: data %d, metadata %d (was %d)", i.DataTotal, i.MetadataArea, meta)
	}
	mustRun(t, pool, "pool", "grow", "--size", "3072")
	if i := poolInfoJSON(t, pool); i.DataTotal != 3<<30 {
		t.Fatalf("pool grow --size 3072: data %d, want 3 GiB", i.DataTotal)
	}

	before := mustRun(t, pool, "--json", "device", "ls")
	beforeInfo := poolInfoJSON(t, pool)
	bad := []struct {
		name string
		args []string
		want string
	}{
		{"unknown unit", []string{"device", "create", "y", "--size", "1X"}, `bad size "1X": unknown unit "X"`},
		{"no number", []string{"device", "create", "y", "--size", "G"}, `bad size "G": no number`},
		{"not a number", []string{"device", "create", "y", "--size", "lots"}, `bad size "lots"`},
		{"negative", []string{"device", "create", "y", "--size", "-5"}, `bad size "-5": negative`},
		{"relative create", []string{"device", "create", "y", "--size", "+1G"}, `bad size "+1G"`},
		{"shrink resize", []string{"device", "resize", "x", "--size", "-1G"}, `bad size "-1G": shrinking is not supported`},
		{"empty increment", []string{"device", "resize", "x", "--size", "+"}, "empty size"},
		{"zero increment", []string{"device", "resize", "x", "--size", "+0"}, `bad size "+0": grows by nothing`},
		{"bad increment", []string{"pool", "grow", "--size", "+1Q"}, `bad size "1Q": unknown unit "Q"`},
		{"grow smaller", []string{"pool", "grow", "--size", "1024"}, "not larger"},
		{"volume bad size", []string{"volume", "create", "v", "--size", "ten"}, `bad size "ten"`},
		{"container bad size", []string{"container", "create", "--name", "c", "--size", "1Z", "alpine"}, `bad size "1Z"`},
		{"image bad base size", []string{"image", "import", "x.tar", "--base-size", "big"}, `bad size "big"`},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := thinctl(t, pool, tc.args...)
			if code == 0 {
				t.Fatalf("exit 0, want failure; out %q", out)
			}
			if !strings.HasPrefix(errOut, "thinctl: ") || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("stderr %q, want one line with %q", errOut, tc.want)
			}
		})
	}
	if after := mustRun(t, pool, "--json", "device", "ls"); after != before {
		t.Fatalf("refused commands changed the devices:\n%s\n%s", before, after)
	}
	if i := poolInfoJSON(t, pool); i.DataTotal != beforeInfo.DataTotal || i.MetadataArea != beforeInfo.MetadataArea {
		t.Fatalf("refused commands changed the pool: %+v, was %+v", i, beforeInfo)
	}
}

// TestSizeHelp: every size flag says what a bare number means.
func TestSizeHelp(t *testing.T) {
	for _, args := range [][]string{
		{"pool", "create"}, {"pool", "grow"}, {"device", "create"}, {"device", "resize"},
		{"volume", "create"}, {"container", "create"}, {"image", "import"},
	} {
		out := mustRun(t, "x", append(args, "--help")...)
		if !strings.Contains(out, "a bare number is MiB") {
			t.Errorf("thinctl %s --help does not say a bare number is MiB:\n%s", strings.Join(args, " "), out)
		}
	}
}

// TestUnknownSubcommand: a command that only groups others fails on an
// unknown subcommand, as cobra's root does, instead of printing its help
// and exiting 0.
func TestUnknownSubcommand(t *testing.T) {
	pool := newPool(t, "1G")
	for _, parent := range []string{"pool", "device", "snapshot", "image", "container", "volume", "daemon", "completion"} {
		t.Run(parent, func(t *testing.T) {
			out, errOut, code := thinctl(t, pool, parent, "frobnicate")
			want := `thinctl: unknown command "frobnicate" for "thinctl ` + parent + `"` + "\n"
			if code == 0 || errOut != want {
				t.Fatalf("thinctl %s frobnicate: exit %d, stderr %q, out %.80q; want non-zero and %q", parent, code, errOut, out, want)
			}
			// Alone, it still prints its help.
			if out := mustRun(t, pool, parent); !strings.Contains(out, "Available Commands:") {
				t.Fatalf("thinctl %s: %q", parent, out)
			}
		})
	}
	if _, errOut, code := thinctl(t, pool, "frobnicate"); code == 0 || errOut != "thinctl: unknown command \"frobnicate\" for \"thinctl\"\n" {
		t.Fatalf("thinctl frobnicate: exit %d, %q", code, errOut)
	}
}

// TestImageReferences: image names are parsed as Docker parses them, and
// an invalid one is refused with go-containerregistry's reason before
// anything runs.
func TestImageReferences(t *testing.T) {
	pool := newPool(t, "1G")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"space", []string{"image", "import", "x.tar", "--name", "a b:c"}, `invalid image name "a b:c": repository can only contain the characters`},
		{"empty tag", []string{"image", "import", "x.tar", "--name", "x:"}, `invalid image name "x:": x: must specify a tag name after the colon`},
		{"empty name", []string{"image", "import", "x.tar", "--name", ":y"}, `invalid image name ":y": a repository name must be specified`},
		{"upper case", []string{"image", "import", "x.tar", "--name", "UPPER:tag"}, `invalid image name "UPPER:tag": repository can only contain the characters`},
		{"bad tag", []string{"image", "import", "x.tar", "--name", "x:a/b"}, `invalid image name "x:a/b"`},
		{"commit", []string{"container", "commit", "c", "Web:v1"}, `invalid image name "Web:v1"`},
		{"container image", []string{"container", "create", "--name", "c", "x:"}, `invalid image name "x:"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := thinctl(t, pool, tc.args...)
			if code == 0 || !strings.HasPrefix(errOut, "thinctl: "+tc.want) || strings.Count(errOut, "\n") != 1 {
				t.Fatalf("exit %d, stderr %q, out %q; want one line starting %q", code, errOut, out, "thinctl: "+tc.want)
			}
		})
	}
	// Valid references pass the check: what stops them here is only that
	// an in-process call cannot reach the pool daemon.
	for _, ref := range []string{"alpine", "alpine:3.20", "docker.io/library/alpine:3.20", "localhost:5000/app:v2", "my_app.x-y:1.0-rc1"} {
		_, errOut, code := thinctl(t, pool, "image", "import", "x.tar", "--name", ref)
		if code != exitUnavailable || !strings.Contains(errOut, "needs the pool daemon") {
			t.Errorf("--name %s: exit %d, %q, want it to pass the name check", ref, code, errOut)
		}
	}
}

// TestDetachMessage: every error keeps its reason; 'device detach nothing'
// said only "thinctl: nothing".
func TestDetachMessage(t *testing.T) {
	pool := newPool(t, "1G")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"device", "detach", "nothing"}, "thinctl: no attached device or loop device named \"nothing\"\n"},
		{[]string{"device", "detach", "/dev/loop99"}, "thinctl: no attached device or loop device named \"/dev/loop99\"\n"},
		{[]string{"device", "umount", "nothing"}, "thinctl: nothing of ours is mounted at or named nothing\n"},
	}
	for _, tc := range tests {
		_, errOut, code := thinctl(t, pool, tc.args...)
		if code == 0 || errOut != tc.want {
			t.Errorf("thinctl %s: exit %d, %q; want %q", strings.Join(tc.args, " "), code, errOut, tc.want)
		}
	}
}
