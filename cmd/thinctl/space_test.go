package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thinpool/thinpool/thinpool"
	"github.com/thinpool/thinpool/volumes"
)

// TestOvercommitWarning: creating a device or snapshot that makes the
// devices' virtual sizes exceed the pool prints lvcreate's warning, one
// line on stderr with the ratio; below it, nothing.
func TestOvercommitWarning(t *testing.T) {
	pool := newPool(t, "1G")
	steps := []struct {
		args []string
		want string // "" means no warning
	}{
		{[]string{"device", "create", "a", "--size", "512M"}, ""},
		{[]string{"device", "create", "b", "--size", "512M"}, ""}, // exactly the pool: not over
		{[]string{"device", "create", "c", "--size", "512M"}, "WARNING: Sum of all thin volume sizes (1.5 GiB) exceeds the size of thin pool " + pool + " (1.0 GiB): overcommitted 1.50x\n"},
		{[]string{"snapshot", "create", "a", "a-snap"}, "WARNING: Sum of all thin volume sizes (2.0 GiB) exceeds the size of thin pool " + pool + " (1.0 GiB): overcommitted 2.00x\n"},
		{[]string{"device", "resize", "c", "--size", "+1G"}, "WARNING: Sum of all thin volume sizes (3.0 GiB) exceeds the size of thin pool " + pool + " (1.0 GiB): overcommitted 3.00x\n"},
		{[]string{"pool", "grow", "--size", "4G"}, ""},
		{[]string{"device", "create", "d", "--size", "1M"}, ""},
	}
	for _, s := range steps {
		out, errOut, code := thinctl(t, pool, s.args...)
		if code != 0 {
			t.Fatalf("thinctl %s: exit %d: %s", strings.Join(s.args, " "), code, errOut)
		}
		if errOut != s.want {
			t.Fatalf("thinctl %s: stderr %q, want %q (stdout %q)", strings.Join(s.args, " "), errOut, s.want, out)
		}
	}
}

// TestPoolInfoSpaceWarning: pool info and info show a warning line and a
// JSON warning when data use is above 80%, and none below.
func TestPoolInfoSpaceWarning(t *testing.T) {
	pool := newPool(t, "1M") // 16 blocks
	p, err := thinpool.Open(pool)
	if err != nil {
		t.Fatal(err)
	}
	d, err := p.CreateThin("a", 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(make([]byte, 12*64<<10), 0); err != nil { // 75%
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if out := mustRun(t, pool, "pool", "info"); strings.Contains(out, "WARNING") {
		t.Fatalf("warning at 75%%:\n%s", out)
	}
	if i := poolInfoJSON(t, pool); len(i.Warnings) != 0 {
		t.Fatalf("warnings at 75%%: %q", i.Warnings)
	}
	p, err = thinpool.Open(pool)
	if err != nil {
		t.Fatal(err)
	}
	d, err = p.Device("a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(make([]byte, 2*64<<10), 12*64<<10); err != nil { // 87.5%
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	const want = "WARNING: data space is 88% used: grow the pool with 'thinctl pool grow --size N'"
	for _, cmd := range [][]string{{"pool", "info"}, {"info"}} {
		if out := mustRun(t, pool, cmd...); !strings.Contains(out, want+"\n") {
			t.Errorf("thinctl %s lacks %q:\n%s", strings.Join(cmd, " "), want, out)
		}
	}
	if i := poolInfoJSON(t, pool); len(i.Warnings) != 1 || i.Warnings[0] != strings.TrimPrefix(want, "WARNING: ") {
		t.Fatalf("pool info --json warnings %q", i.Warnings)
	}
	var info infoJSON
	if err := json.Unmarshal([]byte(mustRun(t, pool, "--json", "info")), &info); err != nil || len(info.Pool.Warnings) != 1 {
		t.Fatalf("info --json: %+v %v", info.Pool, err)
	}
}

// TestAutoextendSettings: the autoextend policy is set at creation or
// later, kept in the pool's own metadata, shown by pool info, and bad
// values are refused without changing anything.
func TestAutoextendSettings(t *testing.T) {
	pool := filepath.Join(t.TempDir(), "pool.img")
	mustRun(t, pool, "pool", "create", "--size", "1G", "--autoextend-threshold", "80", "--autoextend-percent", "25")
	if i := poolInfoJSON(t, pool); i.Autoextend != (autoextendJSON{Threshold: 80, Percent: 25}) {
		t.Fatalf("after create: autoextend %+v", i.Autoextend)
	}
	if out := mustRun(t, pool, "pool", "info"); !strings.Contains(out, "Autoextend:               by 25% when 80% full") {
		t.Fatalf("pool info:\n%s", out)
	}
	// In the pool's metadata, as the labels of the configuration device.
	p, err := thinpool.Open(pool)
	if err != nil {
		t.Fatal(err)
	}
	ae, err := volumes.ReadAutoextend(p)
	if err != nil || ae != (volumes.Autoextend{Threshold: 80, Percent: 25}) {
		t.Fatalf("ReadAutoextend: %+v %v", ae, err)
	}
	cfg, err := p.Device("thinpool.config")
	if err != nil {
		t.Fatal(err)
	}
	if l := cfg.Info().Labels; l["thinpool.role"] != "config" || l["autoextend.threshold"] != "80" || l["autoextend.percent"] != "25" {
		t.Fatalf("config device labels %v", l)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	mustRun(t, pool, "pool", "set", "--autoextend-threshold", "90")
	if i := poolInfoJSON(t, pool); i.Autoextend != (autoextendJSON{Threshold: 90, Percent: 25}) {
		t.Fatalf("after set: autoextend %+v", i.Autoextend)
	}
	// The config device is no thin volume of the user's: not overcommit.
	if _, errOut, _ := thinctl(t, pool, "device", "create", "x", "--size", "1G"); errOut != "" {
		t.Fatalf("device create of the pool's size: %q", errOut)
	}

	before := poolInfoJSON(t, pool)
	missing := filepath.Join(t.TempDir(), "none.img")
	bad := []struct {
		pool string
		args []string
		want string
	}{
		{pool, []string{"pool", "set"}, "pool set needs --autoextend-threshold or --autoextend-percent"},
		{pool, []string{"pool", "set", "--autoextend-threshold", "30"}, "autoextend threshold 30%: want 50 to 100"},
		{pool, []string{"pool", "set", "--autoextend-threshold", "101"}, "autoextend threshold 101%: want 50 to 100"},
		{pool, []string{"pool", "set", "--autoextend-percent", "0"}, "needs a percent to grow by"},
		{pool, []string{"pool", "set", "--autoextend-percent", "-5"}, "autoextend percent -5%"},
		{pool, []string{"pool", "set", "--autoextend-threshold", "lots"}, `invalid argument "lots" for "--autoextend-threshold"`},
		{missing, []string{"pool", "create", "--autoextend-threshold", "20"}, "autoextend threshold 20%"},
	}
	for _, tc := range bad {
		out, errOut, code := thinctl(t, tc.pool, tc.args...)
		if code == 0 || !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("thinctl %s: exit %d, stderr %q, out %q; want one line with %q", strings.Join(tc.args, " "), code, errOut, out, tc.want)
		}
	}
	if after := poolInfoJSON(t, pool); after.Autoextend != before.Autoextend || after.TransactionID != before.TransactionID {
		t.Fatalf("refused commands changed the pool: %+v, was %+v", after, before)
	}
	if _, err := thinpool.Open(missing); err == nil {
		t.Fatalf("a refused pool create made %s", missing)
	}
	mustRun(t, pool, "pool", "set", "--autoextend-threshold", "0")
	if out := mustRun(t, pool, "pool", "info"); !strings.Contains(out, "Autoextend:               off") {
		t.Fatalf("after turning it off:\n%s", out)
	}
}
