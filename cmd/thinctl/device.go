package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/thinpool/thinpool/errdefs"
	"github.com/thinpool/thinpool/thinpool"
	"github.com/thinpool/thinpool/volumes"
)

func (a *app) newDeviceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "device",
		Aliases: []string{"dev"},
		Short:   "Create, list, inspect, resize, rename, remove, import and export thin devices",
	}
	cmd.AddCommand(a.newDeviceCreateCmd(), a.newDeviceLsCmd(), a.newDeviceInspectCmd(), a.newDeviceRmCmd(),
		a.newDeviceResizeCmd(), a.newDeviceRenameCmd(), a.newDeviceImportCmd(), a.newDeviceExportCmd(), a.newDeviceDiffCmd())
	cmd.AddCommand(a.newDeviceAttachCmd(), a.newDeviceDetachCmd(), a.newDeviceMountCmd(), a.newDeviceUmountCmd())
	return cmd
}

// deviceJSON is the JSON of one device in 'device ls', 'device inspect' and
// 'snapshot ls'. Sizes are in bytes.
type deviceJSON struct {
	Name         string            `json:"name"`
	ID           uint32            `json:"id"`
	Size         int64             `json:"size"`
	Mapped       int64             `json:"mapped"`
	Exclusive    int64             `json:"exclusive"`
	Shared       int64             `json:"shared"`
	MappedBlocks uint64            `json:"mappedBlocks"`
	Extents      int               `json:"extents"`
	Origin       string            `json:"origin"`
	OriginID     uint32            `json:"originId"`
	Chain        []string          `json:"chain"`     // origin, its origin...; [] for none
	Loop         string            `json:"loop"`      // attached as this loop device; "" if not
	MountedAt    string            `json:"mountedAt"` // mounted there by the daemon; "" if not
	ReadOnly     bool              `json:"readOnly"`
	Created      time.Time         `json:"created"`
	Labels       map[string]string `json:"labels"`
}

func deviceView(p *thinpool.Pool, t *thinpool.Thin) (deviceJSON, error) {
	i := t.Info()
	u, err := t.Usage()
	if err != nil {
		return deviceJSON{}, err
	}
	bs := p.BlockSize()
	labels := i.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	return deviceJSON{
		Name: i.Name, ID: uint32(i.ID), Size: i.Size,
		Mapped: int64(u.Mapped) * bs, Exclusive: int64(u.Exclusive) * bs, Shared: int64(u.Shared) * bs,
		MappedBlocks: u.Mapped, Extents: u.Extents,
		Origin: i.OriginName, OriginID: uint32(i.Origin), Chain: []string{}, ReadOnly: i.ReadOnly, Created: i.Created, Labels: labels,
	}, nil
}

func (a *app) device(p *thinpool.Pool, name string) (*thinpool.Thin, error) {
	return p.Device(name)
}

func parseLabels(specs []string) (map[string]string, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, s := range specs {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return nil, errdefs.Newf(errdefs.ErrInvalidArgument, "bad label %q: want KEY=VALUE", s)
		}
		m[k] = v
	}
	return m, nil
}

// deviceCreateOptions are the argument and flags of 'device create'.
type deviceCreateOptions struct {
	name   string
	size   string
	labels []string // KEY=VALUE
}

func (a *app) newDeviceCreateCmd() *cobra.Command {
	o := &deviceCreateOptions{}
	cmd := &cobra.Command{
		Use:     "create NAME --size SIZE",
		Short:   "Create a thin device (its size may exceed the pool)",
		Example: "  thinctl device create web --size 10G --label role=data",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			return a.runDeviceCreate(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.size, "size", "", "virtual size, e.g. 10G; "+sizeHelp)
	cmd.Flags().StringArrayVar(&o.labels, "label", nil, "KEY=VALUE label (repeatable)")
	return cmd
}

func (a *app) runDeviceCreate(_ context.Context, o *deviceCreateOptions) error {
	if o.size == "" {
		return errdefs.Newf(errdefs.ErrInvalidArgument, "device create needs --size")
	}
	n, err := parseSize(o.size)
	if err != nil {
		return err
	}
	if n <= 0 {
		return errdefs.Newf(errdefs.ErrInvalidArgument, "device size must be more than 0")
	}
	lm, err := parseLabels(o.labels)
	if err != nil {
		return err
	}
	if err := thinpool.ValidateName(o.name); err != nil {
		return err
	}
	return a.withPool(func(p *thinpool.Pool) error {
		t, err := p.CreateThin(o.name, roundUp(n, thinpool.SectorSize), lm)
		if err != nil {
			return err
		}
		a.warnOvercommit(p)
		return a.printDevice(p, t, "Created device %q (%s)")
	})
}

// warnOvercommit prints lvcreate's warning on stderr when the virtual
// sizes of the pool's thin devices add up to more than its data area.
func (a *app) warnOvercommit(p *thinpool.Pool) {
	virtual, data := volumes.Overcommit(p)
	if virtual > data && data > 0 {
		fmt.Fprintf(a.err, "WARNING: Sum of all thin volume sizes (%s) exceeds the size of thin pool %s (%s): overcommitted %.2fx\n",
			formatSize(virtual), a.poolPath, formatSize(data), float64(virtual)/float64(data))
	}
}

// printDevice prints a created device as JSON, as 'device inspect' does, or
// as one line using format (with the name and size).
func (a *app) printDevice(p *thinpool.Pool, t *thinpool.Thin, format string) error {
	v, err := deviceView(p, t)
	if err != nil {
		return err
	}
	v.Chain = chain(byID(p.Devices()), t.Info())
	if a.json {
		devs := []deviceJSON{v}
		a.attachments(devs)
		return a.printJSON(devs[0])
	}
	a.say(format, v.Name, formatSize(v.Size))
	return nil
}

// withDevices opens the pool and calls fn with every device's view.
func (a *app) withDevices(fn func([]deviceJSON) error) error {
	return a.withPool(func(p *thinpool.Pool) error {
		devs, err := a.devices(p)
		if err != nil {
			return err
		}
		return fn(devs)
	})
}

// devices returns every device's view, with snapshot chains and, inside
// the daemon, where each is attached and mounted.
func (a *app) devices(p *thinpool.Pool) ([]deviceJSON, error) {
	devs, err := devices(p)
	if err != nil {
		return nil, err
	}
	a.attachments(devs)
	return devs, nil
}

// attachments sets, inside the daemon, where each of devs is attached and
// mounted.
func (a *app) attachments(devs []deviceJSON) {
	if a.daemon == nil {
		return
	}
	for _, at := range a.daemon.Host().Attachments() {
		for i := range devs {
			if devs[i].ID == at.ID {
				devs[i].Loop, devs[i].MountedAt = at.Loop, at.MountDir
			}
		}
	}
}

// byID maps every device's ID to its info.
func byID(infos []thinpool.DeviceInfo) map[thinpool.DevID]thinpool.DeviceInfo {
	m := make(map[thinpool.DevID]thinpool.DeviceInfo, len(infos))
	for _, d := range infos {
		m[d.ID] = d
	}
	return m
}

// chain lists the origins of the device i, nearest first, from every
// device by ID; [] for a device with no origin.
func chain(devs map[thinpool.DevID]thinpool.DeviceInfo, i thinpool.DeviceInfo) []string {
	c := []string{}
	for o, ok := devs[i.Origin]; ok && len(c) < len(devs); o, ok = devs[o.Origin] {
		c = append(c, o.Name)
	}
	return c
}

// devices returns every device's view, with snapshot chains.
func devices(p *thinpool.Pool) ([]deviceJSON, error) {
	infos := p.Devices()
	all := byID(infos)
	out := make([]deviceJSON, 0, len(infos))
	for _, i := range infos {
		t, err := p.DeviceByID(i.ID)
		if err != nil {
			return nil, err
		}
		v, err := deviceView(p, t)
		if err != nil {
			return nil, err
		}
		v.Chain = chain(all, i)
		out = append(out, v)
	}
	return out, nil
}

// deviceLsOptions are the flags of 'device ls' (none but the global ones).
type deviceLsOptions struct{}

func (a *app) newDeviceLsCmd() *cobra.Command {
	o := &deviceLsOptions{}
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List thin devices",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runDeviceLs(cmd.Context(), o)
		},
	}
}

func (a *app) runDeviceLs(_ context.Context, o *deviceLsOptions) error {
	return a.withDevices(func(devs []deviceJSON) error {
		return a.deviceTable(devs)
	})
}

func (a *app) deviceTable(devs []deviceJSON) error {
	if a.json {
		return a.printJSON(devs)
	}
	if a.quiet {
		for _, d := range devs {
			fmt.Fprintln(a.out, d.Name)
		}
		return nil
	}
	rows := [][]string{{"NAME", "ID", "SIZE", "MAPPED", "EXCLUSIVE", "ORIGIN", "RO", "ATTACHED", "CREATED"}}
	for _, d := range devs {
		origin := d.Origin
		if origin == "" {
			origin = "-"
			if d.OriginID != 0 {
				origin = fmt.Sprintf("(deleted #%d)", d.OriginID)
			}
		}
		ro := "-"
		if d.ReadOnly {
			ro = "ro"
		}
		attached := "-"
		if d.Loop != "" {
			attached = d.Loop
			if d.MountedAt != "" {
				attached += " on " + d.MountedAt
			}
		}
		rows = append(rows, []string{d.Name, fmt.Sprint(d.ID), formatSize(d.Size), formatSize(d.Mapped),
			formatSize(d.Exclusive), origin, ro, attached, tableTime(d.Created)})
	}
	return a.table(rows)
}

// deviceInspectOptions are the argument of 'device inspect'.
type deviceInspectOptions struct {
	name string
}

func (a *app) newDeviceInspectCmd() *cobra.Command {
	o := &deviceInspectOptions{}
	return &cobra.Command{
		Use:               "inspect NAME",
		Short:             "Show everything about a device (JSON)",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeNames("device", 1, cobra.ShellCompDirectiveNoFileComp),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			return a.runDeviceInspect(cmd.Context(), o)
		},
	}
}

func (a *app) runDeviceInspect(_ context.Context, o *deviceInspectOptions) error {
	return a.withDevices(func(devs []deviceJSON) error {
		for _, d := range devs {
			if d.Name == o.name {
				return a.printJSON(d)
			}
		}
		return errdefs.Newf(thinpool.ErrNotFound, "device %q not found", o.name)
	})
}

// deviceRmOptions are the arguments and flags of 'device rm'.
type deviceRmOptions struct {
	names []string
	force bool
}

func (a *app) newDeviceRmCmd() *cobra.Command {
	o := &deviceRmOptions{}
	cmd := &cobra.Command{
		Use:               "rm NAME...",
		Aliases:           []string{"remove", "delete"},
		Short:             "Remove thin devices (their snapshots stay)",
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: a.completeNames("device", -1, cobra.ShellCompDirectiveNoFileComp),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.names = args
			return a.runDeviceRm(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVarP(&o.force, "force", "f", false, "remove even if the device has snapshots")
	return cmd
}

func (a *app) runDeviceRm(_ context.Context, o *deviceRmOptions) error {
	return a.withPool(func(p *thinpool.Pool) error {
		for _, name := range o.names {
			t, err := a.device(p, name)
			if err != nil {
				return err
			}
			if a.daemon != nil {
				if err := a.daemon.Host().Busy(name); err != nil {
					return err
				}
			}
			if !o.force {
				if kids := snapshotsOf(p, t.ID()); len(kids) > 0 {
					return errdefs.Newf(errdefs.ErrFailedPrecondition, "device %q has %d snapshots (%s); use -f to remove it anyway (the snapshots stay)",
						name, len(kids), strings.Join(kids, ", "))
				}
			}
			if err := p.Delete(name); err != nil {
				return err
			}
			a.say("Removed device %q", name)
		}
		return nil
	})
}

func snapshotsOf(p *thinpool.Pool, id thinpool.DevID) []string {
	var kids []string
	for _, i := range p.Devices() {
		if i.Origin == id {
			kids = append(kids, i.Name)
		}
	}
	slices.Sort(kids)
	return kids
}

// deviceResizeOptions are the argument and flags of 'device resize'.
type deviceResizeOptions struct {
	name string
	size string // SIZE or +SIZE
}

func (a *app) newDeviceResizeCmd() *cobra.Command {
	o := &deviceResizeOptions{}
	cmd := &cobra.Command{
		Use:   "resize NAME --size [+]SIZE",
		Short: "Grow a thin device",
		Example: `  thinctl device resize web --size 20G
  thinctl device resize web --size +1G`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeNames("device", 1, cobra.ShellCompDirectiveNoFileComp),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			return a.runDeviceResize(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.size, "size", "", "new virtual size, or +SIZE to grow by SIZE (as lvextend -L +1G); "+sizeHelp)
	return cmd
}

func (a *app) runDeviceResize(_ context.Context, o *deviceResizeOptions) error {
	if o.size == "" {
		return errdefs.Newf(errdefs.ErrInvalidArgument, "device resize needs --size")
	}
	change, err := parseSizeChange(o.size)
	if err != nil {
		return err
	}
	return a.withPool(func(p *thinpool.Pool) error {
		t, err := a.device(p, o.name)
		if err != nil {
			return err
		}
		n, err := change.from(t.Size())
		if err != nil {
			return fmt.Errorf("--size %s: %w", o.size, err)
		}
		n = roundUp(n, thinpool.SectorSize)
		if n < t.Size() {
			return errdefs.Newf(errdefs.ErrInvalidArgument, "device %q is %s: shrinking to %s is not supported", o.name, formatSize(t.Size()), formatSize(n))
		}
		if err := p.Resize(o.name, n); err != nil {
			return err
		}
		a.warnOvercommit(p)
		if a.daemon != nil {
			if err := a.daemon.Host().Resized(o.name); err != nil {
				return fmt.Errorf("resized %q, but the attached loop device did not follow: %w", o.name, err)
			}
		}
		return a.printDevice(p, t, "Resized device %q to %s")
	})
}

// deviceRenameOptions are the arguments of 'device rename'.
type deviceRenameOptions struct {
	name, newName string
}

func (a *app) newDeviceRenameCmd() *cobra.Command {
	o := &deviceRenameOptions{}
	return &cobra.Command{
		Use:               "rename OLD NEW",
		Short:             "Rename a thin device",
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: a.completeNames("device", 1, cobra.ShellCompDirectiveNoFileComp),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name, o.newName = args[0], args[1]
			return a.runDeviceRename(cmd.Context(), o)
		},
	}
}

func (a *app) runDeviceRename(_ context.Context, o *deviceRenameOptions) error {
	if err := thinpool.ValidateName(o.newName); err != nil {
		return err
	}
	return a.withPool(func(p *thinpool.Pool) error {
		if _, err := a.device(p, o.name); err != nil {
			return err
		}
		if err := p.Rename(o.name, o.newName); err != nil {
			return err
		}
		a.say("Renamed device %q to %q", o.name, o.newName)
		return nil
	})
}
