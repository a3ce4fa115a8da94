// Command mkimage writes two small docker save tarballs for the demo:
// app:v1 and app:v2, which share their first three layers and differ in
// the last one, as images built from one Dockerfile at two commits do:
//
//	FROM busybox              layer 1: a static busybox, /bin/sh and friends
//	RUN apt-get install ...   layer 2: "packages" under /usr
//	RUN pip install ...       layer 3: "Python packages" under /usr/lib/python3
//	COPY app /app             layer 4: the application (v1 or v2)
//
// Usage: go run ./scripts/mkimage [-busybox /bin/busybox] DIR
//
// The layers are built byte for byte the same in both images (fixed times,
// owners and pseudo-random contents), so their diff IDs, and chain IDs, match.
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/thinpool/thinpool/volumes/archive"
)

var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// layer builds one uncompressed layer tar.
type layer struct {
	buf bytes.Buffer
	tw  *tar.Writer
}

func newLayer() *layer {
	l := &layer{}
	l.tw = tar.NewWriter(&l.buf)
	return l
}

func (l *layer) dir(name string) {
	must(l.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, ModTime: epoch}))
}

func (l *layer) file(name string, mode int64, data []byte) {
	must(l.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch}))
	_, err := l.tw.Write(data)
	must(err)
}

func (l *layer) symlink(name, target string) {
	must(l.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: epoch}))
}

func (l *layer) bytes() []byte {
	must(l.tw.Close())
	return l.buf.Bytes()
}

// noise is n pseudo-random bytes, the same for the same seed.
func noise(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 0))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func main() {
	busybox := flag.String("busybox", "/bin/busybox", "a statically linked busybox (Debian: busybox-static)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: mkimage [-busybox PATH] DIR")
		os.Exit(2)
	}
	out := flag.Arg(0)
	bb, err := os.ReadFile(*busybox)
	must(err)

	base := newLayer()
	for _, d := range []string{"bin", "etc", "tmp", "usr", "var"} {
		base.dir(d)
	}
	base.file("bin/busybox", 0o755, bb)
	for _, a := range []string{"sh", "cat", "ls", "echo", "df", "rm", "mkdir", "touch", "sync", "grep", "wc", "head"} {
		base.symlink("bin/"+a, "busybox")
	}
	base.file("etc/os-release", 0o644, []byte("NAME=\"thinpool demo\"\nID=demo\n"))
	base.file("etc/motd", 0o644, []byte("built by scripts/mkimage\n"))

	apt := newLayer()
	apt.dir("usr/share")
	apt.dir("usr/share/doc")
	for i, pkg := range []string{"libc6", "libssl3", "ca-certificates", "tzdata"} {
		apt.dir("usr/share/doc/" + pkg)
		apt.file("usr/share/doc/"+pkg+"/data", 0o644, noise(uint64(10+i), 1<<20))
	}
	apt.dir("var/lib")
	apt.dir("var/lib/dpkg")
	apt.file("var/lib/dpkg/status", 0o644, []byte("Package: libc6\nPackage: libssl3\nPackage: ca-certificates\nPackage: tzdata\n"))

	pip := newLayer()
	pip.dir("usr/lib")
	pip.dir("usr/lib/python3")
	pip.dir("usr/lib/python3/site-packages")
	for i, pkg := range []string{"requests", "flask"} {
		pip.dir("usr/lib/python3/site-packages/" + pkg)
		pip.file("usr/lib/python3/site-packages/"+pkg+"/__init__.py", 0o644, noise(uint64(20+i), 1<<20))
	}

	app := func(version string) []byte {
		l := newLayer()
		l.dir("app")
		l.file("app/VERSION", 0o644, []byte(version+"\n"))
		l.file("app/main.sh", 0o755, []byte("#!/bin/sh\necho \"hello from app "+version+"\"\n"))
		l.file("app/static.bin", 0o644, noise(uint64(version[len(version)-1]), 256<<10))
		return l.bytes()
	}
	layers := [][]byte{base.bytes(), apt.bytes(), pip.bytes()}
	step := func(by string) any { return map[string]any{"created": epoch.Format(time.RFC3339), "created_by": by} }
	history := []any{
		step("FROM busybox (static)"),
		step("RUN apt-get install -y libc6 libssl3 ca-certificates tzdata"),
		step("RUN pip install requests flask"),
	}
	must(os.MkdirAll(out, 0o755))
	for _, v := range []string{"v1", "v2"} {
		cfg := map[string]any{
			"created": epoch.Format(time.RFC3339),
			"config":  map[string]any{"Cmd": []string{"/app/main.sh"}, "Env": []string{"PATH=/bin"}},
			"history": append(append([]any{}, history...), step("COPY app /app # "+v)),
		}
		ls := append(append([][]byte{}, layers...), app(v))
		path := filepath.Join(out, "app-"+v+".tar")
		must(archive.WriteDockerSave(path, "app:"+v, ls, cfg))
		fmt.Printf("wrote %s (app:%s, %d layers)\n", path, v, len(ls))
	}
}
