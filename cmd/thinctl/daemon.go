package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/thinpool/thinpool/daemon"
	"github.com/thinpool/thinpool/errdefs"
	"github.com/thinpool/thinpool/thinpool"
	"github.com/thinpool/thinpool/volumes"
)

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
			return errdefs.Newf(errdefs.ErrUnavailable, "%s needs the pool daemon, which an in-process call cannot reach", cmd.CommandPath())
		}
		return nil // in-process (tests): run here
	}
	abs, err := filepath.Abs(a.poolPath)
	if err != nil {
		return err
	}
	daemon.ReapStuck(daemon.RunDir(abs))
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

// manager returns the daemon's device manager; the commands that use it
// are forwarded to the daemon (see needsDaemon), except the read-only ones
// run with no daemon (see readsOnly), which get an offline manager over the
// pool file.
func (a *app) manager() (*volumes.Manager, error) {
	if a.daemon != nil {
		return a.daemon.Manager(), nil
	}
	if !a.offline {
		return nil, errdefs.Newf(errdefs.ErrUnavailable, "this command needs the pool daemon")
	}
	if a.offlinePool == nil {
		p, err := thinpool.Open(a.poolPath)
		if err != nil {
			return nil, hintPool(err)
		}
		a.offlinePool = p
	}
	return volumes.Offline(a.offlinePool), nil
}

// host returns the daemon's Host, which serves devices; the commands that
// use it are forwarded to the daemon (see needsDaemon).
func (a *app) host() (*daemon.Host, error) {
	if a.daemon == nil {
		return nil, errdefs.Newf(errdefs.ErrUnavailable, "this command needs the pool daemon")
	}
	return a.daemon.Host(), nil
}

func (a *app) newDaemonCmd() *cobra.Command {
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
	cmd.AddCommand(a.newDaemonRunCmd(), a.newDaemonStartCmd(), a.newDaemonStopCmd(), a.newDaemonStatusCmd())
	return cmd
}

// daemonRunOptions are the flags of 'daemon run' (none but the global ones).
type daemonRunOptions struct{}

func (a *app) newDaemonRunCmd() *cobra.Command {
	o := &daemonRunOptions{}
	return &cobra.Command{
		Use:   "run",
		Short: "Run the daemon in the foreground (for systemd); SIGTERM stops it cleanly unless a mount is busy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runDaemonRun(cmd.Context(), o)
		},
	}
}

func (a *app) runDaemonRun(_ context.Context, _ *daemonRunOptions) (err error) {
	// Started by Spawn ('daemon start', a command that needs the daemon),
	// it hands its error back to the command that waits for it.
	defer func() { daemon.ReportStartError(err) }()
	if os.Geteuid() != 0 {
		return errdefs.Newf(errdefs.ErrPermission, "the pool daemon must run as root (it mounts FUSE and attaches loop devices)")
	}
	abs, err := filepath.Abs(a.poolPath)
	if err != nil {
		return err
	}
	return serveDaemon(abs, a.err)
}

// serveDaemon serves the pool at poolPath until SIGTERM, SIGINT or
// 'daemon stop' (see daemon.Daemon.Stop): each signal tries a stop, which
// a busy mount refuses; the daemon then logs why and goes on serving.
func serveDaemon(poolPath string, logw io.Writer) error {
	logger := log.New(logw, "thinpool: ", log.LstdFlags)
	p, err := thinpool.Open(poolPath)
	if err != nil {
		return hintPool(err)
	}
	var d *daemon.Daemon
	d, err = daemon.New(p, daemon.Options{Logf: logger.Printf,
		Handler: func(ctx context.Context, req daemon.Request, in, out, errOut *os.File) int {
			return handle(ctx, d, req, in, out, errOut)
		}})
	if err != nil {
		return errors.Join(err, p.Close())
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		for {
			select {
			case s := <-sig:
				_, _ = d.Stop(false, s.String())
			case <-stopped:
				return
			}
		}
	}()
	return d.Run(context.Background())
}

// handle runs one forwarded invocation against the daemon's pool.
// ctx ends when the client is interrupted or goes away.
func handle(ctx context.Context, d *daemon.Daemon, req daemon.Request, in, out, errOut *os.File) int {
	a := &app{in: in, out: out, err: errOut, daemon: d, cwd: req.Cwd}
	if msg, ok := d.Draining(); ok {
		fmt.Fprintf(errOut, "thinctl: the daemon for %s is stopping: it serves lazily unmounted filesystems until they are released: %s\n", d.Pool().Path(), msg)
		return 1
	}
	root := a.rootCmd()
	root.SetArgs(req.Args)
	return a.execute(ctx, root)
}

// daemonStartOptions are the flags of 'daemon start' (none but the global
// ones).
type daemonStartOptions struct{}

func (a *app) newDaemonStartCmd() *cobra.Command {
	o := &daemonStartOptions{}
	return &cobra.Command{
		Use:   "start",
		Short: "Start the daemon in the background",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runDaemonStart(cmd.Context(), o)
		},
	}
}

func (a *app) runDaemonStart(_ context.Context, _ *daemonStartOptions) error {
	abs, err := filepath.Abs(a.poolPath)
	if err != nil {
		return err
	}
	daemon.ReapStuck(daemon.RunDir(abs))
	if pid, ok := daemon.PID(daemon.RunDir(abs)); ok {
		a.say("daemon for %s is already running (pid %d)", abs, pid)
		return nil
	}
	if err := a.startDaemon(abs); err != nil {
		return err
	}
	pid, _ := daemon.PID(daemon.RunDir(abs))
	a.say("started daemon for %s (pid %d, run directory %s)", abs, pid, daemon.RunDir(abs))
	return nil
}

// startDaemon starts 'thinctl daemon run' in the background for the pool and
// waits until it answers on its socket.
func (a *app) startDaemon(abs string) error {
	if os.Geteuid() != 0 {
		return errdefs.Newf(errdefs.ErrPermission, "attaching devices needs root: the pool daemon mounts FUSE and attaches loop devices")
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

// spawnDaemon runs 'thinctl daemon run' in the background (daemon.Spawn).
// If the daemon exits at start, the error says why, as the daemon reported
// it (daemon.StartError).
func (a *app) spawnDaemon(abs, runDir string, made bool) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	err = daemon.Spawn(runDir, []string{self, "--pool", abs, "daemon", "run"}, made)
	// The daemon exited with the code of its error's kind (a corrupt pool,
	// one locked by another process): the error here gets that kind too.
	var start *daemon.StartError
	if errors.As(err, &start) {
		if kind := exitKind(start.ExitCode); kind != nil {
			return errdefs.Newf(kind, "%w", err)
		}
	}
	return err
}

// daemonStopOptions are the flags of 'daemon stop'.
type daemonStopOptions struct {
	force bool // lazily unmount busy filesystems and stop when they are released
}

func (a *app) newDaemonStopCmd() *cobra.Command {
	o := &daemonStopOptions{}
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
			return a.runDaemonStop(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVarP(&o.force, "force", "f", false, "sync and lazily unmount busy filesystems; serve them until they are released, then stop")
	return cmd
}

func (a *app) runDaemonStop(ctx context.Context, o *daemonStopOptions) error {
	if a.daemon != nil {
		return a.stopHere(o.force)
	}
	abs, err := filepath.Abs(a.poolPath)
	if err != nil {
		return err
	}
	pid, ok := daemon.PID(daemon.RunDir(abs))
	if !ok {
		a.say("no daemon is running for %s", abs)
		return nil
	}
	in, ok1 := a.in.(*os.File)
	out, ok2 := a.out.(*os.File)
	errf, ok3 := a.err.(*os.File)
	if !ok1 || !ok2 || !ok3 {
		return errdefs.Newf(errdefs.ErrUnavailable, "daemon stop needs the pool daemon, which an in-process call cannot reach")
	}
	args := []string{"--pool", abs, "daemon", "stop"}
	if o.force {
		args = append(args, "--force")
	}
	cwd, _ := os.Getwd()
	code, err := daemon.Forward(ctx, daemon.Socket(daemon.RunDir(abs)), daemon.Request{Args: args, Cwd: cwd}, in, out, errf)
	if err != nil {
		return fmt.Errorf("stop daemon (pid %d): %w", pid, err)
	}
	if code != 0 {
		return &exitError{code: code}
	}
	for i := 0; i < 600; i++ {
		if syscall.Kill(pid, 0) != nil {
			a.say("stopped daemon for %s (pid %d)", abs, pid)
			return nil
		}
		if _, draining := daemon.Stopping(daemon.RunDir(abs)); draining {
			return nil // the daemon said what it waits for
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("daemon (pid %d) did not stop within 30s; see %s", pid, daemon.LogFile(daemon.RunDir(abs)))
}

// stopHere runs 'daemon stop' inside the daemon: it hands the request to
// the serving goroutine and prints its answer.
func (a *app) stopHere(force bool) error {
	held, err := a.daemon.Stop(force, "stop")
	if err != nil {
		return fmt.Errorf("not stopping the daemon for %s: %w; end those processes or use --force", a.daemon.Pool().Path(), err)
	}
	if len(held) > 0 {
		fmt.Fprintf(a.out, "Synced and lazily unmounted the busy filesystems: %s.\n", (&daemon.BusyError{Holders: held}).Error())
		fmt.Fprintf(a.out, "The daemon (pid %d) serves them until those processes let go, then detaches, commits and exits.\n", os.Getpid())
	}
	return nil
}

// daemonStatus is the JSON of 'daemon status'.
type daemonStatus struct {
	Pool     string `json:"pool"`
	Running  bool   `json:"running"`
	PID      int    `json:"pid"` // 0 when not running
	RunDir   string `json:"runDir"`
	Socket   string `json:"socket"`
	Attached int    `json:"attached"`
	// Stopping is set while a forced stop waits for lazily unmounted
	// filesystems to be released: what holds them.
	Stopping string `json:"stopping"`
}

// daemonStatusOptions are the flags of 'daemon status' (none but the global
// ones).
type daemonStatusOptions struct{}

func (a *app) newDaemonStatusCmd() *cobra.Command {
	o := &daemonStatusOptions{}
	return &cobra.Command{
		Use:   "status",
		Short: "Say whether the daemon runs, and what it has attached",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runDaemonStatus(cmd.Context(), o)
		},
	}
}

func (a *app) runDaemonStatus(_ context.Context, _ *daemonStatusOptions) error {
	abs, err := filepath.Abs(a.poolPath)
	if err != nil {
		return err
	}
	st := daemonStatus{Pool: abs, RunDir: daemon.RunDir(abs), Socket: daemon.Socket(daemon.RunDir(abs))}
	st.PID, st.Running = daemon.PID(st.RunDir)
	if st.Running {
		st.Attached = daemon.AttachedLoops(st.RunDir)
		st.Stopping, _ = daemon.Stopping(st.RunDir)
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
}
