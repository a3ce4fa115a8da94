package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/thinpool/thinpool/blockdev"
	"github.com/thinpool/thinpool/daemon"
	"github.com/thinpool/thinpool/thinpool"
	"github.com/thinpool/thinpool/volumes"
)

// server is the state of a running 'thinctl daemon run'.
type server struct {
	poolPath string // absolute
	runDir   string
	mgr      *volumes.Manager
	// stopReq carries 'daemon stop' requests to the goroutine that serves
	// until the stop; it answers on the request's reply channel.
	stopReq chan stopRequest
	// draining is set once a forced stop has lazily unmounted busy
	// filesystems: the daemon serves them until they are released, and
	// refuses every other command.
	draining atomic.Pointer[string]
}

// stopRequest is one 'daemon stop' run inside the daemon.
type stopRequest struct {
	force bool
	reply chan stopReply
}

// stopReply answers a stopRequest: err means the daemon keeps serving and
// nothing was torn down; held lists what a forced stop left lazily
// unmounted, which the daemon serves until it is released.
type stopReply struct {
	err  error
	held []volumes.Holder
}

// drainingFile is the marker in the run directory while a forced stop
// waits for lazily unmounted filesystems to be released.
const drainingFile = "stopping"

// localOnly are the commands that never go to a daemon.
func localOnly(cmd *cobra.Command) bool {
	for c := cmd; c != nil; c = c.Parent() {
		switch c.Name() {
		case "daemon", "version", "completion", "docs", "help", "__complete", "bench":
			return true
		}
	}
	return false
}

// needsDaemon are the commands that need a live device: they start the
// daemon when none runs.
func needsDaemon(cmd *cobra.Command) bool {
	if cmd.Parent() == nil || readsOnly(cmd) {
		return false
	}
	switch cmd.Parent().Name() {
	case "image", "container", "volume":
		return true
	case "device":
	default:
		return false
	}
	switch cmd.Name() {
	case "attach", "mount":
		return true
	}
	return false // detach, umount: without a daemon nothing is attached
}

// readsOnly are the image, container and volume commands that only read
// records: with no daemon running they answer from the pool's metadata
// and start none, as lvs and docker ls never start anything.
func readsOnly(cmd *cobra.Command) bool {
	if cmd.Parent() == nil {
		return false
	}
	switch cmd.Parent().Name() {
	case "image", "container", "volume":
		switch cmd.Name() {
		case "ls", "inspect", "history":
			return true
		}
	}
	return false
}

// annObjects is the annotation of a command that needs the daemon and
// names objects in its arguments: "KIND" (every argument) or "KIND:N" (the
// first N), KIND one of device, image, container, volume. With no daemon
// running they are looked up in the pool file first, so that a missing one
// fails without starting a daemon.
const annObjects = "thinctl/objects"

// checkObjects looks up, in the pool file, the objects cmd's arguments
// name (annObjects) and returns the error of the first one missing.
func (a *app) checkObjects(cmd *cobra.Command, args []string) error {
	spec, ok := cmd.Annotations[annObjects]
	if !ok {
		return nil
	}
	if f := cmd.Flags().Lookup("force"); f != nil && f.Changed && cmd.Parent().Name() == "volume" {
		return nil // volume rm -f ignores missing volumes
	}
	kind, n, hasN := strings.Cut(spec, ":")
	if hasN {
		if k, err := strconv.Atoi(n); err == nil && k < len(args) {
			args = args[:k]
		}
	}
	p, err := thinpool.Open(a.poolPath)
	if errors.Is(err, thinpool.ErrLocked) {
		return nil // a daemon is starting: it will answer
	}
	if err != nil {
		return hintPool(err)
	}
	defer p.Close()
	m := volumes.Offline(p)
	for _, name := range args {
		var err error
		switch kind {
		case "device":
			if _, err = p.Device(name); err != nil {
				return err
			}
		case "image":
			_, err = m.InspectImage(name)
		case "container":
			_, err = m.InspectContainer(name)
		case "volume":
			_, err = m.InspectVolume(name)
		}
		if errors.Is(err, volumes.ErrNotFound) {
			return err
		}
	}
	return nil
}

// forward runs this invocation in the pool's daemon when one runs (or is
// needed), and returns an *exitError carrying its exit code; nil means run
// here.
func (a *app) forward(cmd *cobra.Command, args []string) error {
	if a.daemon != nil || localOnly(cmd) {
		return nil
	}
	a.offline = readsOnly(cmd)
	in, ok1 := a.in.(*os.File)
	out, ok2 := a.out.(*os.File)
	errf, ok3 := a.err.(*os.File)
	if !ok1 || !ok2 || !ok3 {
		if needsDaemon(cmd) {
			return fmt.Errorf("%s needs the pool daemon, which an in-process call cannot reach", cmd.CommandPath())
		}
		return nil // in-process (tests): run here
	}
	abs, err := filepath.Abs(a.poolPath)
	if err != nil {
		return err
	}
	reapStuckDaemon(daemon.RunDir(abs))
	sock := daemon.Socket(daemon.RunDir(abs))
	if _, err := os.Stat(sock); err != nil {
		if !needsDaemon(cmd) {
			return nil
		}
		if err := a.checkObjects(cmd, args); err != nil {
			return err
		}
		if err := a.startDaemon(abs); err != nil {
			return err
		}
	}
	cwd, _ := os.Getwd()
	req := daemon.Request{Args: append([]string{"--pool", abs}, a.rawArgs...), Cwd: cwd}
	// Ctrl-C cancels the request in the daemon, which rolls back and
	// answers; its exit code (130) and message are ours.
	ctx, stop := a.interruptible(cmd.Context())
	defer stop()
	code, err := daemon.Forward(ctx, sock, req, in, out, errf)
	if errors.Is(err, daemon.ErrNoDaemon) && !needsDaemon(cmd) {
		return nil // a stale socket: the pool file decides
	}
	if err != nil {
		return fmt.Errorf("pool daemon for %s: %w", abs, err)
	}
	return &exitError{code: code}
}

func (a *app) daemonCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run, start, stop or query the pool daemon that serves attached devices",
		Long: `The pool daemon owns one pool (its lock), serves attached thin devices through
FUSE files in its run directory, with a loop device on each, and listens on a
unix socket there (mode 0600, root only). While it runs, every other thinctl
command for that pool goes through it; without it they open the pool file.
'device attach' and 'device mount', and the image, container and volume
commands that change something, start it when it is not running; listing
and inspecting never do. SIGTERM stops it as 'daemon stop' does: refused,
logged and still serving while a process holds one of its mounts.

A systemd unit:

  [Unit]
  Description=thinpool daemon for /var/lib/thinpool/pool.img
  [Service]
  ExecStart=/usr/local/bin/thinctl --pool /var/lib/thinpool/pool.img daemon run
  KillSignal=SIGTERM
  TimeoutStopSec=60
  [Install]
  WantedBy=multi-user.target`,
	}
	cmd.AddCommand(a.daemonRunCmd(), a.daemonStartCmd(), a.daemonStopCmd(), a.daemonStatusCmd())
	return cmd
}

func (a *app) daemonRunCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run the daemon in the foreground (for systemd); SIGTERM stops it cleanly unless a mount is busy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if os.Geteuid() != 0 {
				return fmt.Errorf("the pool daemon must run as root (it mounts FUSE and attaches loop devices)")
			}
			abs, err := filepath.Abs(a.poolPath)
			if err != nil {
				return err
			}
			return runDaemon(abs, a.err)
		},
	}
}

// runDaemon serves the pool at poolPath until SIGTERM, SIGINT or
// 'daemon stop', then unmounts, detaches, commits and releases the pool.
// A stop is refused, and the daemon goes on serving, while a process holds
// one of its mounts; 'daemon stop --force' unmounts those lazily and serves
// them until the kernel releases them.
func runDaemon(poolPath string, logw interface{ Write([]byte) (int, error) }) error {
	logger := log.New(logw, "thinpool: ", log.LstdFlags)
	p, err := thinpool.Open(poolPath)
	if err != nil {
		return hintPool(err)
	}
	runDir := daemon.RunDir(poolPath)
	mgr, err := volumes.Start(p, runDir, logger.Printf)
	if err != nil {
		return errors.Join(err, p.Close())
	}
	d := &server{poolPath: poolPath, runDir: runDir, mgr: mgr, stopReq: make(chan stopRequest)}
	l, err := daemon.Listen(daemon.Socket(runDir), d.handle)
	if err != nil {
		return errors.Join(err, mgr.Close(), p.Close())
	}
	pidFile := filepath.Join(runDir, "pid")
	_ = os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
	logger.Printf("serving %s (run directory %s, pid %d)", poolPath, runDir, os.Getpid())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	for stopped := false; !stopped; {
		select {
		case s := <-sig:
			if err := mgr.Close(); err != nil {
				logger.Printf("%v: not stopping, still serving: %v", s, err)
				continue
			}
			logger.Printf("%v: unmounted and detached everything", s)
			stopped = true
		case r := <-d.stopReq:
			stopped = d.stop(r, logger)
		}
	}
	signal.Stop(sig)
	_ = os.Remove(daemon.Socket(runDir))
	errs := []error{l.CloseWait(5 * time.Second), p.Close()}
	_ = os.Remove(pidFile)
	if err := errors.Join(errs...); err != nil {
		logger.Printf("shutdown: %v", err)
		return err
	}
	logger.Printf("pool %s committed and released", poolPath)
	if err := daemon.RemoveRunDir(runDir); err != nil {
		logger.Printf("%v", err)
	}
	return nil
}

// stop runs a 'daemon stop' request and reports whether the manager is
// closed. Without force, busy mounts refuse the stop before anything is
// torn down. With force, busy filesystems are synced and lazily unmounted,
// the request is answered, and the daemon serves them until the kernel
// releases them; only then does it detach and close.
func (d *server) stop(r stopRequest, logger *log.Logger) bool {
	hs, err := d.mgr.Holders()
	if err == nil && len(hs) > 0 && r.force {
		hs, err = d.mgr.UnmountLazily()
		if err == nil {
			msg := (&volumes.BusyError{Holders: hs}).Error()
			d.draining.Store(&msg)
			_ = os.WriteFile(filepath.Join(d.runDir, drainingFile), []byte(msg+"\n"), 0o600)
			logger.Printf("stop --force: lazily unmounted; serving until released: %s", msg)
			r.reply <- stopReply{held: hs}
			r.reply = nil
			logged := time.Now()
			err = d.mgr.WaitReleased(200*time.Millisecond, func() {
				if time.Since(logged) > time.Minute {
					logger.Printf("stop --force: still waiting for %s", msg)
					logged = time.Now()
				}
			})
		}
	}
	if err == nil {
		err = d.mgr.Close()
	}
	if err != nil {
		if r.reply != nil {
			r.reply <- stopReply{err: err}
		}
		logger.Printf("stop: not stopping, still serving: %v", err)
		d.draining.Store(nil)
		_ = os.Remove(filepath.Join(d.runDir, drainingFile))
		return false
	}
	logger.Printf("stop requested: unmounted and detached everything")
	if r.reply != nil {
		r.reply <- stopReply{}
	}
	return true
}

// handle runs one forwarded invocation against the daemon's pool.
// ctx ends when the client is interrupted or goes away.
func (d *server) handle(ctx context.Context, req daemon.Request, in, out, errOut *os.File) int {
	a := &app{in: in, out: out, err: errOut, daemon: d, cwd: req.Cwd}
	if msg := d.draining.Load(); msg != nil {
		fmt.Fprintf(errOut, "thinctl: the daemon for %s is stopping: it serves lazily unmounted filesystems until they are released: %s\n", d.poolPath, *msg)
		return 1
	}
	root := a.rootCmd()
	root.SetArgs(req.Args)
	return a.execute(ctx, root)
}

func (a *app) daemonStartCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "start",
		Short: "Start the daemon in the background",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			abs, err := filepath.Abs(a.poolPath)
			if err != nil {
				return err
			}
			reapStuckDaemon(daemon.RunDir(abs))
			if pid, ok := daemonPID(abs); ok {
				a.say("daemon for %s is already running (pid %d)", abs, pid)
				return nil
			}
			if err := a.startDaemon(abs); err != nil {
				return err
			}
			pid, _ := daemonPID(abs)
			a.say("started daemon for %s (pid %d, run directory %s)", abs, pid, daemon.RunDir(abs))
			return nil
		},
	}
}

// startDaemon starts 'thinctl daemon run' in the background for the pool and
// waits until it answers on its socket.
func (a *app) startDaemon(abs string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("attaching devices needs root: the pool daemon mounts FUSE and attaches loop devices")
	}
	if err := statPool(abs); err != nil {
		return err
	}
	runDir := daemon.RunDir(abs)
	_, statErr := os.Stat(runDir)
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return err
	}
	made := errors.Is(statErr, os.ErrNotExist)
	return a.spawnDaemon(abs, runDir, made)
}

// spawnDaemon runs 'thinctl daemon run' in the background, logging to the
// run directory, and waits until it answers. If the daemon exits at start
// and made is set (this call made the run directory), the run directory
// goes again: a failed start leaves nothing behind.
func (a *app) spawnDaemon(abs, runDir string, made bool) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logPath := filepath.Join(runDir, "daemon.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	c := exec.Command(self, "--pool", abs, "daemon", "run")
	c.Stdout, c.Stderr = logf, logf
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Start(); err != nil {
		return fmt.Errorf("start daemon: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- c.Wait() }()
	deadline := time.After(20 * time.Second)
	for {
		if daemonAnswers(abs) {
			return nil
		}
		select {
		case <-exited:
			// Another command may have started a daemon first: use it.
			for i := 0; i < 100; i++ {
				if daemonAnswers(abs) {
					return nil
				}
				time.Sleep(50 * time.Millisecond)
			}
			err := fmt.Errorf("the daemon exited at start: %s", lastLine(logPath))
			if made {
				_ = daemon.RemoveRunDir(runDir)
			}
			return err
		case <-deadline:
			return fmt.Errorf("the daemon did not answer within 20s (log: %s)", logPath)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// reapStuckDaemon frees a killed daemon that cannot exit: its main thread is
// a zombie while another of its threads waits, uninterruptibly, on I/O that
// only the daemon's own (dead) FUSE server could serve (an unmount's
// writeback, a last close's flush). Such a process keeps the pool lock, and
// its socket still accepts connections. Aborting that FUSE connection fails
// the I/O, the process exits, and the lock goes with it.
func reapStuckDaemon(runDir string) {
	b, err := os.ReadFile(filepath.Join(runDir, "pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !stuckExiting(pid) {
		return
	}
	_ = blockdev.AbortMount(filepath.Join(runDir, "fuse"))
	for i := 0; i < 200 && stuckExiting(pid); i++ {
		time.Sleep(50 * time.Millisecond)
	}
}

// stuckExiting reports whether process pid is exiting but cannot: its main
// thread is a zombie while other threads remain.
func stuckExiting(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	s := string(b)
	return strings.Contains(s, "State:\tZ") && !strings.Contains(s, "Threads:\t1\n")
}

func lastLine(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimPrefix(lines[len(lines)-1], "thinctl: ")
}

// daemonAnswers reports whether a daemon accepts connections on the pool's
// socket.
func daemonAnswers(abs string) bool {
	c, err := dialTimeout(daemon.Socket(daemon.RunDir(abs)))
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// daemonPID returns the pid of the pool's running daemon.
func daemonPID(abs string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(daemon.RunDir(abs), "pid"))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || syscall.Kill(pid, 0) != nil || !daemonAnswers(abs) {
		return 0, false
	}
	return pid, true
}

func (a *app) daemonStopCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "stop",
		Short: "Stop the daemon: unmount, detach every loop device, commit and release the pool",
		Long: `Stop the daemon: unmount every filesystem it mounted, detach every loop
device, commit and release the pool.

A mount that a process uses (its working directory, root, an open or mapped
file is there, as fuser -m finds) cannot be unmounted: stop then refuses,
names the busy mounts and the processes holding them, exits non-zero and
changes nothing; the daemon goes on serving. SIGTERM does the same and logs
why. End those processes (or cd out) and stop again.

--force syncs every filesystem, then lazily unmounts them all (umount -l):
they leave the namespace at once, and a process still inside one goes on
using it, served by the daemon, which stops taking commands. When the last
holder lets go, the kernel writes the filesystem back and releases it; only
then does the daemon detach, commit and exit. Nothing written is lost,
synced or not, as long as the daemon is not killed meanwhile.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if a.daemon != nil {
				return a.daemon.stopHere(a, force)
			}
			abs, err := filepath.Abs(a.poolPath)
			if err != nil {
				return err
			}
			pid, ok := daemonPID(abs)
			if !ok {
				a.say("no daemon is running for %s", abs)
				return nil
			}
			in, ok1 := a.in.(*os.File)
			out, ok2 := a.out.(*os.File)
			errf, ok3 := a.err.(*os.File)
			if !ok1 || !ok2 || !ok3 {
				return fmt.Errorf("daemon stop needs the pool daemon, which an in-process call cannot reach")
			}
			args := []string{"--pool", abs, "daemon", "stop"}
			if force {
				args = append(args, "--force")
			}
			cwd, _ := os.Getwd()
			code, err := daemon.Forward(cmd.Context(), daemon.Socket(daemon.RunDir(abs)), daemon.Request{Args: args, Cwd: cwd}, in, out, errf)
			if err != nil {
				return fmt.Errorf("stop daemon (pid %d): %w", pid, err)
			}
			if code != 0 {
				return &exitError{code: code}
			}
			draining := filepath.Join(daemon.RunDir(abs), drainingFile)
			for i := 0; i < 600; i++ {
				if syscall.Kill(pid, 0) != nil {
					a.say("stopped daemon for %s (pid %d)", abs, pid)
					return nil
				}
				if _, err := os.Stat(draining); err == nil {
					return nil // the daemon said what it waits for
				}
				time.Sleep(50 * time.Millisecond)
			}
			return fmt.Errorf("daemon (pid %d) did not stop within 30s; see %s", pid, filepath.Join(daemon.RunDir(abs), "daemon.log"))
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "sync and lazily unmount busy filesystems; serve them until they are released, then stop")
	return cmd
}

// stopHere runs 'daemon stop' inside the daemon: it hands the request to
// the serving goroutine and prints its answer.
func (d *server) stopHere(a *app, force bool) error {
	r := stopRequest{force: force, reply: make(chan stopReply, 1)}
	d.stopReq <- r
	rep := <-r.reply
	if rep.err != nil {
		return fmt.Errorf("not stopping the daemon for %s: %w; end those processes or use --force", d.poolPath, rep.err)
	}
	if len(rep.held) > 0 {
		fmt.Fprintf(a.out, "Synced and lazily unmounted the busy filesystems: %s.\n", (&volumes.BusyError{Holders: rep.held}).Error())
		fmt.Fprintf(a.out, "The daemon (pid %d) serves them until those processes let go, then detaches, commits and exits.\n", os.Getpid())
	}
	return nil
}

// attachedLoops counts the loop devices whose backing file is in the FUSE
// mount of the run directory: the devices its daemon has attached.
// REF: https://docs.kernel.org/admin-guide/abi-stable-files.html (/sys/block/loopN/loop/backing_file)
func attachedLoops(runDir string) int {
	dir := filepath.Join(runDir, "fuse") + "/"
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	n := 0
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), dir) {
			n++
		}
	}
	return n
}

// daemonStatus is the JSON of 'daemon status'.
type daemonStatus struct {
	Pool     string `json:"pool"`
	Running  bool   `json:"running"`
	PID      int    `json:"pid,omitempty"`
	RunDir   string `json:"runDir"`
	Socket   string `json:"socket"`
	Attached int    `json:"attached"`
	// Stopping is set while a forced stop waits for lazily unmounted
	// filesystems to be released: what holds them.
	Stopping string `json:"stopping,omitempty"`
}

func (a *app) daemonStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Say whether the daemon runs, and what it has attached",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			abs, err := filepath.Abs(a.poolPath)
			if err != nil {
				return err
			}
			st := daemonStatus{Pool: abs, RunDir: daemon.RunDir(abs), Socket: daemon.Socket(daemon.RunDir(abs))}
			st.PID, st.Running = daemonPID(abs)
			if st.Running {
				st.Attached = attachedLoops(st.RunDir)
			}
			if b, err := os.ReadFile(filepath.Join(st.RunDir, drainingFile)); err == nil && st.Running {
				st.Stopping = strings.TrimSpace(string(b))
			}
			if a.json {
				return a.printJSON(st)
			}
			if !st.Running {
				fmt.Fprintf(a.out, "daemon for %s is not running\n", abs)
				return &exitError{code: 3}
			}
			fmt.Fprintf(a.out, "daemon for %s is running (pid %d)\nrun directory: %s\nattached devices: %d\n", abs, st.PID, st.RunDir, st.Attached)
			if st.Stopping != "" {
				fmt.Fprintf(a.out, "stopping: it serves lazily unmounted filesystems until they are released: %s\n", st.Stopping)
			}
			return nil
		},
	}
}
