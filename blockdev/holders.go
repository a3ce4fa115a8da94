package blockdev

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Holder is a process that keeps a mount busy, found
// as fuser -m finds one: its working directory, root, an open file or a
// mapped file is on the mounted filesystem (or on the loop device itself).
type Holder struct {
	PID   int    `json:"pid"`
	Comm  string `json:"comm"`  // the process name, /proc/PID/comm
	Mount string `json:"mount"` // the mount point it holds
	How   string `json:"how"`   // cwd, root, fd or maps
}

// scanTimeout bounds a scan of /proc: reading a process's maps waits for
// its memory lock, which a process stuck in I/O can hold.
const scanTimeout = 10 * time.Second

// Holders lists the processes that keep busy the mounts of the block
// devices devs (loop devices), the mounts below them (a container's volume
// and bind mounts) and the devices themselves, as fuser -m finds them. It
// reads /proc and never touches the filesystems, so a stuck one cannot
// hang it; it gives up after scanTimeout.
func Holders(devs []string) ([]Holder, error) {
	if len(devs) == 0 {
		return nil, nil
	}
	w, err := watchMounts(devs)
	if err != nil {
		return nil, err
	}
	type result struct {
		hs  []Holder
		err error
	}
	res := make(chan result, 1)
	go func() {
		hs, err := w.scan()
		res <- result{hs, err}
	}()
	select {
	case r := <-res:
		return r.hs, r.err
	case <-time.After(scanTimeout):
		return nil, fmt.Errorf("find the processes using mounts: /proc did not answer within %v", scanTimeout)
	}
}

// MountsOf lists the mount points of the block devices devs and the mounts
// below them, longest first: a mount before the one it sits on.
func MountsOf(devs []string) ([]string, error) {
	w, err := watchMounts(devs)
	if err != nil {
		return nil, err
	}
	return w.dirs, nil
}

// watch is what a scan looks for.
type watch struct {
	dirs  []string          // mount points, longest first
	devs  map[uint64]string // dev_t of our filesystems -> their mount point
	paths map[string]string // device nodes (/dev/loopN) -> what they serve
}

// watchMounts finds, in /proc/self/mountinfo, the mounts of the loop
// devices and the mounts below them.
func watchMounts(loops []string) (*watch, error) {
	w := &watch{devs: map[uint64]string{}, paths: map[string]string{}}
	loopDev := map[uint64]string{}
	for _, l := range loops {
		var st unix.Stat_t
		if err := unix.Stat(l, &st); err != nil {
			return nil, fmt.Errorf("stat %s: %w", l, err)
		}
		loopDev[st.Rdev] = l
		w.paths[l] = l
	}
	mounts, err := readMountinfo()
	if err != nil {
		return nil, err
	}
	var tops []string
	type entry struct {
		dir string
		dev uint64
	}
	var all []entry
	for _, m := range mounts {
		maj, min, ok := strings.Cut(m.devID, ":")
		a, err1 := strconv.ParseUint(maj, 10, 32)
		b, err2 := strconv.ParseUint(min, 10, 32)
		if !ok || err1 != nil || err2 != nil {
			continue
		}
		all = append(all, entry{m.dir, unix.Mkdev(uint32(a), uint32(b))})
	}
	for _, e := range all {
		if _, ours := loopDev[e.dev]; ours {
			tops = append(tops, e.dir)
			if _, seen := w.devs[e.dev]; !seen {
				w.devs[e.dev] = e.dir
			}
		}
	}
	seen := map[string]bool{}
	for _, e := range all {
		for _, top := range tops {
			if (e.dir == top || strings.HasPrefix(e.dir, top+"/")) && !seen[e.dir] {
				seen[e.dir] = true
				w.dirs = append(w.dirs, e.dir)
			}
		}
	}
	sort.Slice(w.dirs, func(i, j int) bool { return len(w.dirs[i]) > len(w.dirs[j]) })
	return w, nil
}

// mountOf returns the watched mount that path is on, if any.
func (w *watch) mountOf(path string) (string, bool) {
	path = strings.TrimSuffix(path, " (deleted)")
	if l, ok := w.paths[path]; ok {
		return l, true
	}
	for _, d := range w.dirs {
		if path == d || strings.HasPrefix(path, d+"/") {
			return d, true
		}
	}
	return "", false
}

// scan reads every process's cwd, root, open files and mapped files.
func (w *watch) scan() ([]Holder, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var out []Holder
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		out = append(out, w.process(pid)...)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Mount != out[j].Mount {
			return out[i].Mount < out[j].Mount
		}
		return out[i].PID < out[j].PID
	})
	return out, nil
}

// process returns how pid holds watched mounts, at most once per mount.
func (w *watch) process(pid int) []Holder {
	dir := fmt.Sprintf("/proc/%d", pid)
	found := map[string]string{} // mount -> how
	note := func(mount, how string) {
		if _, ok := found[mount]; !ok {
			found[mount] = how
		}
	}
	for _, how := range []string{"cwd", "root"} {
		if p, err := os.Readlink(filepath.Join(dir, how)); err == nil {
			if mnt, ok := w.mountOf(p); ok && !(how == "root" && p == "/") {
				note(mnt, how)
			}
		}
	}
	if fds, err := os.ReadDir(filepath.Join(dir, "fd")); err == nil {
		for _, fd := range fds {
			if p, err := os.Readlink(filepath.Join(dir, "fd", fd.Name())); err == nil {
				if mnt, ok := w.mountOf(p); ok {
					note(mnt, "fd")
				}
			}
		}
	}
	w.maps(filepath.Join(dir, "maps"), note)
	if len(found) == 0 {
		return nil
	}
	comm, _ := os.ReadFile(filepath.Join(dir, "comm"))
	var hs []Holder
	for mnt, how := range found {
		hs = append(hs, Holder{PID: pid, Comm: strings.TrimSpace(string(comm)), Mount: mnt, How: how})
	}
	return hs
}

// maps notes the files a process maps from a watched filesystem, by
// device number (the "dev" column) or by path.
func (w *watch) maps(path string, note func(mount, how string)) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// 7f1c... r-xp 00000000 07:03 1234  /mnt/lib.so
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		if maj, min, ok := strings.Cut(fields[3], ":"); ok {
			a, err1 := strconv.ParseUint(maj, 16, 32)
			b, err2 := strconv.ParseUint(min, 16, 32)
			if err1 == nil && err2 == nil {
				if mnt, ok := w.devs[unix.Mkdev(uint32(a), uint32(b))]; ok {
					note(mnt, "maps")
					continue
				}
			}
		}
		if mnt, ok := w.mountOf(strings.Join(fields[5:], " ")); ok {
			note(mnt, "maps")
		}
	}
}

// HeldByFilesystem reports whether a filesystem still holds the block
// device dev (it is mounted, perhaps lazily unmounted but still in use):
// an exclusive open of a block device fails with EBUSY then.
// REF: https://man7.org/linux/man-pages/man2/open.2.html (O_EXCL without O_CREAT)
func HeldByFilesystem(dev string) (bool, error) {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EBUSY) {
		return true, nil
	}
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENXIO) {
		return false, nil
	}
	if err != nil {
		return false, &os.PathError{Op: "open", Path: dev, Err: err}
	}
	unix.Close(fd)
	return false, nil
}
