package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// completionTimeout bounds the listing a completion runs: a shell waits
// for it on every Tab.
const completionTimeout = 5 * time.Second

// completeNames is the ValidArgsFunction of a command whose first n
// arguments (every argument if n < 0) name objects of kind: device,
// snapshot, image, container or volume. It offers the names not given yet
// that start with what is typed; later arguments complete as rest says
// (cobra.ShellCompDirectiveFilterDirs for a directory, Default for a file,
// NoFileComp for a new name).
func (a *app) completeNames(kind string, n int, rest cobra.ShellCompDirective) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if n >= 0 && len(args) >= n {
			return nil, rest
		}
		var out []cobra.Completion
		for _, name := range a.objectNames(cmd.Context(), kind) {
			if strings.HasPrefix(name, toComplete) && !slices.Contains(args, name) {
				out = append(out, name)
			}
		}
		slices.Sort(out)
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// objectNames lists the names of kind's objects by running 'thinctl -q
// KIND ls' on the same pool, as a command line would: through the pool
// daemon when one runs, else from the pool file. A listing never starts a
// daemon. Errors are dropped (a completion has nowhere to print them):
// they give no names.
func (a *app) objectNames(ctx context.Context, kind string) []string {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completionTimeout)
	defer cancel()
	// Real files, not buffers: forward sends them to the daemon.
	in, err := os.Open(os.DevNull)
	if err != nil {
		return nil
	}
	defer in.Close()
	errOut, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil
	}
	defer errOut.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return nil
	}
	defer r.Close()
	var buf bytes.Buffer
	read := make(chan struct{})
	go func() {
		_, _ = io.Copy(&buf, r)
		close(read)
	}()
	args := []string{"--pool", a.poolPath, "-q", kind, "ls"}
	if a.runBase != "" {
		args = append([]string{"--run-dir", a.runBase}, args...)
	}
	sub := &app{in: in, out: w, err: errOut, rawArgs: args}
	root := sub.rootCmd()
	root.SetArgs(args)
	code := sub.execute(ctx, root)
	w.Close()
	<-read
	if code != 0 {
		return nil
	}
	return strings.Fields(buf.String())
}
