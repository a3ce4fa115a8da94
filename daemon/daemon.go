package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/thinpool/thinpool/thinpool"
	"github.com/thinpool/thinpool/volumes"
)

// CommitPeriod is how often the daemon commits metadata changes that no
// flush has committed yet (discards, snapshots' copies), as dm-thin does
// every second: freed blocks then return to the pool and the host.
const CommitPeriod = time.Second

// drainingFile is the marker in the run directory while a forced stop
// waits for lazily unmounted filesystems to be released.
const drainingFile = "stopping"

// Options are the choices of New.
type Options struct {
	// RunDir is the run directory; "" means RunDir(the pool's path).
	RunDir string
	// Logf logs what the daemon does; nil logs nothing.
	Logf func(format string, args ...any)
	// Handler runs the requests forwarded on the socket (thinctl runs its
	// own command tree). It must refuse requests while Draining.
	Handler Handler
}

// Daemon owns an open pool and serves it: the Host that serves its thin
// devices (FUSE files, loop devices, mounts), the model of its images,
// containers and volumes (a volumes.Manager on that Host), and the
// listeners that take requests: the thinctl socket now, a containerd
// snapshots service later. A background loop commits the pool's metadata
// every CommitPeriod and watches its space (warnings and autoextend).
//
// Its methods are safe for concurrent use; Run is called once.
type Daemon struct {
	pool   *thinpool.Pool
	runDir string
	logf   func(string, ...any)
	host   *Host
	mgr    *volumes.Manager
	space  *spaceMonitor
	// handler runs the requests of l, the socket listener.
	handler Handler
	l       *Listener

	// stopReq carries Stop requests to Run, which answers on the
	// request's reply channel.
	stopReq chan stopRequest
	// draining is set once a forced stop has lazily unmounted busy
	// filesystems: the daemon serves them until they are released, and
	// refuses every other request.
	draining atomic.Pointer[string]
	// loopStop stops the commit loop, which closes loopDone.
	loopStop, loopDone chan struct{}
	// runDone is closed when Run has stopped serving.
	runDone chan struct{}
}

// stopRequest is one Stop handed to Run.
type stopRequest struct {
	force  bool
	reason string // logged: "stop", or the signal
	reply  chan stopReply
}

// stopReply answers a stopRequest: err means the daemon keeps serving and
// nothing was torn down; held lists what a forced stop left lazily
// unmounted, which the daemon serves until it is released.
type stopReply struct {
	err  error
	held []Holder
}

// New starts serving the pool p: it cleans up what a previous daemon of
// the run directory left (stale mounts, loop devices, a dead FUSE mount),
// serves FUSE there, rolls back the model's half-done steps and starts the
// commit loop. Run then takes requests until Stop. The daemon owns p from
// now on and closes it when Run ends; if New fails, the caller still owns
// p.
func New(p *thinpool.Pool, o Options) (*Daemon, error) {
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	runDir := o.RunDir
	if runDir == "" {
		runDir = RunDir(p.Path())
	}
	space := &spaceMonitor{pool: p, logf: logf}
	host, err := startHost(p, runDir, space, logf)
	if err != nil {
		return nil, err
	}
	d := &Daemon{pool: p, runDir: runDir, logf: logf, host: host, space: space, handler: o.Handler,
		mgr:     volumes.New(p, host, runDir, logf),
		stopReq: make(chan stopRequest), loopStop: make(chan struct{}), loopDone: make(chan struct{}),
		runDone: make(chan struct{})}
	go d.commitLoop()
	return d, nil
}

// Pool is the pool the daemon serves.
func (d *Daemon) Pool() *thinpool.Pool { return d.pool }

// Host serves the pool's devices.
func (d *Daemon) Host() *Host { return d.host }

// Manager is the model: images, containers and volumes.
func (d *Daemon) Manager() *volumes.Manager { return d.mgr }

// Draining returns, while a forced stop waits for lazily unmounted
// filesystems to be released, what holds them; the daemon takes no other
// request meanwhile.
func (d *Daemon) Draining() (string, bool) {
	if msg := d.draining.Load(); msg != nil {
		return *msg, true
	}
	return "", false
}

func (d *Daemon) pidFile() string { return filepath.Join(d.runDir, "pid") }

// Run listens on the socket, writes the pid file and serves until a Stop
// succeeds, then shuts down: it stops listening
// (waiting a little for the requests in progress, so that the one that
// asked for the stop gets its answer), commits and closes the pool, and
// removes the run directory. When ctx ends, Run tries to stop as Stop
// does without force, logging ctx's cause; if a mount is busy it logs why
// and goes on serving until a Stop succeeds.
func (d *Daemon) Run(ctx context.Context) error {
	h := d.handler
	if h == nil {
		h = func(context.Context, Request, *os.File, *os.File, *os.File) int { return 2 }
	}
	l, err := Listen(Socket(d.runDir), h)
	if err != nil {
		close(d.runDone)
		return errors.Join(err, d.close(), d.pool.Close())
	}
	d.l = l
	// Started: an error from now on is not one at start (ReportStartError),
	// and the processes the daemon runs do not inherit the request.
	_ = os.Unsetenv(startErrorEnv)
	_ = os.WriteFile(d.pidFile(), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
	d.logf("serving %s (run directory %s, pid %d)", d.pool.Path(), d.runDir, os.Getpid())
	done := ctx.Done()
	for stopped := false; !stopped; {
		select {
		case <-done:
			done = nil
			stopped = d.stop(stopRequest{reason: context.Cause(ctx).Error()})
		case r := <-d.stopReq:
			stopped = d.stop(r)
		}
	}
	close(d.runDone)
	_ = os.Remove(Socket(d.runDir))
	errs := []error{d.l.CloseWait(5 * time.Second), d.pool.Close()}
	_ = os.Remove(d.pidFile())
	if err := errors.Join(errs...); err != nil {
		d.logf("shutdown: %v", err)
		return err
	}
	d.logf("pool %s committed and released", d.pool.Path())
	if err := RemoveRunDir(d.runDir); err != nil {
		d.logf("%v", err)
	}
	return nil
}

// Stop asks Run to stop the daemon: unmount what it mounted, detach every
// loop device, commit and release the pool. reason is logged ("stop", or
// the signal that asked).
//
// While a process holds one of the daemon's mounts, Stop refuses with a
// *BusyError and changes nothing. With force it syncs every filesystem,
// unmounts them lazily (umount -l) and returns the holders: Run then serves
// those filesystems, refusing every request (Draining), until the kernel
// releases them, and only then detaches and closes. If an unmount still
// fails, Stop returns that error and the daemon goes on serving.
func (d *Daemon) Stop(force bool, reason string) ([]Holder, error) {
	r := stopRequest{force: force, reason: reason, reply: make(chan stopReply, 1)}
	select {
	case d.stopReq <- r:
	case <-d.runDone:
		return nil, nil // stopped already
	}
	rep := <-r.reply
	return rep.held, rep.err
}

// stop runs a stop request in Run and reports whether the daemon is
// closed.
func (d *Daemon) stop(r stopRequest) bool {
	hs, err := d.host.Holders()
	if err == nil && len(hs) > 0 && r.force {
		hs, err = d.host.UnmountLazily()
		if err == nil {
			d.mgr.ForgetMounts()
			msg := (&BusyError{Holders: hs}).Error()
			d.draining.Store(&msg)
			_ = os.WriteFile(filepath.Join(d.runDir, drainingFile), []byte(msg+"\n"), 0o600)
			d.logf("%s --force: lazily unmounted; serving until released: %s", r.reason, msg)
			r.reply <- stopReply{held: hs}
			r.reply = nil
			logged := time.Now()
			err = d.host.WaitReleased(200*time.Millisecond, func() {
				if time.Since(logged) > time.Minute {
					d.logf("%s --force: still waiting for %s", r.reason, msg)
					logged = time.Now()
				}
			})
		}
	}
	if err == nil {
		err = d.close()
	}
	if err != nil {
		if r.reply != nil {
			r.reply <- stopReply{err: err}
		}
		d.logf("%s: not stopping, still serving: %v", r.reason, err)
		d.draining.Store(nil)
		_ = os.Remove(filepath.Join(d.runDir, drainingFile))
		return false
	}
	d.logf("%s: unmounted and detached everything", r.reason)
	if r.reply != nil {
		r.reply <- stopReply{}
	}
	return true
}

// close unmounts what the daemon mounted, detaches every loop device and
// stops serving FUSE and the commit loop. The pool stays open.
//
// It checks before it tears anything down: while a process holds one of
// its mounts, it returns a *BusyError and changes nothing. If an unmount
// still fails, or a filesystem still holds a loop device (mounted
// elsewhere too), it stops there and returns the error: what is still
// mounted stays attached and served, so nothing is lost and close can be
// called again.
func (d *Daemon) close() error {
	hs, err := d.host.Holders()
	if err != nil {
		return err
	}
	if len(hs) > 0 {
		return &BusyError{Holders: hs}
	}
	// Containers first: their volume and bind mounts sit on their root
	// filesystem, which cannot be unmounted under them.
	if err := d.mgr.UnmountAll(); err != nil {
		return err
	}
	if err := d.host.unmountAll(); err != nil {
		return err
	}
	close(d.loopStop)
	<-d.loopDone
	return d.host.close()
}

// commitLoop commits the pool every CommitPeriod if it changed, and checks
// its space every SpaceCheckPeriod, until close.
func (d *Daemon) commitLoop() {
	defer close(d.loopDone)
	tick := time.NewTicker(CommitPeriod)
	defer tick.Stop()
	space := time.NewTicker(SpaceCheckPeriod)
	defer space.Stop()
	d.space.check(false)
	for {
		select {
		case <-d.loopStop:
			return
		case <-space.C:
			d.space.check(false)
		case <-tick.C:
			if d.pool.Dirty() {
				if err := d.pool.Sync(); err != nil {
					d.logf("periodic commit: %v", err)
				}
			}
		}
	}
}
