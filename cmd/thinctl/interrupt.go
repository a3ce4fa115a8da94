package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/thinpool/thinpool/daemon"
)

// interruptible returns a context that SIGINT or SIGTERM cancels, with a
// *daemon.Interrupted cause, and a function that stops watching. Inside
// the daemon the request's context does this (the client sends its
// signal), so parent is returned as it is. After the first signal the
// default action is back: a second Ctrl-C ends the process at once.
func (a *app) interruptible(parent context.Context) (context.Context, func()) {
	if a.daemon != nil {
		return parent, func() {}
	}
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			signal.Stop(ch)
			sig, _ := s.(syscall.Signal)
			cancel(&daemon.Interrupted{Signal: sig})
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel(nil)
	}
}

// interrupted ends a command that the cancellation of ctx stopped: it
// prints "interrupted: what" and exits as a shell reports a command the
// signal ended (130 for SIGINT).
func interrupted(ctx context.Context, what string) error {
	code := 128 + int(syscall.SIGINT)
	var in *daemon.Interrupted
	if errors.As(context.Cause(ctx), &in) {
		code = in.ExitCode()
	}
	return &exitError{code: code, msg: "interrupted: " + what}
}
