//go:build linux && integration

package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thinpool/thinpool/volumes/archive"
)

// The JSON and table conventions of thinctl (cmd/thinctl/output.go),
// checked on images, containers and volumes, which only a daemon can make.

var (
	camelCase   = regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)
	tableTimeRe = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`)
	// jsonFreeform are the fields whose keys are data: labels and options
	// are the user's, config is an image's OCI config as it is.
	jsonFreeform = map[string]bool{"labels": true, "options": true, "config": true}
	jsonTimes    = map[string]bool{"created": true, "createdAt": true}
)

// styleJSON runs thinctl --json args and fails the test unless every name
// is camelCase, the elements of every array of objects have the same
// names, and every time is RFC 3339 (or null if nullTimes). It returns
// the top-level objects: the array's elements, or the one object.
func (e *env) styleJSON(nullTimes bool, args ...string) []map[string]any {
	e.t.Helper()
	what := strings.Join(args, " ")
	out := e.must(append([]string{"--json"}, args...)...)
	var doc any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		e.t.Fatalf("%s: %v\n%s", what, err, out)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if !camelCase.MatchString(k) {
					e.t.Errorf("%s: %s.%s is not camelCase", what, path, k)
				}
				if jsonTimes[k] {
					s, ok := x.(string)
					if _, err := time.Parse(time.RFC3339, s); (!ok || err != nil) && (x != nil || !nullTimes) {
						e.t.Errorf("%s: %s.%s = %v is not an RFC 3339 time", what, path, k, x)
					}
				}
				if !jsonFreeform[k] {
					walk(path+"."+k, x)
				}
			}
		case []any:
			var first []string
			for i, x := range v {
				if m, ok := x.(map[string]any); ok {
					if first == nil {
						first = keysOf(m)
					} else if keys := keysOf(m); !slices.Equal(keys, first) {
						e.t.Errorf("%s: %s[%d] has fields %v, %s[0] has %v", what, path, i, keys, path, first)
					}
				}
				walk(path+"[]", x)
			}
		}
	}
	walk("", doc)
	var objs []map[string]any
	switch d := doc.(type) {
	case map[string]any:
		objs = append(objs, d)
	case []any:
		for _, x := range d {
			m, _ := x.(map[string]any)
			objs = append(objs, m)
		}
	}
	return objs
}

func keysOf(m map[string]any) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// requireNames fails unless each of objs has exactly the names want.
func requireNames(t *testing.T, what string, objs []map[string]any, want ...string) {
	t.Helper()
	slices.Sort(want)
	if len(objs) == 0 {
		t.Fatalf("%s: nothing to check", what)
	}
	for i, o := range objs {
		if got := keysOf(o); !slices.Equal(got, want) {
			t.Errorf("%s[%d] has fields %v, want %v", what, i, got, want)
		}
	}
}

// TestOutputStyle: image, container, volume and device listings and
// inspects, and device attach and mount, print camelCase JSON with every field present (empty lists as
// []), RFC 3339 times (null for a time the image config does not give),
// and tables print times as 2006-01-02 15:04:05 in local time; -q on every
// ls prints names, and names complete with or without a daemon.
func TestOutputStyle(t *testing.T) {
	e := newEnv(t, "8G")
	const created = "2024-05-06T07:08:09Z"
	img := filepath.Join(e.dir, "style.tar")
	if err := archive.WriteDockerSave(img, "style:1", [][]byte{newLayer(t).dir("etc").file("etc/hello", []byte("hi\n")).bytes()},
		map[string]any{"created": created, "history": []any{
			map[string]any{"created": created, "created_by": "ADD hello /etc"},
			map[string]any{"created_by": "CMD [\"sh\"]", "empty_layer": true},
		}}); err != nil {
		t.Fatal(err)
	}
	e.must("image", "import", img)
	host := filepath.Join(e.dir, "host")
	if err := os.Mkdir(host, 0o755); err != nil {
		t.Fatal(err)
	}
	e.must("volume", "create", "named", "--label", "k=v", "--size", "1G")
	e.must("container", "create", "--name", "c1", "-v", "data:/data", "-v", host+":/host:ro", "style:1")
	e.must("container", "create", "--name", "c2", "style:1")
	e.mountContainer("c1")
	e.must("device", "create", "plain", "--size", "256M")
	attachNames := []string{"device", "id", "loop", "file", "readOnly", "mountDir", "fsType"}
	requireNames(t, "device attach", e.styleJSON(false, "device", "attach", "plain"), attachNames...)
	e.must("device", "detach", "plain")
	requireNames(t, "device mount", e.styleJSON(false, "device", "mount", "plain", filepath.Join(e.dir, "plain"), "--mkfs", "ext4"),
		append(attachNames, "formatted", "mkfsCost")...)
	e.must("device", "umount", "plain")

	imageNames := []string{"name", "id", "device", "created", "layers", "size", "sharedSize", "uniqueSize", "containers", "config", "virtualSize"}
	requireNames(t, "image ls", e.styleJSON(false, "image", "ls"), imageNames...)
	im := e.styleJSON(false, "image", "inspect", "style:1")
	requireNames(t, "image inspect", im, imageNames...)
	if im[0]["created"] != created || im[0]["config"] == nil {
		t.Errorf("image inspect: created %v, config %v", im[0]["created"], im[0]["config"])
	}
	hist := e.styleJSON(true, "image", "history", "style:1")
	requireNames(t, "image history", hist, "created", "createdBy", "comment", "chainId", "size")
	if len(hist) != 2 || hist[0]["created"] != nil || hist[1]["created"] != created {
		t.Errorf("image history: %v", hist)
	}
	containerNames := []string{"name", "image", "device", "size", "usedBytes", "mounts", "created", "mountedAt"}
	cs := e.styleJSON(false, "container", "ls")
	requireNames(t, "container ls", cs, containerNames...)
	c1 := e.styleJSON(false, "container", "inspect", "c1")
	requireNames(t, "container inspect", c1, containerNames...)
	mounts, _ := c1[0]["mounts"].([]any)
	if len(mounts) != 2 {
		t.Fatalf("container inspect c1: mounts %v", c1[0]["mounts"])
	}
	for _, m := range mounts {
		m, _ := m.(map[string]any)
		requireNames(t, "container inspect c1 mounts", []map[string]any{m}, "type", "source", "target", "readOnly", "autoCreate")
	}
	if c2 := e.styleJSON(false, "container", "inspect", "c2"); c2[0]["mountedAt"] != "" || !slices.Equal(c2[0]["mounts"].([]any), []any{}) {
		t.Errorf("container inspect c2: %v", c2)
	}
	volumeNames := []string{"name", "driver", "mountpoint", "createdAt", "labels", "options", "scope", "size", "usedBytes", "device", "inUseBy", "mounted", "anonymous"}
	requireNames(t, "volume ls", e.styleJSON(false, "volume", "ls"), volumeNames...)
	requireNames(t, "volume inspect", e.styleJSON(false, "volume", "inspect", "named", "data"), volumeNames...)
	deviceNames := []string{"name", "id", "size", "mapped", "exclusive", "shared", "mappedBlocks", "extents", "origin", "originId",
		"chain", "loop", "mountedAt", "readOnly", "created", "labels"}
	requireNames(t, "device ls", e.styleJSON(false, "device", "ls"), deviceNames...) // some attached, some not
	requireNames(t, "snapshot ls", e.styleJSON(false, "snapshot", "ls"), deviceNames...)
	requireNames(t, "daemon status", e.styleJSON(false, "daemon", "status"), "pool", "running", "pid", "runDir", "socket", "attached", "stopping")
	e.styleJSON(false, "info")
	e.styleJSON(false, "pool", "info")

	// Tables: the last column of image, container, volume, device and
	// snapshot ls is CREATED; image history has it second.
	for _, args := range [][]string{{"image", "ls"}, {"container", "ls"}, {"volume", "ls"}, {"device", "ls"}, {"snapshot", "ls"}} {
		lines := strings.Split(strings.TrimRight(e.must(args...), "\n"), "\n")
		if h := strings.Fields(lines[0]); h[len(h)-1] != "CREATED" || len(lines) < 2 {
			t.Fatalf("%v:\n%s", args, strings.Join(lines, "\n"))
		}
		for _, l := range lines[1:] {
			f := strings.Fields(l)
			if ts := f[len(f)-2] + " " + f[len(f)-1]; !tableTimeRe.MatchString(ts) {
				t.Errorf("%v: CREATED %q in %q", args, ts, l)
			}
		}
	}
	// -q on every ls prints the names its JSON has, one a line.
	names := map[string][]string{}
	for _, noun := range []string{"device", "snapshot", "image", "container", "volume"} {
		var objs []struct {
			Name string `json:"name"`
		}
		e.mustJSON(&objs, noun, "ls")
		for _, o := range objs {
			names[noun] = append(names[noun], o.Name)
		}
		if got := strings.Fields(e.must("-q", noun, "ls")); !slices.Equal(got, names[noun]) || len(got) == 0 {
			t.Errorf("-q %s ls: %q, want %q", noun, got, names[noun])
		}
		slices.Sort(names[noun])
	}
	// Object names complete through the running daemon (the pool file is
	// locked by it), and from the pool file once it has stopped, without
	// starting one.
	checkCompletion := func() {
		t.Helper()
		for _, tc := range []struct {
			args []string
			want []string
		}{
			{[]string{"device", "rm", ""}, names["device"]},
			{[]string{"image", "inspect", ""}, names["image"]},
			{[]string{"container", "rm", ""}, names["container"]},
			{[]string{"container", "rm", "c1", ""}, []string{"c2"}},
			{[]string{"container", "create", "--name", "x", "sty"}, []string{"style:1"}},
			{[]string{"volume", "inspect", ""}, names["volume"]},
		} {
			out, errOut, code := e.run(time.Minute, append([]string{"__complete"}, tc.args...)...)
			lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
			if code != 0 || lines[len(lines)-1] != ":4" || !slices.Equal(lines[:len(lines)-1], tc.want) || strings.Contains(errOut, "thinctl:") {
				t.Errorf("__complete %v: exit %d, %q (stderr %q), want %q and :4", tc.args, code, out, errOut, tc.want)
			}
		}
	}
	checkCompletion()
	e.must("container", "umount", "c1")
	e.must("daemon", "stop")
	checkCompletion()
	if _, _, code := e.run(time.Minute, "daemon", "status"); code != 3 {
		t.Errorf("completion started a daemon: daemon status exits %d", code)
	}

	at, _ := time.Parse(time.RFC3339, created)
	lines := strings.Split(strings.TrimRight(e.must("image", "history", "style:1"), "\n"), "\n")
	if len(lines) != 3 || strings.Fields(lines[1])[1] != "-" || !strings.Contains(lines[2], at.Local().Format("2006-01-02 15:04:05")) {
		t.Errorf("image history:\n%s", strings.Join(lines, "\n"))
	}
}
