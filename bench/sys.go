package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"
)

// cmdTimeout bounds every external command that is not a measurement.
const cmdTimeout = 5 * time.Minute

// sh runs a command with a timeout and returns its standard output; the
// error carries the command and the last line of its standard error.
func (h *harness) sh(env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(h.ctx, cmdTimeout)
	defer cancel()
	return runCmd(ctx, env, name, args...)
}

func runCmd(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		if msg == "" {
			msg = strings.TrimSpace(out.String())
		}
		if ctx.Err() == context.DeadlineExceeded {
			msg = "timed out; " + msg
		}
		return out.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, msg)
	}
	return out.String(), nil
}

// timed runs f and returns how long it took.
func timed(f func() error) (time.Duration, error) {
	t := time.Now()
	err := f()
	return time.Since(t), err
}

// dropCaches writes back and drops the page cache, so that a read job reads
// the disk and not what an earlier job left in memory. Without root it does
// nothing and says so.
func (h *harness) dropCaches() bool {
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		return false
	}
	return true
}

// coldCache drops the page cache before a measurement of target in row r,
// and notes in the row when it could not.
func (h *harness) coldCache(r *Row, target string) {
	if !h.dropCaches() {
		r.note(target, "page cache not dropped (not root)")
	}
}

func hasFilesystem(name string) bool {
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[len(f)-1] == name {
			return true
		}
	}
	return false
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// describeMachine gathers what the report says about the machine.
func describeMachine(work string) Machine {
	m := Machine{Cores: runtime.NumCPU(), WorkDir: work, GoVersion: runtime.Version(), Tools: map[string]string{}}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) == nil {
		m.MemoryB = int64(si.Totalram) * int64(si.Unit)
	}
	if out, err := exec.Command("findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", work).Output(); err == nil {
		f := strings.Fields(string(out))
		if len(f) == 2 {
			m.WorkFS = f[0] + " on " + f[1]
		}
	}
	m.LoadAvg[0] = loadAvg()
	for tool, args := range map[string][]string{
		"fio":                 {"--version"},
		"qemu-storage-daemon": {"--version"},
		"thin_metadata_size":  {"--version"},
		"mkfs.ext4":           {"-V"},
	} {
		if out, err := exec.Command(tool, args...).CombinedOutput(); err == nil {
			m.Tools[tool] = oneLine(string(out))
		}
	}
	return m
}

func ibytes(n int64) string { return humanize.IBytes(uint64(n)) }
