package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestCleanName(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      error
	}{
		{"a/b", "a/b", nil},
		{"./a/b/", "a/b", nil},
		{"a//b/./c", "a/b/c", nil},
		{"a/../b", "b", nil},
		{"/etc/x", "etc/x", nil},
		{"//etc/x", "etc/x", nil},
		{"/../etc/x", "etc/x", nil},
		{"/", ".", nil},
		{"./", ".", nil},
		{".", ".", nil},
		{"..", "", ErrEscape},
		{"../x", "", ErrEscape},
		{"../../etc/x", "", ErrEscape},
		{"a/../../x", "", ErrEscape},
		{"", "", ErrInvalid},
		{"a\x00b", "", ErrInvalid},
		{strings.Repeat("a/", MaxNameLen), "", ErrInvalid},
	} {
		got, err := cleanName(tc.in)
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("cleanName(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestApplyEntryTypes(t *testing.T) {
	root := newRoot(t)
	st := mustApply(t, root,
		dir("usr/", 0o755),
		reg("usr/bin/tool", "#!/bin/sh\n", 0o4755), // usr/bin is implicit
		reg("etc/shadow", "secret", 0o640),
		reg("empty", "", 0o444),
		dir("tmp/", 0o1777),
		dir("srv/", 0o2775),
		sym("usr/bin/link", "tool"),
		sym("abs", "/usr/bin/tool"),
		hard("usr/bin/hl", "usr/bin/tool"),
		fifo("run/fifo", 0o620),
		dir("./", 0o700), // the root itself: ignored
	)
	want := Stats{Entries: 11, Files: 3, Dirs: 3, Symlinks: 2, Hardlinks: 1, Devices: 1, Bytes: 16}
	if st != want {
		t.Errorf("stats = %+v, want %+v", st, want)
	}
	for _, tc := range []struct {
		name string
		mode uint32 // type and permission bits
	}{
		{"usr", unix.S_IFDIR | 0o755},
		{"usr/bin", unix.S_IFDIR | 0o755},
		{"usr/bin/tool", unix.S_IFREG | 0o4755},
		{"etc/shadow", unix.S_IFREG | 0o640},
		{"empty", unix.S_IFREG | 0o444},
		{"tmp", unix.S_IFDIR | 0o1777},
		{"srv", unix.S_IFDIR | 0o2775},
		{"usr/bin/link", unix.S_IFLNK | 0o777},
		{"run/fifo", unix.S_IFIFO | 0o620},
		{".", unix.S_IFDIR | 0o755},
	} {
		if got := lstat(t, filepath.Join(root, tc.name)).Mode; got != tc.mode {
			t.Errorf("%s: mode %o, want %o", tc.name, got, tc.mode)
		}
	}
	if got := readFile(t, filepath.Join(root, "usr/bin/tool")); got != "#!/bin/sh\n" {
		t.Errorf("tool = %q", got)
	}
	if got := readFile(t, filepath.Join(root, "etc/shadow")); got != "secret" {
		t.Errorf("shadow = %q", got)
	}
	if got, _ := os.Readlink(filepath.Join(root, "abs")); got != "/usr/bin/tool" {
		t.Errorf("abs -> %q", got)
	}
	tool, hl := lstat(t, filepath.Join(root, "usr/bin/tool")), lstat(t, filepath.Join(root, "usr/bin/hl"))
	if tool.Ino != hl.Ino || tool.Nlink != 2 {
		t.Errorf("hard link: ino %d/%d nlink %d", tool.Ino, hl.Ino, tool.Nlink)
	}
}

func TestApplyOwnership(t *testing.T) {
	if !isRoot {
		t.Skip("chown needs root")
	}
	ents := []ent{
		reg("f", "x", 0o4755).with(owner(1000, 2000)),
		dir("d/", 0o2750).with(owner(1001, 2001)),
		sym("s", "f").with(owner(1002, 2002)),
		fifo("p", 0o600).with(owner(1003, 2003)),
		hard("h", "f").with(owner(5, 5)), // shares f's inode and metadata
	}
	root := newRoot(t)
	mustApply(t, root, ents...)
	for _, tc := range []struct {
		name     string
		uid, gid uint32
		perm     uint32
	}{
		{"f", 1000, 2000, 0o4755}, // setuid survives the chown
		{"d", 1001, 2001, 0o2750},
		{"s", 1002, 2002, 0o777},
		{"p", 1003, 2003, 0o600},
		{"h", 1000, 2000, 0o4755},
	} {
		st := lstat(t, filepath.Join(root, tc.name))
		if st.Uid != tc.uid || st.Gid != tc.gid || st.Mode&0o7777 != tc.perm {
			t.Errorf("%s: %d:%d %o, want %d:%d %o", tc.name, st.Uid, st.Gid, st.Mode&0o7777, tc.uid, tc.gid, tc.perm)
		}
	}

	root = newRoot(t)
	if _, err := apply(t, root, Options{NoSameOwner: true}, ents...); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"f", "d", "s", "p"} {
		if st := lstat(t, filepath.Join(root, name)); st.Uid != 0 || st.Gid != 0 {
			t.Errorf("NoSameOwner: %s owned by %d:%d", name, st.Uid, st.Gid)
		}
	}
}

func TestApplyDevices(t *testing.T) {
	if !isRoot {
		t.Skip("mknod needs root")
	}
	root := newRoot(t)
	st := mustApply(t, root,
		ent{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
		ent{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/loop9", Mode: 0o660, Devmajor: 7, Devminor: 9, Gid: 6}},
		fifo("dev/initctl", 0o600),
	)
	if st.Devices != 3 {
		t.Errorf("Devices = %d", st.Devices)
	}
	null, loop := lstat(t, filepath.Join(root, "dev/null")), lstat(t, filepath.Join(root, "dev/loop9"))
	if null.Mode != unix.S_IFCHR|0o666 || null.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("dev/null: mode %o rdev %x", null.Mode, null.Rdev)
	}
	if loop.Mode != unix.S_IFBLK|0o660 || loop.Rdev != unix.Mkdev(7, 9) || loop.Gid != 6 {
		t.Errorf("dev/loop9: mode %o rdev %x gid %d", loop.Mode, loop.Rdev, loop.Gid)
	}
	// A later regular file replaces the device node; it is never opened.
	mustApply(t, root, reg("dev/null", "plain", 0o644))
	if got := readFile(t, filepath.Join(root, "dev/null")); got != "plain" {
		t.Errorf("dev/null = %q", got)
	}
}

func TestApplyTimes(t *testing.T) {
	t1 := time.Unix(1_500_000_000, 123456789)
	t2 := time.Unix(1_400_000_000, 987654321)
	t3 := time.Unix(1_300_000_000, 5)
	at := func(mt, at time.Time) func(h *tar.Header) {
		return func(h *tar.Header) { h.ModTime, h.AccessTime = mt, at }
	}
	root := newRoot(t)
	mustApply(t, root,
		dir("d/", 0o755).with(at(t1, t2)),
		reg("d/f", "x", 0o644).with(at(t2, t1)),
		dir("d/sub/", 0o755).with(at(t3, time.Time{})), // atime defaults to mtime
		reg("d/sub/g", "y", 0o644),
		sym("d/s", "f").with(at(t3, t3)),
		dir("old/", 0o755),
	)
	mustApply(t, root,
		dir("old/", 0o700).with(at(t2, t2)), // an existing directory gets new times
		reg("old/new", "z", 0o644),
		reg("d/more", "m", 0o644), // d is not in this layer: its mtime moves on
	)
	for _, tc := range []struct {
		name   string
		mt, at time.Time
	}{
		{"d/f", t2, t1},
		{"d/sub", t3, t3},
		{"d/s", t3, t3},
		{"old", t2, t2},
	} {
		st := lstat(t, filepath.Join(root, tc.name))
		mt, at := time.Unix(st.Mtim.Unix()), time.Unix(st.Atim.Unix())
		if !mt.Equal(tc.mt) || !at.Equal(tc.at) {
			t.Errorf("%s: mtime %v atime %v, want %v %v", tc.name, mt, at, tc.mt, tc.at)
		}
	}
	if st := lstat(t, filepath.Join(root, "d")); time.Unix(st.Mtim.Unix()).Equal(t1) {
		t.Errorf("d: mtime not updated by the second layer's new child")
	}
}

func TestApplyReplace(t *testing.T) {
	for _, tc := range []struct {
		name            string
		lower, upper    []ent
		want            []string // listTree of the result
		check           func(t *testing.T, root string)
		errLo, errUpper bool
	}{
		{
			name:  "file over dir",
			lower: []ent{dir("x/", 0o755), reg("x/a", "a", 0o644), dir("x/sub/", 0o755), reg("x/sub/b", "b", 0o644)},
			upper: []ent{reg("x", "file", 0o600)},
			want:  []string{"x"},
		},
		{
			name:  "dir over file",
			lower: []ent{reg("x", "file", 0o644)},
			upper: []ent{dir("x/", 0o700), reg("x/y", "y", 0o644)},
			want:  []string{"x/", "x/y"},
		},
		{
			name:  "symlink over dir",
			lower: []ent{dir("x/", 0o755), reg("x/a", "a", 0o644)},
			upper: []ent{sym("x", "elsewhere")},
			want:  []string{"x -> elsewhere"},
		},
		{
			name:  "dir over symlink",
			lower: []ent{dir("real/", 0o755), reg("real/keep", "k", 0o644), sym("x", "real")},
			upper: []ent{dir("x/", 0o750), reg("x/new", "n", 0o644)},
			want:  []string{"real/", "real/keep", "x/", "x/new"},
		},
		{
			name:  "file over symlink",
			lower: []ent{reg("target", "orig", 0o644), sym("s", "target")},
			upper: []ent{reg("s", "new", 0o644)},
			want:  []string{"s", "target"},
			check: func(t *testing.T, root string) {
				if got := readFile(t, filepath.Join(root, "target")); got != "orig" {
					t.Errorf("target = %q", got)
				}
			},
		},
		{
			name:  "file over hardlinked file",
			lower: []ent{reg("f", "orig", 0o644), hard("g", "f")},
			upper: []ent{reg("f", "new", 0o644)},
			want:  []string{"f", "g"},
			check: func(t *testing.T, root string) {
				if f, g := readFile(t, filepath.Join(root, "f")), readFile(t, filepath.Join(root, "g")); f != "new" || g != "orig" {
					t.Errorf("f = %q, g = %q", f, g)
				}
			},
		},
		{
			name:  "existing dir keeps contents, takes mode",
			lower: []ent{dir("d/", 0o700), reg("d/old", "o", 0o644)},
			upper: []ent{dir("d/", 0o751)},
			want:  []string{"d/", "d/old"},
			check: func(t *testing.T, root string) {
				if m := lstat(t, filepath.Join(root, "d")).Mode & 0o7777; m != 0o751 {
					t.Errorf("d mode %o", m)
				}
			},
		},
		{
			name:  "hardlink over file",
			lower: []ent{reg("t", "T", 0o644), reg("x", "X", 0o644)},
			upper: []ent{hard("x", "t")},
			want:  []string{"t", "x"},
			check: func(t *testing.T, root string) {
				if got := readFile(t, filepath.Join(root, "x")); got != "T" {
					t.Errorf("x = %q", got)
				}
			},
		},
		{
			name:  "symlink over symlink",
			lower: []ent{sym("s", "a")},
			upper: []ent{sym("s", "b")},
			want:  []string{"s -> b"},
		},
		{
			name:  "fifo over file",
			lower: []ent{reg("p", "x", 0o644)},
			upper: []ent{fifo("p", 0o600)},
			want:  []string{"p"},
			check: func(t *testing.T, root string) {
				if m := lstat(t, filepath.Join(root, "p")).Mode; m&unix.S_IFMT != unix.S_IFIFO {
					t.Errorf("p mode %o", m)
				}
			},
		},
		{
			name:  "same layer: file then dir then file",
			upper: []ent{reg("x", "1", 0o644), dir("x/", 0o755), reg("x/y", "2", 0o644), reg("x", "3", 0o644)},
			want:  []string{"x"},
		},
		{
			name:  "symlink replaces the previous entry's parent",
			upper: []ent{dir("y/", 0o755), dir("x/", 0o755), reg("x/f1", "1", 0o644), sym("x", "y"), reg("x/f2", "2", 0o644)},
			want:  []string{"x -> y", "y/", "y/f2"},
		},
		{
			name:     "file under a file fails",
			lower:    []ent{reg("f", "x", 0o644)},
			upper:    []ent{reg("f/g", "y", 0o644)},
			want:     []string{"f"},
			errUpper: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := newRoot(t)
			if len(tc.lower) > 0 {
				mustApply(t, root, tc.lower...)
			}
			_, err := apply(t, root, Options{}, tc.upper...)
			if (err != nil) != tc.errUpper {
				t.Fatalf("upper: %v", err)
			}
			if got := listTree(t, root); !slices.Equal(got, tc.want) {
				t.Errorf("tree = %q, want %q", got, tc.want)
			}
			if tc.check != nil {
				tc.check(t, root)
			}
		})
	}
}

// lowerTree is the lower layer of the whiteout tests.
var lowerTree = []ent{
	dir("etc/", 0o755), reg("etc/a", "a", 0o644), reg("etc/b", "b", 0o644),
	dir("var/", 0o755), dir("var/lib/", 0o755), reg("var/lib/x", "x", 0o644), reg("var/lib/y", "y", 0o644),
	dir("opt/", 0o755), reg("opt/o", "o", 0o644), dir("opt/sub/", 0o755), reg("opt/sub/old", "old", 0o644),
	sym("lnk", "var/lib"),
	dir("keep/", 0o755), reg("keep/k", "k", 0o644),
}

func TestApplyWhiteouts(t *testing.T) {
	for _, tc := range []struct {
		name            string
		upper           []ent
		present, absent []string
		whiteouts       int
	}{
		{
			name:    "file",
			upper:   []ent{wh("etc/.wh.a")},
			present: []string{"etc/b"}, absent: []string{"etc/a"}, whiteouts: 1,
		},
		{
			name:    "whole tree",
			upper:   []ent{wh("var/.wh.lib")},
			present: []string{"var"}, absent: []string{"var/lib"}, whiteouts: 1,
		},
		{
			name:    "symlink, not its target",
			upper:   []ent{wh(".wh.lnk")},
			present: []string{"var/lib/x"}, absent: []string{"lnk"}, whiteouts: 1,
		},
		{
			name:      "missing target or parent",
			upper:     []ent{wh("nope/.wh.x"), wh("etc/.wh.nope"), wh("etc/a/.wh.x")},
			present:   []string{"etc/a", "etc/b"},
			absent:    []string{"nope"},
			whiteouts: 3,
		},
		{
			name:      "char device whiteout form",
			upper:     []ent{{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "etc/.wh.b"}}},
			present:   []string{"etc/a"},
			absent:    []string{"etc/b"},
			whiteouts: 1,
		},
		{
			name:      "whiteout of the previous entry's parent",
			upper:     []ent{wh("etc/.wh.a"), wh(".wh.etc"), reg("etc/new", "n", 0o644)},
			present:   []string{"etc/new"},
			absent:    []string{"etc/a", "etc/b"},
			whiteouts: 2,
		},
		{
			name:    "whiteout then recreate",
			upper:   []ent{wh("etc/.wh.a"), reg("etc/a", "new", 0o644)},
			present: []string{"etc/a", "etc/b"}, whiteouts: 1,
		},
		{
			name:      "same layer's file survives its whiteout",
			upper:     []ent{reg("etc/c", "c", 0o644), wh("etc/.wh.c"), wh("etc/.wh.b")},
			present:   []string{"etc/c", "etc/a"},
			absent:    []string{"etc/b"},
			whiteouts: 2,
		},
		{
			name:      "same layer's dir: whiteout removes only lower content",
			upper:     []ent{reg("var/lib/new", "n", 0o644), wh("var/.wh.lib")},
			present:   []string{"var/lib/new"},
			absent:    []string{"var/lib/x", "var/lib/y"},
			whiteouts: 1,
		},
		{
			name:      "opaque marker before new entries",
			upper:     []ent{dir("var/lib/", 0o755), wh("var/lib/.wh..wh..opq"), reg("var/lib/new", "n", 0o644)},
			present:   []string{"var/lib/new", "etc/a"},
			absent:    []string{"var/lib/x", "var/lib/y"},
			whiteouts: 1,
		},
		{
			name:      "opaque marker after new entries",
			upper:     []ent{dir("var/lib/", 0o755), reg("var/lib/new", "n", 0o644), reg("var/lib/y", "y2", 0o644), wh("var/lib/.wh..wh..opq")},
			present:   []string{"var/lib/new", "var/lib/y"},
			absent:    []string{"var/lib/x"},
			whiteouts: 1,
		},
		{
			name:      "opaque after new entries in implicit subdir",
			upper:     []ent{reg("opt/sub/new", "n", 0o644), wh("opt/.wh..wh..opq")},
			present:   []string{"opt/sub/new"},
			absent:    []string{"opt/o", "opt/sub/old"},
			whiteouts: 1,
		},
		{
			name:      "nested opaque dirs",
			upper:     []ent{wh("opt/sub/.wh..wh..opq"), reg("opt/sub/n", "n", 0o644), wh("opt/.wh..wh..opq")},
			present:   []string{"opt/sub/n"},
			absent:    []string{"opt/o", "opt/sub/old"},
			whiteouts: 2,
		},
		{
			name:      "opaque dir that lower layers lack",
			upper:     []ent{wh("new/.wh..wh..opq")},
			present:   []string{"new", "etc/a"},
			whiteouts: 1,
		},
		{
			name:      "opaque marker does not follow a symlink",
			upper:     []ent{wh("lnk/.wh..wh..opq")},
			present:   []string{"lnk", "var/lib/x", "var/lib/y"},
			whiteouts: 1,
		},
		{
			name:      "opaque root",
			upper:     []ent{reg("only", "o", 0o644), wh(".wh..wh..opq"), dir("keep/", 0o755)},
			present:   []string{"only", "keep"},
			absent:    []string{"etc", "var", "opt", "lnk", "keep/k"},
			whiteouts: 1,
		},
		{
			name:    "AUFS metadata is skipped",
			upper:   []ent{reg(".wh..wh.plnk/12.34", "x", 0o644), reg("etc/.wh..wh.aufs", "", 0o644)},
			present: []string{"etc/a", "etc/b"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := newRoot(t)
			mustApply(t, root, lowerTree...)
			st := mustApply(t, root, tc.upper...)
			requireTree(t, root, tc.present, tc.absent)
			noWhiteoutFiles(t, root)
			if st.Whiteouts != tc.whiteouts {
				t.Errorf("Whiteouts = %d, want %d", st.Whiteouts, tc.whiteouts)
			}
			if t.Failed() {
				t.Logf("tree: %q", listTree(t, root))
			}
		})
	}
}

func TestApplyWhiteoutMalformed(t *testing.T) {
	for _, name := range []string{".wh.", "a/.wh..", ".wh.x/y"} {
		root := newRoot(t)
		_, err := apply(t, root, Options{}, wh(name))
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: err = %v, want ErrInvalid", name, err)
		}
	}
}

func TestApplyHardlinks(t *testing.T) {
	root := newRoot(t)
	mustApply(t, root, reg("lower/f", "L", 0o644), sym("lower/s", "f"))
	st := mustApply(t, root,
		hard("up/lf", "lower/f"),     // a lower layer's file
		hard("up/chain", "up/lf"),    // a link to a link
		hard("up/chain", "up/chain"), // to itself: nothing to do
		hard("up/ls", "lower/s"),     // a symlink: linked, not followed
		hard("/abs", "/lower/f"),     // absolute names are relative to root
	)
	if st.Hardlinks != 5 {
		t.Errorf("Hardlinks = %d", st.Hardlinks)
	}
	f := lstat(t, filepath.Join(root, "lower/f"))
	for _, p := range []string{"up/lf", "up/chain", "abs"} {
		if lstat(t, filepath.Join(root, p)).Ino != f.Ino {
			t.Errorf("%s is not lower/f", p)
		}
	}
	if f.Nlink != 4 {
		t.Errorf("nlink = %d", f.Nlink)
	}
	if m := lstat(t, filepath.Join(root, "up/ls")).Mode; m&unix.S_IFMT != unix.S_IFLNK {
		t.Errorf("up/ls mode %o", m)
	}
	for _, tc := range []struct {
		name string
		ents []ent
	}{
		{"missing target", []ent{hard("x", "nope")}},
		{"target later in the layer", []ent{hard("x", "y"), reg("y", "", 0o644)}},
		{"directory target", []ent{dir("d/", 0o755), hard("x", "d")}},
		{"root target", []ent{hard("x", "/")}},
	} {
		_, err := apply(t, newRoot(t), Options{}, tc.ents...)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", tc.name, err)
		}
	}
}

// capV2 is a VFS_CAP_REVISION_2 security.capability value granting
// CAP_NET_BIND_SERVICE (10), permitted and effective.
var capV2 = string([]byte{
	0x01, 0x00, 0x00, 0x02, // magic_etc: revision 2 | effective
	0x00, 0x04, 0x00, 0x00, // permitted[0]: 1<<10
	0x00, 0x00, 0x00, 0x00, // inheritable[0]
	0x00, 0x00, 0x00, 0x00, // permitted[1]
	0x00, 0x00, 0x00, 0x00, // inheritable[1]
})

func TestApplyXattrs(t *testing.T) {
	if !isRoot {
		t.Skip("security.capability needs root")
	}
	probe := filepath.Join(t.TempDir(), "probe")
	os.WriteFile(probe, nil, 0o644)
	if err := unix.Setxattr(probe, "user.probe", []byte("1"), 0); err != nil {
		t.Skipf("no user xattrs on the temp filesystem: %v", err)
	}
	var warnings []error
	root := newRoot(t)
	st, err := apply(t, root, Options{Warn: func(err error) { warnings = append(warnings, err) }},
		reg("bin/ping", "elf", 0o755).with(owner(1000, 1000)).
			with(xattr("security.capability", capV2)).with(xattr("user.foo", "bar")),
		dir("d/", 0o755).with(xattr("user.dir", "1")),
		sym("s", "bin/ping").with(xattr("user.x", "1")),         // EPERM: user.* on a symlink
		reg("g", "", 0o644).with(xattr("bogus.namespace", "1")), // EOPNOTSUPP
		reg("h", "", 0o644).with(xattr("trusted.t", "v")),
	)
	if err != nil {
		t.Fatal(err)
	}
	if st.Xattrs != 4 || st.Warnings != 2 || len(warnings) != 2 {
		t.Errorf("Xattrs %d Warnings %d warn calls %v", st.Xattrs, st.Warnings, warnings)
	}
	for _, w := range warnings {
		var ee *EntryError
		if !errors.As(w, &ee) || (ee.Name != "s" && ee.Name != "g") {
			t.Errorf("warning %v", w)
		}
	}
	get := func(p, k string) string {
		buf := make([]byte, 256)
		n, err := unix.Lgetxattr(filepath.Join(root, p), k, buf)
		if err != nil {
			t.Errorf("%s %s: %v", p, k, err)
			return ""
		}
		return string(buf[:n])
	}
	if got := get("bin/ping", "security.capability"); got != capV2 {
		t.Errorf("security.capability = %x (cleared by chown or write?)", got)
	}
	if get("bin/ping", "user.foo") != "bar" || get("d", "user.dir") != "1" || get("h", "trusted.t") != "v" {
		t.Errorf("xattrs not set")
	}
	if st := lstat(t, filepath.Join(root, "bin/ping")); st.Uid != 1000 {
		t.Errorf("uid %d", st.Uid)
	}
}

func TestApplyHostile(t *testing.T) {
	type check func(t *testing.T, root string)
	tree := func(want ...string) check {
		return func(t *testing.T, root string) {
			if got := listTree(t, root); !slices.Equal(got, want) {
				t.Errorf("tree = %q, want %q", got, want)
			}
		}
	}
	for _, tc := range []struct {
		name  string
		ents  []ent
		err   error // nil, a sentinel, or errAny
		check check
	}{
		{"dotdot", []ent{reg("../../"+canary, "x", 0o644)}, ErrEscape, tree()},
		{"dotdot deep", []ent{reg("../../../../../../../../etc/"+canary, "x", 0o644)}, ErrEscape, tree()},
		{"dotdot after a dir", []ent{reg("a/../../../"+canary, "x", 0o644)}, ErrEscape, tree()},
		{"dotdot that stays inside", []ent{reg("a/../b", "x", 0o644)}, nil, tree("b")},
		{"absolute", []ent{reg("/etc/"+canary, "x", 0o644)}, nil, tree("etc/", "etc/"+canary)},
		{"absolute dotdot", []ent{reg("/../../etc/"+canary, "x", 0o644)}, nil, tree("etc/", "etc/"+canary)},
		{"dir dotdot", []ent{dir("../x/", 0o755)}, ErrEscape, tree()},
		{"whiteout dotdot", []ent{wh("../.wh.sentinel")}, ErrEscape, tree()},
		{"opaque dotdot", []ent{wh("../.wh..wh..opq")}, ErrEscape, tree()},
		{
			"symlink to / then a file through it",
			[]ent{sym("evil", "/"), reg("evil/etc/"+canary, "x", 0o644)},
			nil, tree("etc/", "etc/"+canary, "evil -> /"),
		},
		{
			"symlink dotdot then a file through it",
			[]ent{sym("evil", "../../.."), reg("evil/"+canary, "x", 0o644)},
			nil, tree("evil -> ../../..", canary),
		},
		{
			"symlink dotdot then a dir through it",
			[]ent{sym("evil", "../../.."), dir("evil/x/", 0o755), dir("evil/x/y/", 0o755)},
			nil, tree("evil -> ../../..", "x/", "x/y/"),
		},
		{
			"symlink to /etc then passwd, no etc in root",
			[]ent{sym("link", "/etc"), reg("link/passwd", "pwned", 0o644)},
			errAny, tree("link -> /etc"),
		},
		{
			"symlink to /etc then passwd, etc in root",
			[]ent{dir("etc/", 0o755), sym("link", "/etc"), reg("link/passwd", "pwned", 0o644)},
			nil, tree("etc/", "etc/passwd", "link -> /etc"),
		},
		{
			"symlink to a file outside then write through it",
			[]ent{sym("s", "/etc/passwd"), reg("s", "pwned", 0o644)},
			nil, tree("s"),
		},
		{
			"symlink to a dir outside then a dir entry",
			[]ent{sym("s", "../.."), dir("s/", 0o700)},
			nil, tree("s/"),
		},
		{
			"symlink loop",
			[]ent{sym("a", "b"), sym("b", "a"), reg("a/x", "x", 0o644)},
			errAny, tree("a -> b", "b -> a"),
		},
		{"hardlink dotdot", []ent{hard("hl", "../../etc/passwd")}, ErrEscape, tree()},
		{"hardlink to the sentinel", []ent{hard("hl", "../sentinel")}, ErrEscape, tree()},
		{"hardlink absolute", []ent{hard("hl", "/etc/passwd")}, ErrInvalid, tree()},
		{
			"hardlink through a symlink to /etc",
			[]ent{sym("e", "/etc"), hard("hl", "e/passwd")},
			errAny, tree("e -> /etc"),
		},
		{
			"hardlink through a symlink dotdot",
			[]ent{sym("up", "../.."), hard("hl", "up/sentinel")},
			ErrInvalid, tree("up -> ../.."),
		},
		{
			"hardlink to a symlink pointing outside, then write",
			[]ent{sym("s", "/etc/passwd"), hard("hl", "s"), reg("hl", "pwned", 0o644)},
			nil, tree("hl", "s -> /etc/passwd"),
		},
		{
			"whiteout through a symlink",
			[]ent{sym("up", "../.."), wh("up/.wh.sentinel"), wh("up/.wh.b")},
			nil, tree("up -> ../.."),
		},
		{
			"opaque through a symlink",
			[]ent{sym("up", "../.."), wh("up/a/.wh..wh..opq"), wh("up/.wh..wh..opq")},
			nil, tree("a/", "up/"),
		},
		{
			"device through a symlink",
			[]ent{sym("up", "../.."), fifo("up/"+canary, 0o600)},
			nil, tree(canary, "up -> ../.."),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := newRoot(t)
			_, err := apply(t, root, Options{}, tc.ents...)
			switch {
			case tc.err == nil && err != nil:
				t.Fatalf("err = %v", err)
			case tc.err == errAny && err == nil, tc.err != nil && tc.err != errAny && !errors.Is(err, tc.err):
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			var ee *EntryError
			if err != nil && !errors.As(err, &ee) {
				t.Errorf("err %v is not an *EntryError", err)
			}
			tc.check(t, root)
			if fi, err := os.Lstat(filepath.Join(root, "hl")); err == nil && fi.Mode().IsRegular() {
				if readFile(t, filepath.Join(root, "hl")) != "pwned" {
					t.Errorf("hl is a regular file with unexpected content")
				}
			}
		})
	}
}

var errAny = errors.New("any error")

func TestApplyErrorMessage(t *testing.T) {
	_, err := apply(t, newRoot(t), Options{}, reg("ok", "", 0o644), reg("../x", "", 0o644))
	if got, want := err.Error(), `layer: entry "../x": path escapes the root`; got != want {
		t.Errorf("err = %q, want %q", got, want)
	}
	var ee *EntryError
	if !errors.As(err, &ee) || ee.Name != "../x" || !errors.Is(err, ErrEscape) {
		t.Errorf("err = %#v", err)
	}
	_, err = apply(t, newRoot(t), Options{}, reg("f", "", 0o644), reg("f/g", "", 0o644))
	if !strings.HasPrefix(err.Error(), `layer: entry "f/g": `) || !errors.Is(err, unix.ENOTDIR) {
		t.Errorf("err = %v", err)
	}
}

func TestApplyLimits(t *testing.T) {
	files := func(n int) []ent {
		var ents []ent
		for i := range n {
			ents = append(ents, reg("f"+strings.Repeat("x", i%50)+string(rune('a'+i%26)), "", 0o644))
		}
		return ents
	}
	t.Run("MaxEntries", func(t *testing.T) {
		if _, err := apply(t, newRoot(t), Options{MaxEntries: 100}, files(100)...); err != nil {
			t.Errorf("100 entries: %v", err)
		}
		st, err := apply(t, newRoot(t), Options{MaxEntries: 100}, files(101)...)
		if !errors.Is(err, ErrTooManyEntries) || st.Entries != 101 {
			t.Errorf("101 entries: %v, %+v", err, st)
		}
		if _, err := apply(t, newRoot(t), Options{MaxEntries: -1}, files(101)...); err != nil {
			t.Errorf("no limit: %v", err)
		}
	})
	t.Run("MaxEntries counts whiteouts", func(t *testing.T) {
		var ents []ent
		for range 11 {
			ents = append(ents, wh(".wh.x"))
		}
		if _, err := apply(t, newRoot(t), Options{MaxEntries: 10}, ents...); !errors.Is(err, ErrTooManyEntries) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("MaxFileSize", func(t *testing.T) {
		root := newRoot(t)
		_, err := apply(t, root, Options{MaxFileSize: 5}, reg("ok", "12345", 0o644), reg("big", "123456", 0o644))
		if !errors.Is(err, ErrFileTooLarge) {
			t.Errorf("err = %v", err)
		}
		requireTree(t, root, []string{"ok"}, []string{"big"})
	})
	t.Run("long name", func(t *testing.T) {
		name := strings.Repeat("d/", MaxNameLen/2) + "f"
		_, err := apply(t, newRoot(t), Options{}, reg(name, "", 0o644))
		var ee *EntryError
		if !errors.Is(err, ErrInvalid) || !errors.As(err, &ee) || len(ee.Name) > 300 {
			t.Errorf("err = %.400v", err)
		}
		long := sym("s", strings.Repeat("x", MaxNameLen+1))
		if _, err := apply(t, newRoot(t), Options{}, long); !errors.Is(err, ErrInvalid) {
			t.Errorf("long link target: err = %v", err)
		}
	})
	t.Run("bad uid and device", func(t *testing.T) {
		for _, e := range []ent{
			reg("f", "", 0o644).with(owner(-2, 0)),
			reg("f", "", 0o644).with(owner(0, 1<<32-1)),
			{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "c", Devmajor: 1 << 33}},
		} {
			if _, err := apply(t, newRoot(t), Options{}, e); !errors.Is(err, ErrInvalid) {
				t.Errorf("%+v: err = %v", e.hdr, err)
			}
		}
	})
	t.Run("unsupported type", func(t *testing.T) {
		e := ent{hdr: tar.Header{Typeflag: 'V', Name: "vol"}}
		if _, err := apply(t, newRoot(t), Options{}, e); !errors.Is(err, ErrInvalid) {
			t.Errorf("err = %v", err)
		}
	})
}

func TestApplySparse(t *testing.T) {
	t.Run("holes stay holes", func(t *testing.T) {
		const size = 1 << 30
		root := newRoot(t)
		st, err := Apply(context.Background(), root, bytes.NewReader(sparseTar("sparse", size)), testOpts(Options{}))
		if err != nil {
			t.Fatal(err)
		}
		if st.Bytes != size || st.Files != 1 {
			t.Errorf("stats %+v", st)
		}
		f, err := os.Open(filepath.Join(root, "sparse"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		buf := make([]byte, 5)
		for off, want := range map[int64]string{0: "hello", size - 5: "world", size / 2: "\x00\x00\x00\x00\x00"} {
			if _, err := f.ReadAt(buf, off); err != nil || string(buf) != want {
				t.Errorf("at %d: %q, %v", off, buf, err)
			}
		}
		if s := lstat(t, f.Name()); s.Size != size || s.Blocks*512 > 1<<20 {
			t.Errorf("size %d, %d bytes allocated", s.Size, s.Blocks*512)
		}
	})
	t.Run("huge claim over MaxFileSize", func(t *testing.T) {
		root := newRoot(t)
		_, err := Apply(context.Background(), root, bytes.NewReader(sparseTar("huge", 1<<50)), testOpts(Options{MaxFileSize: 1 << 30}))
		if !errors.Is(err, ErrFileTooLarge) {
			t.Errorf("err = %v", err)
		}
		requireTree(t, root, nil, []string{"huge"})
	})
	t.Run("huge claim without a limit is bounded by the context", func(t *testing.T) {
		root := newRoot(t)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := Apply(ctx, root, bytes.NewReader(sparseTar("huge", 1<<50)), testOpts(Options{}))
		runtime.ReadMemStats(&after)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v", err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
			t.Errorf("allocated %d bytes", alloc)
		}
	})
}

func TestApplyTruncated(t *testing.T) {
	data := mkTar(t,
		dir("d/", 0o755),
		reg("d/big", strings.Repeat("0123456789", 300), 0o644),
		reg("d/x", "x", 0o644).with(xattr("user.a", "b")),
		sym("d/s", "x"),
	)
	const bigStart = 2 * 512 // headers of d/ and d/big, then 3000 bytes of data
	for cut := 0; cut < len(data); cut += 61 {
		root := newRoot(t)
		_, err := Apply(context.Background(), root, bytes.NewReader(data[:cut]), testOpts(Options{}))
		if cut > bigStart && cut < bigStart+3000 && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("cut %d inside d/big: err = %v", cut, err)
		}
	}
}

func TestApplyBadInput(t *testing.T) {
	for name, data := range map[string][]byte{
		"garbage":      bytes.Repeat([]byte("garbage!"), 200),
		"bad checksum": append(append(rawHeader("f", '0', 0)[:148:148], "9999999\x00"...), make([]byte, 1024+356)...),
		"empty":        nil,
		"only trailer": make([]byte, 1024),
	} {
		t.Run(name, func(t *testing.T) {
			st, err := Apply(context.Background(), newRoot(t), bytes.NewReader(data), testOpts(Options{}))
			if (err == nil) != (name == "empty" || name == "only trailer") {
				t.Errorf("err = %v, stats %+v", err, st)
			}
		})
	}
}

func TestApplyContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Apply(ctx, newRoot(t), bytes.NewReader(mkTar(t, reg("f", "", 0o644))), testOpts(Options{}))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
	}
}

func TestApplyRootMissing(t *testing.T) {
	_, err := Apply(context.Background(), filepath.Join(t.TempDir(), "nope"), bytes.NewReader(nil), testOpts(Options{}))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v", err)
	}
}
