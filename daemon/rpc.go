package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thinpool/thinpool/errdefs"
)

// Request is one thinctl invocation forwarded to the daemon: the daemon runs
// the same command with the client's standard streams, passed as file
// descriptors (SCM_RIGHTS), so terminals, pipes and progress bars behave as
// if the command ran in the client.
type Request struct {
	Args []string          `json:"args"`
	Cwd  string            `json:"cwd"`
	Env  map[string]string `json:"env,omitempty"`
}

// Response ends a forwarded invocation.
type Response struct {
	Code int `json:"code"`
}

// maxRequest bounds a request message.
const maxRequest = 1 << 20

// Handler runs a forwarded request with the client's streams and returns the
// exit code. ctx ends when the client cancels the request (its cause is
// then an *Interrupted) or goes away without an answer (ErrClientGone); the
// handler should then stop at the next safe point, undo what it did, and
// return.
type Handler func(ctx context.Context, req Request, stdin, stdout, stderr *os.File) int

// cancelMsg is what a client sends on its connection, after its request, to
// cancel it: the signal it got.
type cancelMsg struct {
	Signal int `json:"cancel"`
}

// Interrupted is the cause of a cancellation by a signal: SIGINT or
// SIGTERM in the client, or in an offline command.
type Interrupted struct {
	Signal syscall.Signal
}

func (e *Interrupted) Error() string { return "interrupted by " + e.Signal.String() }

// ExitCode is the exit status a shell gives a command the signal ended:
// 128 + its number, so 130 for SIGINT.
func (e *Interrupted) ExitCode() int { return 128 + int(e.Signal) }

// ErrClientGone is the cause of the cancellation of a request whose client
// closed its connection before the answer (it was killed).
var ErrClientGone = errors.New("daemon: the client went away")

// Listener serves forwarded requests on a unix socket.
type Listener struct {
	l    *net.UnixListener
	wg   sync.WaitGroup
	once sync.Once
}

// Listen creates the socket at path (mode 0600, root only) and serves each
// connection with h in its own goroutine.
func Listen(path string, h Handler) (*Listener, error) {
	_ = os.Remove(path)
	old := unix.Umask(0o077)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	s := &Listener{l: l}
	s.wg.Add(1)
	go s.accept(h)
	return s, nil
}

func (s *Listener) accept(h Handler) {
	defer s.wg.Done()
	for {
		c, err := s.l.AcceptUnix()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			serveConn(c, h)
		}()
	}
}

func serveConn(c *net.UnixConn, h Handler) {
	defer c.Close()
	if !peerIsRoot(c) {
		return
	}
	buf := make([]byte, maxRequest)
	oob := make([]byte, unix.CmsgSpace(3*4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return
	}
	files, err := receiveFiles(oob[:oobn])
	if err != nil || len(files) != 3 {
		for _, f := range files {
			f.Close()
		}
		return
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	var req Request
	code := 2
	if err := json.Unmarshal(buf[:n], &req); err == nil {
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		go watchCancel(c, cancel)
		code = h(ctx, req, files[0], files[1], files[2])
	}
	b, _ := json.Marshal(Response{Code: code})
	_, _ = c.Write(b)
}

// watchCancel reads the connection after the request: a cancel message,
// or its end, cancels the request. It returns when the connection closes.
func watchCancel(c *net.UnixConn, cancel context.CancelCauseFunc) {
	var m cancelMsg
	if err := json.NewDecoder(c).Decode(&m); err != nil {
		cancel(ErrClientGone)
		return
	}
	sig := syscall.Signal(m.Signal)
	if sig <= 0 || sig > 64 {
		sig = syscall.SIGINT
	}
	cancel(&Interrupted{Signal: sig})
}

func peerIsRoot(c *net.UnixConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	_ = raw.Control(func(fd uintptr) {
		cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		ok = err == nil && cred.Uid == 0
	})
	return ok
}

func receiveFiles(oob []byte) ([]*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), fmt.Sprintf("fd%d", fd)))
		}
	}
	return files, nil
}

// Close stops accepting and waits for the requests in progress.
func (s *Listener) Close() error {
	var err error
	s.once.Do(func() { err = s.l.Close() })
	s.wg.Wait()
	return err
}

// CloseNoWait stops accepting without waiting (for a shutdown requested by
// a request being served).
func (s *Listener) CloseNoWait() error {
	var err error
	s.once.Do(func() { err = s.l.Close() })
	return err
}

// CloseWait stops accepting and waits up to d for the requests in
// progress, so that a request that asked for the shutdown gets its answer.
func (s *Listener) CloseWait(d time.Duration) error {
	err := s.CloseNoWait()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
	return err
}

// ErrNoDaemon is returned by Forward when no daemon listens on the socket.
var ErrNoDaemon = errdefs.New(errdefs.ErrUnavailable, "daemon: no daemon is running")

// Forward sends req with the three streams to the daemon at sock, waits
// for it to finish and returns its exit code. When ctx ends first, it asks
// the daemon to cancel the request (with the signal of an *Interrupted
// cause, else SIGINT) and still waits for the answer: the daemon undoes
// what the request did before it answers.
func Forward(ctx context.Context, sock string, req Request, stdin, stdout, stderr *os.File) (int, error) {
	c, err := net.DialTimeout("unix", sock, 2*time.Second)
	if err != nil {
		return 0, fmt.Errorf("%w (%v)", ErrNoDaemon, err)
	}
	uc := c.(*net.UnixConn)
	defer uc.Close()
	b, err := json.Marshal(req)
	if err != nil {
		return 0, err
	}
	if len(b) > maxRequest {
		return 0, fmt.Errorf("request too large")
	}
	rights := unix.UnixRights(int(stdin.Fd()), int(stdout.Fd()), int(stderr.Fd()))
	if _, _, err := uc.WriteMsgUnix(b, rights, nil); err != nil {
		return 0, fmt.Errorf("send to daemon: %w", err)
	}
	stop := context.AfterFunc(ctx, func() {
		m := cancelMsg{Signal: int(syscall.SIGINT)}
		var in *Interrupted
		if errors.As(context.Cause(ctx), &in) {
			m.Signal = int(in.Signal)
		}
		b, _ := json.Marshal(m)
		_, _ = uc.Write(b)
	})
	defer stop()
	var resp Response
	if err := json.NewDecoder(uc).Decode(&resp); err != nil {
		return 0, fmt.Errorf("the daemon ended the request without an answer (did it crash?): %w", err)
	}
	return resp.Code, nil
}
