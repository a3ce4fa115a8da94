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

// benchOptions are the flags of 'bench'; the ...Set fields say which
// were given (the others keep the configuration's defaults).
type benchOptions struct {
	quick                                 bool
	runs                                  int
	runtime, ramp                         time.Duration
	size, dir, out, logf                  string
	targets, workloads                    []string
	runsSet, runtimeSet, rampSet, sizeSet bool
}

func (a *app) newBenchCmd() *cobra.Command {
	o := &benchOptions{}
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
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			o.runsSet, o.runtimeSet = f.Changed("runs"), f.Changed("runtime")
			o.rampSet, o.sizeSet = f.Changed("ramp"), f.Changed("size")
			return a.runBench(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.quick, "quick", false, "every workload once, small: under a minute")
	f.IntVar(&o.runs, "runs", 3, "repetitions of every measurement (the report gives median and min–max)")
	f.DurationVar(&o.runtime, "runtime", 10*time.Second, "length of each timed fio job")
	f.DurationVar(&o.ramp, "ramp", 2*time.Second, "unmeasured warm-up of random fio jobs")
	f.StringVar(&o.size, "size", "2G", "fio working set on each device (the page cache is dropped before reads); "+sizeHelp)
	f.StringVar(&o.dir, "dir", "", "where the work directory is made (default $TMPDIR or /tmp); every target lives there")
	f.StringVar(&o.out, "out", "", "write the raw results (results.json) into this directory")
	f.StringVar(&o.logf, "log", "", "write a line per measurement to this file")
	f.StringSliceVar(&o.targets, "targets", nil, "only these targets (comma-separated)")
	f.StringSliceVar(&o.workloads, "workloads", nil, "only these workloads (comma-separated)")
	return cmd
}

func (a *app) runBench(ctx context.Context, o *benchOptions) error {
	cfg := bench.DefaultConfig()
	if o.quick {
		cfg = bench.QuickConfig()
	}
	if o.runsSet {
		cfg.Runs = o.runs
	}
	if o.runtimeSet {
		cfg.Runtime = o.runtime
	}
	if o.rampSet {
		cfg.Ramp = o.ramp
	}
	if o.sizeSet {
		n, err := parseSize(o.size)
		if err != nil {
			return err
		}
		if n < 64<<20 {
			return errdefs.Newf(errdefs.ErrInvalidArgument, "bad --size %s: at least 64 MiB", o.size)
		}
		cfg.Size = n
	}
	if cfg.Runs < 1 || cfg.Runtime <= 0 || cfg.Ramp < 0 {
		return errdefs.New(errdefs.ErrInvalidArgument, "--runs and --runtime must be positive")
	}
	if o.dir != "" {
		cfg.Dir = o.dir
	}
	if st, err := os.Stat(cfg.Dir); err != nil || !st.IsDir() {
		return errdefs.Newf(errdefs.ErrInvalidArgument, "bad --dir %s: not a directory", cfg.Dir)
	}
	cfg.Targets, cfg.Workloads = o.targets, o.workloads
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cfg.Thinctl = exe
	if o.out != "" {
		if err := os.MkdirAll(o.out, 0o755); err != nil {
			return err
		}
	}
	if o.logf != "" {
		lf, err := os.Create(o.logf)
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
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, cfg)
	prog.finish()
	if rep != nil {
		rep.Commit = version
	}
	if err != nil && rep == nil {
		return err
	}
	if rep != nil && o.out != "" {
		if werr := writeReportJSON(rep, filepath.Join(o.out, "results.json")); werr != nil && err == nil {
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
	if o.out != "" {
		a.say("Raw results: %s", filepath.Join(o.out, "results.json"))
	}
	return nil
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
