package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/thinpool/thinpool/blockdev"
	"github.com/thinpool/thinpool/thinpool"
)

func (a *app) newSnapshotCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "snapshot",
		Aliases: []string{"snap"},
		Short:   "Create and list snapshots",
	}
	cmd.AddCommand(a.newSnapshotCreateCmd(), a.newSnapshotLsCmd())
	return cmd
}

// snapshotCreateOptions are the arguments and flags of 'snapshot create'.
type snapshotCreateOptions struct {
	origin, name string
	readOnly     bool
	freeze       string // a mount point to freeze while the snapshot is taken
}

func (a *app) newSnapshotCreateCmd() *cobra.Command {
	o := &snapshotCreateOptions{}
	cmd := &cobra.Command{
		Use:   "create ORIGIN NAME",
		Short: "Snapshot a device: the new device shares every block (copy-on-write)",
		Long: `Snapshot a device: the new device shares every block of the origin, and the
first write to a shared block copies it (64 KiB by default). Writes to the
origin are held while the snapshot is taken, so it holds exactly the writes
that completed before, as dm-thin requires suspending the origin. For a
filesystem-consistent snapshot of a mounted device, freeze the filesystem
(fsfreeze) around it: --freeze DIR does that.`,
		Example: `  thinctl snapshot create web web-backup --readonly
  thinctl snapshot create base container1`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: a.completeNames("device", 1, cobra.ShellCompDirectiveNoFileComp),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.origin, o.name = args[0], args[1]
			return a.runSnapshotCreate(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVar(&o.readOnly, "readonly", false, "make the snapshot read-only")
	cmd.Flags().StringVar(&o.freeze, "freeze", "", "freeze the filesystem mounted at DIR (fsfreeze) while the snapshot is taken")
	return cmd
}

func (a *app) runSnapshotCreate(_ context.Context, o *snapshotCreateOptions) error {
	if err := thinpool.ValidateName(o.name); err != nil {
		return err
	}
	return a.withPool(func(p *thinpool.Pool) error {
		if _, err := p.Device(o.origin); err != nil {
			return err
		}
		if o.freeze != "" {
			thaw, err := a.freeze(o.freeze)
			if err != nil {
				return err
			}
			defer thaw()
		}
		t, err := p.Snapshot(o.origin, o.name, o.readOnly)
		if err != nil {
			return err
		}
		a.warnOvercommit(p)
		return a.printDevice(p, t, "Created snapshot %q (%s) of "+fmt.Sprintf("%q", o.origin))
	})
}

// snapshotLsOptions are the flags of 'snapshot ls' (none but the global ones).
type snapshotLsOptions struct{}

func (a *app) newSnapshotLsCmd() *cobra.Command {
	o := &snapshotLsOptions{}
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List devices that have an origin, with their chain",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runSnapshotLs(cmd.Context(), o)
		},
	}
}

func (a *app) runSnapshotLs(_ context.Context, o *snapshotLsOptions) error {
	return a.withDevices(func(devs []deviceJSON) error {
		snaps := []deviceJSON{}
		for _, d := range devs {
			if d.OriginID != 0 {
				snaps = append(snaps, d)
			}
		}
		if a.json || a.quiet {
			return a.deviceTable(snaps)
		}
		rows := [][]string{{"NAME", "SIZE", "EXCLUSIVE", "RO", "CHAIN", "CREATED"}}
		for _, d := range snaps {
			chain := append([]string{d.Name}, d.Chain...)
			if d.Origin == "" {
				chain = append(chain, fmt.Sprintf("(deleted #%d)", d.OriginID))
			}
			ro := "-"
			if d.ReadOnly {
				ro = "ro"
			}
			rows = append(rows, []string{d.Name, formatSize(d.Size), formatSize(d.Exclusive), ro, strings.Join(chain, " <- "), tableTime(d.Created)})
		}
		return a.table(rows)
	})
}

// freeze freezes the filesystem mounted at dir and returns the thaw.
func (a *app) freeze(dir string) (func(), error) {
	dir = a.abs(dir)
	if err := blockdev.Freeze(dir); err != nil {
		return nil, fmt.Errorf("freeze %s: %w", dir, err)
	}
	return func() {
		if err := blockdev.Thaw(dir); err != nil {
			fmt.Fprintf(a.err, "thinctl: thaw %s: %v (run 'fsfreeze -u %s')\n", dir, err, dir)
		}
	}, nil
}
