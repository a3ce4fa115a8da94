package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/thinpool/thinpool/errdefs"
	"github.com/thinpool/thinpool/volumes"
)

func (a *app) newVolumeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "volume", Short: "Create, list, inspect and remove volumes (thin devices that outlive containers)"}
	cmd.AddCommand(a.newVolumeCreateCmd(), a.newVolumeLsCmd(), a.newVolumeInspectCmd(), a.newVolumeRmCmd(), a.newVolumePruneCmd())
	return cmd
}

// volumeCreateOptions are the argument and flags of 'volume create'.
type volumeCreateOptions struct {
	name   string // "" for an anonymous volume
	size   string
	fs     string // ext4 or xfs
	labels []string
}

func (a *app) newVolumeCreateCmd() *cobra.Command {
	o := &volumeCreateOptions{}
	cmd := &cobra.Command{
		Use: "create [NAME]", Short: "Create a volume: its own thin device and filesystem",
		Args: checkInput(cobra.MaximumNArgs(1), func([]string) error { return checkSize(o.size) }),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.name = args[0]
			}
			return a.runVolumeCreate(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.size, "size", "10G", "volume size; "+sizeHelp)
	cmd.Flags().StringVar(&o.fs, "fs", "ext4", "filesystem: ext4 or xfs")
	cmd.Flags().StringArrayVar(&o.labels, "label", nil, "KEY=VALUE (repeatable)")
	return cmd
}

func (a *app) runVolumeCreate(_ context.Context, o *volumeCreateOptions) error {
	vo := volumes.VolumeOptions{FS: o.fs}
	if o.size != "" {
		n, err := parseSize(o.size)
		if err != nil {
			return err
		}
		vo.Size = n
	}
	lm, err := parseLabels(o.labels)
	if err != nil {
		return err
	}
	vo.Labels = lm
	m, err := a.manager()
	if err != nil {
		return err
	}
	v, err := m.CreateVolume(o.name, vo)
	if err != nil {
		return err
	}
	a.warnOvercommit(m.Pool())
	if a.json {
		return a.printJSON(volumeView(v))
	}
	fmt.Fprintln(a.out, v.Name)
	return nil
}

// volumeLsOptions are the flags of 'volume ls'.
type volumeLsOptions struct {
	filters []string // dangling=true|false, label=KEY[=VALUE]
}

func (a *app) newVolumeLsCmd() *cobra.Command {
	o := &volumeLsOptions{}
	cmd := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "List volumes", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runVolumeLs(cmd.Context(), o)
		},
	}
	cmd.Flags().StringArrayVarP(&o.filters, "filter", "f", nil, "dangling=true|false, label=KEY[=VALUE]")
	return cmd
}

func (a *app) runVolumeLs(_ context.Context, o *volumeLsOptions) error {
	var f volumes.VolumeFilter
	for _, flt := range o.filters {
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
	vs := volumeViews(m.ListVolumes(f))
	if a.json {
		return a.printJSON(vs)
	}
	if a.quiet {
		for _, v := range vs {
			fmt.Fprintln(a.out, v.Name)
		}
		return nil
	}
	rows := [][]string{{"DRIVER", "VOLUME NAME", "SIZE", "USED", "FS", "CONTAINERS", "CREATED"}}
	for _, v := range vs {
		users := strings.Join(v.InUseBy, ",")
		if users == "" {
			users = "-"
		}
		rows = append(rows, []string{v.Driver, v.Name, formatSize(v.Size), formatSize(v.UsedBytes), v.Options["fs"], users, tableTime(v.CreatedAt)})
	}
	return a.table(rows)
}

// volumeInspectOptions are the arguments of 'volume inspect'.
type volumeInspectOptions struct {
	names []string
}

func (a *app) newVolumeInspectCmd() *cobra.Command {
	o := &volumeInspectOptions{}
	cmd := &cobra.Command{
		Use: "inspect NAME...", Short: "Show volumes as docker volume inspect does (JSON)", Args: cobra.MinimumNArgs(1),
		ValidArgsFunction: a.completeNames("volume", -1, cobra.ShellCompDirectiveNoFileComp),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.names = args
			return a.runVolumeInspect(cmd.Context(), o)
		},
	}
	return cmd
}

func (a *app) runVolumeInspect(_ context.Context, o *volumeInspectOptions) error {
	m, err := a.manager()
	if err != nil {
		return err
	}
	out := []volumeJSON{}
	for _, n := range o.names {
		v, err := m.InspectVolume(n)
		if err != nil {
			return err
		}
		out = append(out, volumeView(v))
	}
	return a.printJSON(out)
}

// volumeRmOptions are the arguments and flags of 'volume rm'.
type volumeRmOptions struct {
	names []string
	force bool // no error for a volume that does not exist
}

func (a *app) newVolumeRmCmd() *cobra.Command {
	o := &volumeRmOptions{}
	cmd := &cobra.Command{
		Use: "rm NAME...", Aliases: []string{"remove"}, Short: "Remove volumes and their data (refused while a container uses one)", Args: cobra.MinimumNArgs(1),
		Long: `Remove volumes and their data. A volume that any container references,
mounted or not, is refused (the error names the containers), with or without
-f, as docker volume rm does: remove the containers first. -f only makes a
volume that does not exist no error.`,
		Annotations:       map[string]string{annObjects: "volume"},
		ValidArgsFunction: a.completeNames("volume", -1, cobra.ShellCompDirectiveNoFileComp),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.names = args
			return a.runVolumeRm(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVarP(&o.force, "force", "f", false, "no error for a volume that does not exist (a volume in use is still refused)")
	return cmd
}

func (a *app) runVolumeRm(_ context.Context, o *volumeRmOptions) error {
	m, err := a.manager()
	if err != nil {
		return err
	}
	for _, n := range o.names {
		err := m.RemoveVolume(n)
		if o.force && errors.Is(err, volumes.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		fmt.Fprintln(a.out, n)
	}
	return nil
}

// volumePruneOptions are the flags of 'volume prune'.
type volumePruneOptions struct {
	all   bool // named volumes too
	force bool // do not ask
}

func (a *app) newVolumePruneCmd() *cobra.Command {
	o := &volumePruneOptions{}
	cmd := &cobra.Command{
		Use: "prune", Short: "Remove the anonymous volumes no container uses (--all: every unused volume)",
		// Without a terminal to ask on it fails before it starts a daemon.
		Args: checkInput(cobra.NoArgs, func([]string) error {
			if _, ok := a.terminal(); !ok && !o.force {
				return fmt.Errorf("volume prune: %w; use -f to prune without asking", errNoTerminal)
			}
			return nil
		}),
		Long: `Remove the anonymous volumes (those a container's -v /path or --mount with no
source made) that no container references, as docker volume prune does;
--all removes every volume no container references, named ones too. It asks
for confirmation on the terminal, and refuses without one, unless -f.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runVolumePrune(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVarP(&o.all, "all", "a", false, "also remove unused named volumes")
	cmd.Flags().BoolVarP(&o.force, "force", "f", false, "do not ask for confirmation")
	return cmd
}

func (a *app) runVolumePrune(_ context.Context, o *volumePruneOptions) error {
	m, err := a.manager()
	if err != nil {
		return err
	}
	if !o.force {
		what := "anonymous local volumes not used by at least one container"
		if o.all {
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
	removed, err := m.PruneVolumes(o.all)
	for _, n := range removed {
		fmt.Fprintln(a.out, n)
	}
	if err != nil {
		return err
	}
	a.say("Removed %d volumes", len(removed))
	return nil
}

// volumeJSON is the JSON of a volume in 'volume ls', 'volume inspect' and
// 'volume create', with docker volume inspect's fields and more.
type volumeJSON struct {
	Name       string            `json:"name"`
	Driver     string            `json:"driver"`
	Mountpoint string            `json:"mountpoint"`
	CreatedAt  time.Time         `json:"createdAt"`
	Labels     map[string]string `json:"labels"`
	Options    map[string]string `json:"options"`
	Scope      string            `json:"scope"`
	Size       int64             `json:"size"`      // virtual size in bytes
	UsedBytes  int64             `json:"usedBytes"` // pool bytes mapped
	Device     string            `json:"device"`    // the thin device
	InUseBy    []string          `json:"inUseBy"`   // containers that reference it
	Mounted    bool              `json:"mounted"`
	Anonymous  bool              `json:"anonymous"` // made by a container's -v /path
}

func volumeView(v *volumes.Volume) volumeJSON {
	created, _ := time.Parse(time.RFC3339Nano, v.CreatedAt)
	return volumeJSON{Name: v.Name, Driver: v.Driver, Mountpoint: v.Mountpoint, CreatedAt: created,
		Labels: nonNilMap(v.Labels), Options: nonNilMap(v.Options), Scope: v.Scope, Size: v.Size,
		UsedBytes: v.UsedBytes, Device: v.Device, InUseBy: nonNil(v.InUseBy), Mounted: v.Mounted, Anonymous: v.Anonymous}
}

func volumeViews(vs []*volumes.Volume) []volumeJSON {
	out := make([]volumeJSON, 0, len(vs))
	for _, v := range vs {
		out = append(out, volumeView(v))
	}
	return out
}
