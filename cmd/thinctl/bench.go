package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/thinpool/thinpool/bench"
	"github.com/thinpool/thinpool/errdefs"
)

func (a *app) benchCmd() *cobra.Command {
	var (
		quick                bool
		runs                 int
		runtime, ramp        time.Duration
		size, dir, out, logf string
		targets, workloads   []string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure thinpool against a plain loop device, qcow2 and overlayfs on this machine",
		Long: `bench sets up every target in a work directory (--dir), runs the same
workloads against each, and prints the median of every measurement and the
ratios of thinpool against the plain loop device (the limit of this stack),
qcow2 and overlayfs. It needs root for loop devices, FUSE and mounts, and
fio, qemu-img/qemu-storage-daemon and thin-provisioning-tools for the peers
(a missing tool skips its target, with a note). It does not touch --pool:
each target gets a fresh pool or image of its own.

Workloads: ` + strings.Join(bench.Workloads(), ", ") + `.
Targets: ` + strings.Join(bench.TargetIDs(), ", ") + `.

--quick runs each workload once, small, in under a minute. make bench runs
the full set three times and renders bench/results/REPORT.md from the JSON
that --out writes.`,
		Example: `  thinctl bench --quick
  thinctl bench --runs 3 --out bench/results
  thinctl bench --workloads fio --targets thinpool,plain --size 4G --dir /var/tmp`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := bench.DefaultConfig()
			if quick {
				cfg = bench.QuickConfig()
			}
			f := cmd.Flags()
			if f.Changed("runs") {
				cfg.Runs = runs
			}
			if f.Changed("runtime") {
				cfg.Runtime = runtime
			}
			if f.Changed("ramp") {
				cfg.Ramp = ramp
			}
			if f.Changed("size") {
				n, err := parseSize(size)
				if err != nil {
					return err
				}
				if n < 64<<20 {
					return errdefs.Newf(errdefs.ErrInvalidArgument, "bad --size %s: at least 64 MiB", size)
				}
				cfg.Size = n
			}
			if cfg.Runs < 1 || cfg.Runtime <= 0 || cfg.Ramp < 0 {
				return errdefs.New(errdefs.ErrInvalidArgument, "--runs and --runtime must be positive")
			}
			if dir != "" {
				cfg.Dir = dir
			}
			if st, err := os.Stat(cfg.Dir); err != nil || !st.IsDir() {
				return errdefs.Newf(errdefs.ErrInvalidArgument, "bad --dir %s: not a directory", cfg.Dir)
			}
			cfg.Targets, cfg.Workloads = targets, workloads
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			cfg.Thinctl = exe
			if out != "" {
				if err := os.MkdirAll(out, 0o755); err != nil {
					return err
				}
			}
			if logf != "" {
				lf, err := os.Create(logf)
				if err != nil {
					return err
				}
				defer lf.Close()
				cfg.Log = lf
			}
			var prog *progress
			cfg.Progress = func(step, steps int, what string) {
				if prog == nil {
					prog = a.newProgress("", int64(steps))
					if prog != nil {
						prog.count = true
					}
				}
				if prog != nil {
					prog.label = fmt.Sprintf("%-44.44s", what)
					prog.update(int64(step))
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep, err := bench.Run(ctx, cfg)
			prog.finish()
			if rep != nil {
				rep.Commit = version
			}
			if err != nil && rep == nil {
				return err
			}
			if rep != nil && out != "" {
				if werr := writeReportJSON(rep, filepath.Join(out, "results.json")); werr != nil && err == nil {
					err = werr
				}
			}
			if err != nil {
				if errors.Is(err, context.Canceled) {
					return errors.New("bench interrupted; everything it set up is torn down")
				}
				return err
			}
			if a.json {
				return a.printJSON(rep)
			}
			if !a.quiet {
				if err := rep.WriteSummary(a.out); err != nil {
					return err
				}
			}
			if out != "" {
				a.say("Raw results: %s", filepath.Join(out, "results.json"))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&quick, "quick", false, "every workload once, small: under a minute")
	f.IntVar(&runs, "runs", 3, "repetitions of every measurement (the report gives median and min–max)")
	f.DurationVar(&runtime, "runtime", 10*time.Second, "length of each timed fio job")
	f.DurationVar(&ramp, "ramp", 2*time.Second, "unmeasured warm-up of random fio jobs")
	f.StringVar(&size, "size", "2G", "fio working set on each device (the page cache is dropped before reads); "+sizeHelp)
	f.StringVar(&dir, "dir", "", "where the work directory is made (default $TMPDIR or /tmp); every target lives there")
	f.StringVar(&out, "out", "", "write the raw results (results.json) into this directory")
	f.StringVar(&logf, "log", "", "write a line per measurement to this file")
	f.StringSliceVar(&targets, "targets", nil, "only these targets (comma-separated)")
	f.StringSliceVar(&workloads, "workloads", nil, "only these workloads (comma-separated)")
	return cmd
}

func writeReportJSON(rep *bench.Report, path string) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := rep.WriteJSON(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
