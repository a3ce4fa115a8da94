package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/thinpool/thinpool/thinpool"
)

func (a *app) snapshotCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "snapshot",
		Aliases: []string{"snap"},
		Short:   "Create and list snapshots",
	}
	var ro bool
	var freeze string
	create := &cobra.Command{
		Use:   "create ORIGIN NAME",
		Short: "Snapshot a device: the new device shares every block (copy-on-write)",
		Example: `  thinctl snapshot create web web-backup --readonly
  thinctl snapshot create base container1`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := thinpool.ValidateName(args[1]); err != nil {
				return err
			}
			return a.withPool(func(p *thinpool.Pool) error {
				if _, err := p.Device(args[0]); err != nil {
					return err
				}
				if freeze != "" {
					thaw, err := a.freeze(freeze)
					if err != nil {
						return err
					}
					defer thaw()
				}
				t, err := p.Snapshot(args[0], args[1], ro)
				if err != nil {
					return err
				}
				a.warnOvercommit(p)
				return a.printDevice(p, t, "Created snapshot %q (%s) of "+fmt.Sprintf("%q", args[0]))
			})
		},
	}
	create.Flags().BoolVar(&ro, "readonly", false, "make the snapshot read-only")
	create.Flags().StringVar(&freeze, "freeze", "", "freeze the filesystem mounted at DIR (fsfreeze) while the snapshot is taken")
	create.Long = `Snapshot a device: the new device shares every block of the origin, and the
first write to a shared block copies it (64 KiB by default). Writes to the
origin are held while the snapshot is taken, so it holds exactly the writes
that completed before, as dm-thin requires suspending the origin. For a
filesystem-consistent snapshot of a mounted device, freeze the filesystem
(fsfreeze) around it: --freeze DIR does that.`
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List devices that have an origin, with their chain",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
				rows := [][]string{{"NAME", "SIZE", "EXCLUSIVE", "RO", "CHAIN"}}
				for _, d := range snaps {
					chain := append([]string{d.Name}, d.Chain...)
					if d.Origin == "" {
						chain = append(chain, fmt.Sprintf("(deleted #%d)", d.OriginID))
					}
					ro := "-"
					if d.ReadOnly {
						ro = "ro"
					}
					rows = append(rows, []string{d.Name, formatSize(d.Size), formatSize(d.Exclusive), ro, strings.Join(chain, " <- ")})
				}
				return a.table(rows)
			})
		},
	}
	cmd.AddCommand(create, ls)
	return cmd
}
