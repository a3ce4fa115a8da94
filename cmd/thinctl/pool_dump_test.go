package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/thinpool/thinpool/thinpool"
	"github.com/thinpool/thinpool/thinpool/thinxml"
)

// dumpCLI runs thinctl in-process with --pool pool.
func dumpCLI(t *testing.T, pool string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(append([]string{"--pool", pool}, args...), strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), code
}

// dumpMustCLI runs thinctl and fails the test unless it exits 0.
func dumpMustCLI(t *testing.T, pool string, args ...string) string {
	t.Helper()
	out, errOut, code := dumpCLI(t, pool, args...)
	if code != 0 {
		t.Fatalf("thinctl %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// dumpWithPool opens the pool file directly, runs fn and closes it.
func dumpWithPool(t *testing.T, path string, fn func(p *thinpool.Pool)) {
	t.Helper()
	p, err := thinpool.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	fn(p)
	if err := p.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func dumpWriteAt(t *testing.T, p *thinpool.Pool, name string, off int64, b []byte) {
	t.Helper()
	d, err := p.Device(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(b, off); err != nil {
		t.Fatalf("write %s at %d: %v", name, off, err)
	}
}

func dumpRandBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// dumpTestPool builds a pool with plain devices, snapshots sharing some
// blocks and diverging on others, an empty device, an id gap, labels and a
// read-only snapshot.
func dumpTestPool(t *testing.T) string {
	t.Helper()
	pool := filepath.Join(t.TempDir(), "pool.img")
	const bs = 64 << 10
	dumpMustCLI(t, pool, "pool", "create", "--size", "64M")
	dumpMustCLI(t, pool, "device", "create", "web", "--size", "4M", "--label", "role=data", "--label", "odd,key=a=b")
	dumpMustCLI(t, pool, "device", "create", "tmp", "--size", "1M")
	dumpMustCLI(t, pool, "device", "create", "db", "--size", "2M")
	dumpMustCLI(t, pool, "device", "rm", "tmp")
	dumpMustCLI(t, pool, "device", "create", "empty", "--size", "1M")
	r := rand.New(rand.NewPCG(1, 2))
	dumpWithPool(t, pool, func(p *thinpool.Pool) {
		dumpWriteAt(t, p, "web", 0, dumpRandBytes(r, 10*bs))        // blocks 0-9
		dumpWriteAt(t, p, "web", 20*bs+100, dumpRandBytes(r, 5000)) // block 20, partly
		dumpWriteAt(t, p, "db", 3*bs, dumpRandBytes(r, bs))
		dumpWriteAt(t, p, "db", 30*bs, dumpRandBytes(r, 2*bs-512)) // last two blocks
		dumpWriteAt(t, p, "db", 7*bs, dumpRandBytes(r, 3*bs))
	})
	dumpMustCLI(t, pool, "snapshot", "create", "web", "web-ro", "--readonly")
	dumpMustCLI(t, pool, "snapshot", "create", "web", "web-rw")
	dumpWithPool(t, pool, func(p *thinpool.Pool) {
		dumpWriteAt(t, p, "web", 3*bs, dumpRandBytes(r, bs))        // web diverges at block 3
		dumpWriteAt(t, p, "web-rw", 5*bs+7, dumpRandBytes(r, 1000)) // web-rw at block 5
		dumpWriteAt(t, p, "web-rw", 40*bs, dumpRandBytes(r, bs))    // and gets a block of its own
	})
	return pool
}

// dumpDeviceBytes reads whole devices, by name.
func dumpDeviceBytes(t *testing.T, pool string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	dumpWithPool(t, pool, func(p *thinpool.Pool) {
		for _, i := range p.Devices() {
			d, err := p.Device(i.Name)
			if err != nil {
				t.Fatal(err)
			}
			b := make([]byte, d.Size())
			if _, err := d.ReadAt(b, 0); err != nil {
				t.Fatalf("read %s: %v", i.Name, err)
			}
			out[i.Name] = b
		}
	})
	return out
}

func dumpDecode(t *testing.T, doc string) *thinxml.Superblock {
	t.Helper()
	sb, err := thinxml.Decode(strings.NewReader(doc))
	if err != nil {
		t.Fatalf("decode: %v\n%s", err, doc)
	}
	return sb
}

// plain drops what thin_dump does not write, as thin_restore 0.9 does.
func dumpPlain(sb *thinxml.Superblock) *thinxml.Superblock {
	c := *sb
	c.UUID = ""
	c.Devices = slices.Clone(sb.Devices)
	for i := range c.Devices {
		d := c.Devices[i]
		c.Devices[i] = thinxml.Device{DevID: d.DevID, Transaction: d.Transaction, CreationTime: d.CreationTime, SnapTime: d.SnapTime, Mappings: d.Mappings}
	}
	return &c
}

func dumpEncode(t *testing.T, sb *thinxml.Superblock) string {
	t.Helper()
	var b bytes.Buffer
	if err := thinxml.Encode(&b, sb); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestPoolDump checks that the dump holds every device's mappings and
// attributes, and that times mark exactly the shared blocks.
func TestPoolDump(t *testing.T) {
	pool := dumpTestPool(t)
	doc := dumpMustCLI(t, pool, "pool", "dump")
	sb := dumpDecode(t, doc)

	dumpWithPool(t, pool, func(p *thinpool.Pool) {
		u := p.Usage()
		if sb.DataBlockSize != 128 || sb.NrDataBlocks != u.DataBlocks || sb.Transaction != u.TransactionID || sb.Time != 1 || sb.Version != 2 {
			t.Fatalf("superblock %+v, usage %+v", sb, u)
		}
		infos := p.Devices()
		if len(sb.Devices) != len(infos) {
			t.Fatalf("%d devices dumped, pool has %d", len(sb.Devices), len(infos))
		}
		refs := map[uint64]int{}
		for i, info := range infos {
			d := sb.Devices[i]
			want, err := p.Mappings(info.Name)
			if err != nil {
				t.Fatal(err)
			}
			if got := thinxml.Extents(d.Mappings); !reflect.DeepEqual(got, want) && len(want)+len(got) > 0 {
				t.Errorf("%s: dumped %v, pool has %v", info.Name, got, want)
			}
			if d.DevID != uint32(info.ID) || d.Name != info.Name || int64(d.Size) != info.Size || d.Origin != uint32(info.Origin) ||
				d.ReadOnly != info.ReadOnly || !d.Created.Equal(info.Created) || !reflect.DeepEqual(d.Labels, info.Labels) {
				t.Errorf("device %+v, pool has %+v", d, info)
			}
			if d.SnapTime != 1 {
				t.Errorf("%s: snap_time %d", info.Name, d.SnapTime)
			}
			for _, m := range want {
				for b := uint64(m.P); b < uint64(m.PEnd()); b++ {
					refs[b]++
				}
			}
		}
		shared := 0
		for _, d := range sb.Devices {
			for _, m := range d.Mappings {
				for b := m.DataBegin; b < m.DataBegin+m.Length; b++ {
					if isShared := refs[b] > 1; isShared != (m.Time == 0) {
						t.Errorf("device %d block %d: time %d, %d references", d.DevID, b, m.Time, refs[b])
					}
					if m.Time == 0 {
						shared++
					}
				}
			}
		}
		if shared == 0 {
			t.Fatalf("no shared blocks: the test pool is too simple")
		}
	})

	// -o writes the same document; --plain drops our attributes.
	file := filepath.Join(t.TempDir(), "dump.xml")
	if out := dumpMustCLI(t, pool, "pool", "dump", "-o", file); !strings.Contains(out, "Wrote 5 devices") {
		t.Errorf("dump -o said %q", out)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != doc {
		t.Fatalf("dump -o wrote %q (%v), stdout had %q", b, err, doc)
	}
	p := dumpMustCLI(t, pool, "pool", "dump", "--plain")
	want := dumpPlain(sb)
	want.UUID = sb.UUID
	if got := dumpEncode(t, want); p != got {
		t.Fatalf("--plain wrote\n%s\nwant\n%s", p, got)
	}
	if strings.Contains(p, "name=") {
		t.Fatalf("--plain wrote names:\n%s", p)
	}
}

func dumpToolsOrSkip(t *testing.T) {
	t.Helper()
	for _, n := range []string{"thin_restore", "thin_check", "thin_dump", "thin_ls"} {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s not installed: apt-get install thin-provisioning-tools (CI installs it)", n)
		}
	}
}

func dumpRunTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s %s: %v: %s%s", name, strings.Join(args, " "), err, out, stderr)
	}
	return string(out)
}

// dumpThinRestore runs thin_restore into a new sparse 16 MiB metadata file
// (thin_restore needs an existing file large enough: "Output file too
// small") and checks the result with thin_check.
func dumpThinRestore(t *testing.T, xmlPath string) string {
	t.Helper()
	meta := filepath.Join(t.TempDir(), "meta.bin")
	if err := os.WriteFile(meta, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(meta, 16<<20); err != nil {
		t.Fatal(err)
	}
	dumpRunTool(t, "thin_restore", "-i", xmlPath, "-o", meta)
	dumpRunTool(t, "thin_check", meta)
	return meta
}

func dumpDataOffset(t *testing.T, pool string) string {
	t.Helper()
	var info poolInfo
	if err := json.Unmarshal([]byte(dumpMustCLI(t, pool, "--json", "pool", "info")), &info); err != nil {
		t.Fatal(err)
	}
	return strconv.FormatInt(info.DataOffset, 10)
}

// TestPoolDumpThinTools feeds our dump to thin-provisioning-tools: the
// metadata thin_restore builds passes thin_check, thin_ls counts the same
// mapped, exclusive and shared blocks per device, and thin_dump writes back
// byte for byte our dump without thinpool's attributes. Then the thin_dump
// output, restored with the original pool file as the data device, gives a
// clean pool whose devices read back identical.
func TestPoolDumpThinTools(t *testing.T) {
	dumpToolsOrSkip(t)
	pool := dumpTestPool(t)
	dir := t.TempDir()
	dump := filepath.Join(dir, "dump.xml")
	dumpMustCLI(t, pool, "pool", "dump", "-o", dump)
	b, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	sb := dumpDecode(t, string(b))
	meta := dumpThinRestore(t, dump) // extra attributes are accepted

	// thin_ls: DEV MAPPED_BLOCKS EXCLUSIVE_BLOCKS SHARED_BLOCKS
	ls := dumpRunTool(t, "thin_ls", "--no-headers", "-o", "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS", meta)
	var want strings.Builder
	dumpWithPool(t, pool, func(p *thinpool.Pool) {
		for _, i := range p.Devices() {
			d, err := p.DeviceByID(i.ID)
			if err != nil {
				t.Fatal(err)
			}
			u, err := d.Usage()
			if err != nil {
				t.Fatal(err)
			}
			want.WriteString(strings.Join([]string{strconv.Itoa(int(i.ID)), strconv.FormatUint(u.Mapped, 10),
				strconv.FormatUint(u.Exclusive, 10), strconv.FormatUint(u.Shared, 10)}, " ") + "\n")
		}
	})
	if got := dumpNormalizeSpace(ls); got != want.String() {
		t.Errorf("thin_ls:\n%s\nwant (id mapped exclusive shared):\n%s", got, want.String())
	}

	// thin_dump writes what we wrote, less our attributes and the uuid.
	td := dumpRunTool(t, "thin_dump", meta)
	if wantDoc := dumpEncode(t, dumpPlain(sb)); td != wantDoc {
		t.Fatalf("thin_dump wrote\n%s\nwant\n%s", td, wantDoc)
	}
	if got := dumpPlain(dumpDecode(t, td)); !reflect.DeepEqual(got, dumpPlain(sb)) {
		t.Fatalf("thin_dump decodes to %+v, want %+v", got, dumpPlain(sb))
	}

	// thin_dump output -> pool restore, data from the original pool file.
	tdPath := filepath.Join(dir, "thin_dump.xml")
	if err := os.WriteFile(tdPath, []byte(td), 0o600); err != nil {
		t.Fatal(err)
	}
	restored := filepath.Join(dir, "restored.img")
	out := dumpMustCLI(t, restored, "pool", "restore", tdPath, "--data", pool, "--data-offset", dumpDataOffset(t, pool))
	if !strings.Contains(out, "Restored pool") {
		t.Errorf("restore said %q", out)
	}
	dumpMustCLI(t, restored, "pool", "check")
	orig, got := dumpDeviceBytes(t, pool), dumpDeviceBytes(t, restored)
	const bs = 64 << 10
	for _, d := range sb.Devices {
		name := "dev-" + strconv.Itoa(int(d.DevID))
		b, ok := got[name]
		if !ok {
			t.Fatalf("restored pool has no %s: %v", name, dumpKeys(got))
		}
		var end uint64
		if n := len(d.Mappings); n > 0 {
			end = d.Mappings[n-1].OriginBegin + d.Mappings[n-1].Length
		}
		if wantSize := max(int(end)*bs, bs); len(b) != wantSize {
			t.Errorf("%s: size %d, want %d (highest mapped block + 1)", name, len(b), wantSize)
		}
		o := orig[d.Name]
		n := min(len(o), len(b))
		if !bytes.Equal(o[:n], b[:n]) || !dumpAllZero(o[n:]) || !dumpAllZero(b[n:]) {
			t.Errorf("%s (%s) reads back different data", name, d.Name)
		}
	}
	// The restored pool dumps to the same metadata.
	again := dumpPlain(dumpDecode(t, dumpMustCLI(t, restored, "pool", "dump")))
	again.Transaction = sb.Transaction
	if !reflect.DeepEqual(again, dumpPlain(sb)) {
		t.Fatalf("restored pool dumps as %+v, want %+v", again, dumpPlain(sb))
	}
}

func dumpNormalizeSpace(s string) string {
	var b strings.Builder
	for l := range strings.Lines(s) {
		b.WriteString(strings.Join(strings.Fields(l), " ") + "\n")
	}
	return b.String()
}

func dumpKeys(m map[string][]byte) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}

func dumpAllZero(b []byte) bool { return bytes.Count(b, []byte{0}) == len(b) }

// TestPoolDumpRestoreRoundTrip restores our own dump: names, sizes, origins,
// read-only flags, creation times, labels and every byte come back.
func TestPoolDumpRestoreRoundTrip(t *testing.T) {
	pool := dumpTestPool(t)
	dir := t.TempDir()
	dump := filepath.Join(dir, "dump.xml")
	dumpMustCLI(t, pool, "pool", "dump", "-o", dump)
	restored := filepath.Join(dir, "restored.img")
	dumpMustCLI(t, restored, "pool", "restore", dump, "--data", pool, "--data-offset", dumpDataOffset(t, pool), "--size", "128M")
	dumpMustCLI(t, restored, "pool", "check")

	var before, after []thinpool.DeviceInfo
	dumpWithPool(t, pool, func(p *thinpool.Pool) { before = p.Devices() })
	dumpWithPool(t, restored, func(p *thinpool.Pool) {
		after = p.Devices()
		if u := p.Usage(); int64(u.DataBlocks)*u.BlockSize != 128<<20 {
			t.Errorf("restored data area %d blocks of %d, want 128M (--size)", u.DataBlocks, u.BlockSize)
		}
	})
	for i := range before {
		if !before[i].Created.Equal(after[i].Created) {
			t.Errorf("%s: created %v, was %v", before[i].Name, after[i].Created, before[i].Created)
		}
		after[i].Created = before[i].Created
	}
	if !reflect.DeepEqual(after, before) {
		t.Fatalf("restored devices\n%+v\nwant\n%+v", after, before)
	}
	if got, want := dumpDeviceBytes(t, restored), dumpDeviceBytes(t, pool); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored devices read back different data")
	}
	// Without --data the devices exist and read zeros.
	zero := filepath.Join(dir, "zero.img")
	if out := dumpMustCLI(t, zero, "pool", "restore", dump); !strings.Contains(out, "devices read zeros") {
		t.Errorf("restore without --data said %q", out)
	}
	for name, b := range dumpDeviceBytes(t, zero) {
		if !dumpAllZero(b) {
			t.Errorf("%s is not zero", name)
		}
	}
	// --device-size sets the size of devices the dump gives none.
	sized := filepath.Join(dir, "sized.img")
	dumpMustCLI(t, pool, "pool", "dump", "--plain", "-o", dump)
	dumpMustCLI(t, sized, "pool", "restore", dump, "--device-size", "5M")
	dumpWithPool(t, sized, func(p *thinpool.Pool) {
		for _, i := range p.Devices() {
			if i.Size != 5<<20 || !strings.HasPrefix(i.Name, "dev-") {
				t.Errorf("device %s of %d bytes, want dev-N of 5 MiB", i.Name, i.Size)
			}
		}
	})
}

func TestPoolRestoreErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, doc string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const head = `<superblock uuid="" time="0" transaction="0" flags="0" version="2" data_block_size="128" nr_data_blocks="100">
  <device dev_id="1" mapped_blocks="1" transaction="0" creation_time="0" snap_time="0">
`
	good := write("good.xml", head+`    <single_mapping origin_block="5" data_block="99" time="0"/>
  </device>
</superblock>
`)
	malformed := write("malformed.xml", "<superblock uuid=\"\"\n")
	beyond := write("beyond.xml", head+`    <single_mapping origin_block="0" data_block="150" time="0"/>
  </device>
</superblock>
`)
	missing := write("missing.xml", head+`    <single_mapping origin_block="0" data_block="1"/>
  </device>
</superblock>
`)
	dupName := write("dup.xml", `<superblock uuid="" time="0" transaction="0" data_block_size="128" nr_data_blocks="100">
  <device dev_id="1" mapped_blocks="0" transaction="0" creation_time="0" snap_time="0" name="a"></device>
  <device dev_id="2" mapped_blocks="0" transaction="0" creation_time="0" snap_time="0" name="a"></device>
</superblock>
`)
	short := write("short.img", "tiny")
	existing := filepath.Join(dir, "existing.img")
	dumpMustCLI(t, existing, "pool", "create", "--size", "16M")
	sum := func() string { // the pool file is sparse and large: hash its head, where the metadata is
		f, err := os.Open(existing)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		if _, err := io.CopyN(h, f, 16<<20); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%x %d %v", h.Sum(nil), fi.Size(), fi.ModTime())
	}
	before := sum()

	tests := []struct {
		name string
		pool string // default: a path in a directory that does not exist
		args []string
		want string
	}{
		{"existing pool", existing, []string{good}, "pool " + existing + " already exists"},
		{"malformed", "", []string{malformed}, malformed + ":2: XML syntax error: unexpected EOF"},
		{"beyond data", "", []string{beyond}, beyond + ":3: mapping beyond end of data device (150 >= 100)"},
		{"missing attribute", "", []string{missing}, missing + `:3: <single_mapping> is missing attribute "time"`},
		{"no such file", "", []string{filepath.Join(dir, "nope.xml")}, "no such file"},
		{"duplicate name", "", []string{dupName}, `duplicate name`},
		{"data too short", "", []string{good, "--data", short}, "but the dump maps data blocks up to 99"},
		{"offset without data", "", []string{good, "--data-offset", "4096"}, "--data-offset needs --data"},
		{"size too small", "", []string{good, "--size", "1M"}, "--size 1.0 MiB is smaller than the dump's data device (6.3 MiB)"},
		{"device size too small", "", []string{good, "--device-size", "64K"}, "device dev-1: --device-size 64 KiB is smaller than its mapped blocks need (384 KiB)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pool := tc.pool
			if pool == "" {
				pool = filepath.Join(t.TempDir(), "sub", "pool.img")
			}
			out, errOut, code := dumpCLI(t, pool, append([]string{"pool", "restore"}, tc.args...)...)
			if code == 0 {
				t.Fatalf("exit 0; stdout %q", out)
			}
			if out != "" {
				t.Errorf("stdout %q", out)
			}
			if !strings.HasPrefix(errOut, "thinctl: ") || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q, want one line with %q", errOut, tc.want)
			}
			if tc.pool == "" {
				made := pool
				if tc.name != "duplicate name" { // fails in thinpool.Restore, after the directory is made
					made = filepath.Dir(pool)
				}
				if _, err := os.Stat(made); err == nil {
					t.Errorf("%s was created", made)
				}
			}
		})
	}
	if sum() != before {
		t.Fatalf("the existing pool was changed")
	}
	dumpMustCLI(t, existing, "pool", "check")
}
