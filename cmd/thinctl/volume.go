package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/thinpool/thinpool/errdefs"
	"github.com/thinpool/thinpool/volumes"
)

func (a *app) volumeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "volume", Short: "Create, list, inspect and remove volumes (thin devices that outlive containers)"}
	var size, fs string
	var labels []string
	create := &cobra.Command{
		Use: "create [NAME]", Short: "Create a volume: its own thin device and filesystem",
		Args: checkInput(cobra.MaximumNArgs(1), func([]string) error { return checkSize(size) }),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := volumes.VolumeOptions{FS: fs}
			if size != "" {
				n, err := parseSize(size)
				if err != nil {
					return err
				}
				o.Size = n
			}
			lm, err := parseLabels(labels)
			if err != nil {
				return err
			}
			o.Labels = lm
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			m, err := a.manager()
			if err != nil {
				return err
			}
			v, err := m.CreateVolume(name, o)
			if err != nil {
				return err
			}
			a.warnOvercommit(m.Pool())
			if a.json {
				return a.printJSON(v)
			}
			fmt.Fprintln(a.out, v.Name)
			return nil
		},
	}
	create.Flags().StringVar(&size, "size", "10G", "volume size; "+sizeHelp)
	create.Flags().StringVar(&fs, "fs", "ext4", "filesystem: ext4 or xfs")
	create.Flags().StringArrayVar(&labels, "label", nil, "KEY=VALUE (repeatable)")
	var filters []string
	ls := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "List volumes", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var f volumes.VolumeFilter
			for _, flt := range filters {
				k, v, _ := strings.Cut(flt, "=")
				switch k {
				case "dangling":
					d := v == "true" || v == "1"
					f.Dangling = &d
				case "label":
					if f.Labels == nil {
						f.Labels = map[string]string{}
					}
					lk, lv, _ := strings.Cut(v, "=")
					f.Labels[lk] = lv
				default:
					return errdefs.Newf(errdefs.ErrInvalidArgument, "bad filter %q: dangling=true|false or label=KEY[=VALUE]", flt)
				}
			}
			m, err := a.manager()
			if err != nil {
				return err
			}
			vs := m.ListVolumes(f)
			if a.json {
				return a.printJSON(nonNil(vs))
			}
			if a.quiet {
				for _, v := range vs {
					fmt.Fprintln(a.out, v.Name)
				}
				return nil
			}
			rows := [][]string{{"DRIVER", "VOLUME NAME", "SIZE", "USED", "FS", "CONTAINERS"}}
			for _, v := range vs {
				users := strings.Join(v.InUseBy, ",")
				if users == "" {
					users = "-"
				}
				rows = append(rows, []string{v.Driver, v.Name, formatSize(v.Size), formatSize(v.UsedBytes), v.Options["fs"], users})
			}
			return a.table(rows)
		},
	}
	ls.Flags().StringArrayVarP(&filters, "filter", "f", nil, "dangling=true|false, label=KEY[=VALUE]")
	inspect := &cobra.Command{
		Use: "inspect NAME...", Short: "Show volumes as docker volume inspect does (JSON)", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := a.manager()
			if err != nil {
				return err
			}
			var out []*volumes.Volume
			for _, n := range args {
				v, err := m.InspectVolume(n)
				if err != nil {
					return err
				}
				out = append(out, v)
			}
			return a.printJSON(out)
		},
	}
	var force bool
	rm := &cobra.Command{
		Use: "rm NAME...", Aliases: []string{"remove"}, Short: "Remove volumes and their data (refused while a container uses one)", Args: cobra.MinimumNArgs(1),
		Long: `Remove volumes and their data. A volume that any container references,
mounted or not, is refused (the error names the containers), with or without
-f, as docker volume rm does: remove the containers first. -f only makes a
volume that does not exist no error.`,
		Annotations: map[string]string{annObjects: "volume"},
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := a.manager()
			if err != nil {
				return err
			}
			for _, n := range args {
				err := m.RemoveVolume(n)
				if force && errors.Is(err, volumes.ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				fmt.Fprintln(a.out, n)
			}
			return nil
		},
	}
	rm.Flags().BoolVarP(&force, "force", "f", false, "no error for a volume that does not exist (a volume in use is still refused)")
	var pruneAll, pruneForce bool
	prune := &cobra.Command{
		Use: "prune", Short: "Remove the anonymous volumes no container uses (--all: every unused volume)",
		// Without a terminal to ask on it fails before it starts a daemon.
		Args: checkInput(cobra.NoArgs, func([]string) error {
			if _, ok := a.terminal(); !ok && !pruneForce {
				return fmt.Errorf("volume prune: %w; use -f to prune without asking", errNoTerminal)
			}
			return nil
		}),
		Long: `Remove the anonymous volumes (those a container's -v /path or --mount with no
source made) that no container references, as docker volume prune does;
--all removes every volume no container references, named ones too. It asks
for confirmation on the terminal, and refuses without one, unless -f.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := a.manager()
			if err != nil {
				return err
			}
			if !pruneForce {
				what := "anonymous local volumes not used by at least one container"
				if pruneAll {
					what = "all local volumes not used by at least one container"
				}
				ok, err := a.confirm("WARNING! This will remove " + what + ".\nAre you sure you want to continue? [y/N] ")
				if err != nil {
					return fmt.Errorf("volume prune: %w; use -f to prune without asking", err)
				}
				if !ok {
					a.say("Nothing removed")
					return nil
				}
			}
			removed, err := m.PruneVolumes(pruneAll)
			for _, n := range removed {
				fmt.Fprintln(a.out, n)
			}
			if err != nil {
				return err
			}
			a.say("Removed %d volumes", len(removed))
			return nil
		},
	}
	prune.Flags().BoolVarP(&pruneAll, "all", "a", false, "also remove unused named volumes")
	prune.Flags().BoolVarP(&pruneForce, "force", "f", false, "do not ask for confirmation")
	cmd.AddCommand(create, ls, inspect, rm, prune)
	return cmd
}
