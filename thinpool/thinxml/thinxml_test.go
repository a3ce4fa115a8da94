package thinxml

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// golden is the XML that thin_dump 0.9.0 writes (MEASURED.md).
const golden = `<superblock uuid="" time="1" transaction="2" flags="0" version="2" data_block_size="128" nr_data_blocks="16384">
  <device dev_id="1" mapped_blocks="4" transaction="0" creation_time="0" snap_time="1">
    <range_mapping origin_begin="0" data_begin="0" length="3" time="0"/>
    <single_mapping origin_block="100" data_block="3" time="1"/>
  </device>
</superblock>
`

var goldenSB = &Superblock{
	Time: 1, Transaction: 2, Version: 2, DataBlockSize: 128, NrDataBlocks: 16384,
	Devices: []Device{{DevID: 1, SnapTime: 1, Mappings: []Mapping{
		{OriginBegin: 0, DataBegin: 0, Length: 3, Time: 0},
		{OriginBegin: 100, DataBegin: 3, Length: 1, Time: 1},
	}}},
}

func encode(t testing.TB, sb *Superblock) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Encode(&buf, sb); err != nil {
		t.Fatalf("encode: %v", err)
	}
	return buf.Bytes()
}

func TestGolden(t *testing.T) {
	sb, err := Decode(strings.NewReader(golden))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if !reflect.DeepEqual(sb, goldenSB) {
		t.Fatalf("decode:\n got %+v\nwant %+v", sb, goldenSB)
	}
	if got := encode(t, goldenSB); string(got) != golden {
		t.Fatalf("encode:\n%s\nwant:\n%s", got, golden)
	}
}

// extrasSB uses every attribute thinpool adds, with awkward values.
func extrasSB() *Superblock {
	return &Superblock{
		UUID: "0b2f-\"<&>'", Time: 7, Transaction: 1 << 40, Flags: 1, Version: 2,
		DataBlockSize: 2048, NrDataBlocks: 1000, MetadataSnap: 17,
		Devices: []Device{
			{DevID: 1, Transaction: 3, CreationTime: 2, SnapTime: 5,
				Name: `web"<&>'`, Size: 10 << 30, Created: time.Unix(1700000000, 123456789).UTC(),
				Labels: map[string]string{
					"role": "data", "a,b=c": "x=y,z", "pct%": "100% + more", "ctl": "\x00\x01\n\t", "bad": "\xff\xfe", "ü": "日本",
				},
				Mappings: []Mapping{{0, 10, 5, 1}, {5, 999, 1, 2}, {1 << 50, 0, 1, 0}}},
			{DevID: 2, Name: "snap", Size: 512, Origin: 1, ReadOnly: true},
			{DevID: MaxDevID},
		},
	}
}

func TestExtrasRoundTrip(t *testing.T) {
	want := extrasSB()
	b := encode(t, want)
	got, err := Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("decode: %v\n%s", err, b)
	}
	if !got.Devices[0].Created.Equal(want.Devices[0].Created) {
		t.Fatalf("created %v, want %v", got.Devices[0].Created, want.Devices[0].Created)
	}
	got.Devices[0].Created = want.Devices[0].Created
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v\n%s", got, want, b)
	}
	if b2 := encode(t, got); !bytes.Equal(b, b2) {
		t.Fatalf("re-encode differs:\n%s\n%s", b, b2)
	}
}

func TestDecodeTolerates(t *testing.T) {
	const doc = `<?xml version="1.0" encoding="UTF-8"?>
<!-- written by thin_dump 1.x -->
<superblock uuid="u" time="3" transaction="9" data_block_size="256" nr_data_blocks="100" metadata_snap="5" future="x">
  <def name="shared-1">
    <range_mapping origin_begin="10" data_begin="20" length="4" time="1"/>
    <single_mapping origin_block="30" data_block="40" time="2"/>
  </def>
  <device dev_id="7" mapped_blocks="999" transaction="1" creation_time="2" snap_time="3" color="blue">
    <single_mapping origin_block="0" data_block="0" time="0"></single_mapping>
    <ref name="shared-1"/>
    <range_mapping origin_begin="31" data_begin="50" length="2" time="3" extra="1"/>
  </device>
  <device dev_id="8" mapped_blocks="5" transaction="1" creation_time="3" snap_time="3">
    <ref name="shared-1"/>
  </device>
</superblock>
<!-- end -->
`
	sb, err := Decode(strings.NewReader(doc))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	want := &Superblock{UUID: "u", Time: 3, Transaction: 9, Version: 2, DataBlockSize: 256, NrDataBlocks: 100, MetadataSnap: 5,
		Devices: []Device{
			{DevID: 7, Transaction: 1, CreationTime: 2, SnapTime: 3, Mappings: []Mapping{{0, 0, 1, 0}, {10, 20, 4, 1}, {30, 40, 1, 2}, {31, 50, 2, 3}}},
			{DevID: 8, Transaction: 1, CreationTime: 3, SnapTime: 3, Mappings: []Mapping{{10, 20, 4, 1}, {30, 40, 1, 2}}},
		}}
	if !reflect.DeepEqual(sb, want) {
		t.Fatalf("decode:\n got %+v\nwant %+v", sb, want)
	}
	if n := sb.Devices[0].MappedBlocks(); n != 8 {
		t.Fatalf("mapped blocks %d, want 8", n)
	}
}

func TestDecodeErrors(t *testing.T) {
	const sbOpen = `<superblock uuid="" time="0" transaction="0" flags="0" version="2" data_block_size="128" nr_data_blocks="100">` + "\n"
	const devOpen = `<device dev_id="1" mapped_blocks="0" transaction="0" creation_time="0" snap_time="0">` + "\n"
	dev := func(body string) string { return sbOpen + devOpen + body + "\n</device>\n</superblock>\n" }
	tests := []struct {
		name, doc, want string
		line            int
	}{
		{"empty", "", "does not start with <superblock>", 0},
		{"not xml", "hello", "unexpected text", 0},
		{"wrong root", `<metadata/>`, "does not start with <superblock>", 1},
		{"unclosed", sbOpen, "unexpected EOF", 0},
		{"syntax", sbOpen + "<device", "XML syntax error", 0},
		{"mismatched end", sbOpen + devOpen + "</superblock>", "XML syntax error", 0},
		{"missing uuid", `<superblock time="0" transaction="0" data_block_size="128" nr_data_blocks="1"></superblock>`, `missing attribute "uuid"`, 1},
		{"missing nr_data_blocks", `<superblock uuid="" time="0" transaction="0" data_block_size="128"></superblock>`, `missing attribute "nr_data_blocks"`, 1},
		{"bad number", `<superblock uuid="" time="x" transaction="0" data_block_size="128" nr_data_blocks="1"></superblock>`, `time="x" is not a number`, 1},
		{"negative", `<superblock uuid="" time="-1" transaction="0" data_block_size="128" nr_data_blocks="1"></superblock>`, `is not a number`, 1},
		{"too big", `<superblock uuid="" time="4294967296" transaction="0" data_block_size="128" nr_data_blocks="1"></superblock>`, `is not a number from 0 to 4294967295`, 1},
		{"block size not power of two", `<superblock uuid="" time="0" transaction="0" data_block_size="192" nr_data_blocks="1"></superblock>`, "data_block_size 192 is not a power of two from 128 to 2097152 sectors", 1},
		{"block size too small", `<superblock uuid="" time="0" transaction="0" data_block_size="64" nr_data_blocks="1"></superblock>`, "data_block_size 64", 1},
		{"no data blocks", `<superblock uuid="" time="0" transaction="0" data_block_size="128" nr_data_blocks="0"></superblock>`, "nr_data_blocks is 0", 1},
		{"device missing attr", sbOpen + `<device dev_id="1" mapped_blocks="0" transaction="0" creation_time="0"></device></superblock>`, `<device> is missing attribute "snap_time"`, 2},
		{"mapping missing time", dev(`<single_mapping origin_block="0" data_block="1"/>`), `<single_mapping> is missing attribute "time"`, 3},
		{"range missing length", dev(`<range_mapping origin_begin="0" data_begin="1" time="0"/>`), `<range_mapping> is missing attribute "length"`, 3},
		{"beyond data single", dev(`<single_mapping origin_block="0" data_block="150" time="0"/>`), "mapping beyond end of data device (150 >= 100)", 3},
		{"beyond data range", dev(`<range_mapping origin_begin="0" data_begin="98" length="3" time="0"/>`), "mapping beyond end of data device (100 >= 100)", 3},
		{"data wraps", dev(`<range_mapping origin_begin="0" data_begin="18446744073709551615" length="3" time="0"/>`), "mapping beyond end of data device (18446744073709551615 >= 100)", 3},
		{"origin wraps", dev(`<range_mapping origin_begin="18446744073709551615" data_begin="0" length="3" time="0"/>`), "wraps around", 3},
		{"zero length", dev(`<range_mapping origin_begin="0" data_begin="0" length="0" time="0"/>`), "mapping of length 0", 3},
		{"overlap", dev(`<range_mapping origin_begin="0" data_begin="0" length="5" time="0"/>
<single_mapping origin_block="4" data_block="9" time="0"/>`), "device 1: mapping at origin block 4 overlaps or is out of order (the previous one ends at 5)", 4},
		{"unsorted", dev(`<single_mapping origin_block="9" data_block="0" time="0"/>
<single_mapping origin_block="3" data_block="1" time="0"/>`), "overlaps or is out of order", 4},
		{"duplicate dev_id", sbOpen + devOpen + "</device>\n" + devOpen + "</device></superblock>", "dev_id 1 appears twice", 4},
		{"dev_id too big", sbOpen + `<device dev_id="16777216" mapped_blocks="0" transaction="0" creation_time="0" snap_time="0"></device></superblock>`, "does not fit in 24 bits", 2},
		{"unknown element", dev(`<label key="a"/>`), "unexpected <label> in <device>", 3},
		{"element in mapping", dev(`<single_mapping origin_block="0" data_block="1" time="0"><x/></single_mapping>`), "unexpected <x> in <single_mapping>", 3},
		{"text in device", dev(`hello`), `unexpected text "hello"`, 3},
		{"text after root", `<superblock uuid="" time="0" transaction="0" data_block_size="128" nr_data_blocks="1"/>0`, `unexpected text "0"`, 1},
		{"second root", golden + "<superblock/>", "unexpected content after </superblock>", 7},
		{"undefined ref", dev(`<ref name="nope"/>`), `<ref name="nope"> has no <def>`, 3},
		{"ref in def", sbOpen + `<def name="a"><ref name="a"/></def></superblock>`, "unexpected <ref> in <def>", 2},
		{"def twice", sbOpen + `<def name="a"></def><def name="a"></def></superblock>`, "defined twice", 2},
		{"entity", sbOpen + `<device dev_id="&foo;"/></superblock>`, "XML syntax error", 2},
		{"bad read_only", sbOpen + `<device dev_id="1" mapped_blocks="0" transaction="0" creation_time="0" snap_time="0" read_only="maybe"></device></superblock>`, "read_only", 2},
		{"bad created", sbOpen + `<device dev_id="1" mapped_blocks="0" transaction="0" creation_time="0" snap_time="0" created="yesterday"></device></superblock>`, "RFC 3339", 2},
		{"bad labels", sbOpen + `<device dev_id="1" mapped_blocks="0" transaction="0" creation_time="0" snap_time="0" labels="a=1,b"></device></superblock>`, `label "b" has no '='`, 2},
		{"bad label escape", sbOpen + `<device dev_id="1" mapped_blocks="0" transaction="0" creation_time="0" snap_time="0" labels="a=%zz"></device></superblock>`, "bad escape", 2},
		{"duplicate label", sbOpen + `<device dev_id="1" mapped_blocks="0" transaction="0" creation_time="0" snap_time="0" labels="a=1,a=2"></device></superblock>`, "appears twice", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sb, err := Decode(strings.NewReader(tc.doc))
			if err == nil {
				t.Fatalf("decode accepted: %+v", sb)
			}
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			if tc.line != 0 && e.Line != tc.line {
				t.Fatalf("error %q on line %d, want %d", err, e.Line, tc.line)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q is more than one line", err)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	t.Run("max mappings", func(t *testing.T) {
		var b strings.Builder
		b.WriteString(`<superblock uuid="" time="0" transaction="0" data_block_size="128" nr_data_blocks="100"><def name="d">`)
		for i := range 10 {
			b.WriteString(`<single_mapping origin_block="` + itoa(i) + `" data_block="0" time="0"/>`)
		}
		b.WriteString(`</def>`)
		for i := range 20 {
			b.WriteString(`<device dev_id="` + itoa(i) + `" mapped_blocks="0" transaction="0" creation_time="0" snap_time="0"><ref name="d"/></device>`)
		}
		b.WriteString(`</superblock>`)
		if _, err := (Limits{MaxMappings: 210}).Decode(strings.NewReader(b.String())); err != nil {
			t.Fatalf("210 mappings: %v", err)
		}
		_, err := Limits{MaxMappings: 209}.Decode(strings.NewReader(b.String()))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "more than 209 mappings") {
			t.Fatalf("209: got %v", err)
		}
	})
	t.Run("huge element", func(t *testing.T) {
		doc := `<superblock uuid="` + strings.Repeat("x", maxElementBytes) + `" time="0"></superblock>`
		_, err := Decode(strings.NewReader(doc))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "longer than") {
			t.Fatalf("got %v", err)
		}
		doc = `<superblock uuid="" time="0" transaction="0" data_block_size="128" nr_data_blocks="1">` + strings.Repeat(" ", maxElementBytes+1) + `</superblock>`
		if _, err := Decode(strings.NewReader(doc)); !errors.Is(err, ErrInvalid) {
			t.Fatalf("long white space: got %v", err)
		}
	})
	t.Run("read error", func(t *testing.T) {
		boom := errors.New("boom")
		_, err := Decode(&failReader{s: golden[:100], err: boom})
		if !errors.Is(err, boom) {
			t.Fatalf("got %v", err)
		}
	})
}

type failReader struct {
	s   string
	err error
}

func (r *failReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, r.err
	}
	n := copy(p, r.s)
	r.s = r.s[n:]
	return n, nil
}

func itoa(i int) string { return string(rune('0'+i/10)) + string(rune('0'+i%10)) }

// toolsOrSkip returns the paths of the thin-provisioning-tools programs, or
// skips the test.
func toolsOrSkip(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s not installed (apt-get install thin-provisioning-tools); CI installs it", n)
		}
	}
}

// restoreAndDump runs thin_restore on doc and returns what thin_dump prints.
func restoreAndDump(t *testing.T, doc []byte) []byte {
	t.Helper()
	dir := t.TempDir()
	in, meta := filepath.Join(dir, "in.xml"), filepath.Join(dir, "meta.bin")
	if err := os.WriteFile(in, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(meta, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(meta, 16<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("thin_restore", "-i", in, "-o", meta).CombinedOutput(); err != nil {
		t.Fatalf("thin_restore: %v: %s\n%s", err, out, doc)
	}
	if out, err := exec.Command("thin_check", meta).CombinedOutput(); err != nil {
		t.Fatalf("thin_check: %v: %s", err, out)
	}
	out, err := exec.Command("thin_dump", meta).Output()
	if err != nil {
		t.Fatalf("thin_dump: %v", err)
	}
	return out
}

// TestThinDumpIdentical checks that Encode writes byte for byte what
// thin_dump writes for the same metadata, and that thin_restore accepts
// thinpool's extra attributes (and drops them).
func TestThinDumpIdentical(t *testing.T) {
	toolsOrSkip(t, "thin_restore", "thin_dump", "thin_check")
	plain := &Superblock{
		Time: 4, Transaction: 77, Version: 2, DataBlockSize: 256, NrDataBlocks: 5000,
		Devices: []Device{
			{DevID: 1, Transaction: 3, CreationTime: 0, SnapTime: 4, Mappings: []Mapping{
				{0, 0, 3, 0}, {3, 3, 1, 4}, {4, 4, 2, 0}, {10, 100, 1, 1}, {11, 200, 64, 1}, {1000, 4999, 1, 2},
			}},
			{DevID: 5, CreationTime: 1, SnapTime: 4, Mappings: []Mapping{{0, 0, 3, 0}, {3, 50, 1, 4}}},
			{DevID: 9},
		},
	}
	want := encode(t, plain)
	if got := restoreAndDump(t, want); !bytes.Equal(got, want) {
		t.Fatalf("thin_dump wrote\n%s\nEncode wrote\n%s", got, want)
	}

	extras := extrasSB()
	extras.MetadataSnap = 0
	extras.UUID = ""
	got := restoreAndDump(t, encode(t, extras))
	sb, err := Decode(bytes.NewReader(got))
	if err != nil {
		t.Fatalf("decode thin_dump output: %v\n%s", err, got)
	}
	for i := range extras.Devices {
		d := &extras.Devices[i]
		d.Name, d.Size, d.Origin, d.ReadOnly, d.Created, d.Labels = "", 0, 0, false, time.Time{}, nil
	}
	if want := encode(t, extras); !bytes.Equal(got, want) {
		t.Fatalf("thin_dump of the extras document:\n%s\nwant\n%s", got, want)
	}
	if !reflect.DeepEqual(sb, extras) {
		t.Fatalf("decode: %+v\nwant %+v", sb, extras)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(golden))
	f.Add(encode(f, extrasSB()))
	f.Add([]byte(`<superblock uuid="" time="0" transaction="0" data_block_size="128" nr_data_blocks="9"><def name="a"><single_mapping origin_block="1" data_block="2" time="0"/></def><device dev_id="1" mapped_blocks="1" transaction="0" creation_time="0" snap_time="0"><ref name="a"/></device></superblock>`))
	f.Add([]byte(`<superblock uuid="" time="0" transaction="0" data_block_size="128" nr_data_blocks="100"><device dev_id="1" mapped_blocks="0" transaction="0" creation_time="0" snap_time="0"><single_mapping origin_block="0" data_block="150" time="0"/></device></superblock>`))
	lim := Limits{MaxMappings: 1 << 12}
	f.Fuzz(func(t *testing.T, doc []byte) {
		sb, err := lim.Decode(bytes.NewReader(doc))
		if err != nil {
			if sb != nil {
				t.Fatalf("error %v with a result", err)
			}
			return
		}
		// What Decode accepts encodes to a document that decodes to the same
		// thing and encodes to the same bytes again.
		b1 := encode(t, sb)
		sb2, err := lim.Decode(bytes.NewReader(b1))
		if err != nil {
			t.Fatalf("re-decode: %v\n%s", err, b1)
		}
		b2 := encode(t, sb2)
		if !bytes.Equal(b1, b2) {
			t.Fatalf("re-encode differs:\n%s\n%s", b1, b2)
		}
		if len(sb.Devices) != len(sb2.Devices) {
			t.Fatalf("devices %d then %d", len(sb.Devices), len(sb2.Devices))
		}
		for i := range sb.Devices {
			if !reflect.DeepEqual(sb.Devices[i].Mappings, sb2.Devices[i].Mappings) {
				t.Fatalf("device %d mappings differ", i)
			}
		}
	})
}

// benchSB is a pool of 8 devices with 100k single and range mappings in all.
func benchSB() *Superblock {
	sb := &Superblock{Time: 1, Version: 2, DataBlockSize: 128, NrDataBlocks: 1 << 30}
	for d := range 8 {
		dev := Device{DevID: uint32(d + 1), SnapTime: 1, Name: "dev", Size: 1 << 40}
		for i := range 12500 {
			dev.Mappings = append(dev.Mappings, Mapping{OriginBegin: uint64(i) * 4, DataBegin: uint64(d*50000 + i*4), Length: uint64(1 + i%3), Time: uint32(i % 2)})
		}
		sb.Devices = append(sb.Devices, dev)
	}
	return sb
}

func BenchmarkDecode(b *testing.B) {
	doc := encode(b, benchSB())
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(bytes.NewReader(doc)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	sb := benchSB()
	b.SetBytes(int64(len(encode(b, sb))))
	b.ReportAllocs()
	for b.Loop() {
		if err := Encode(io.Discard, sb); err != nil {
			b.Fatal(err)
		}
	}
}
