// Package thinxml reads and writes the XML form of dm-thin metadata: what
// thin_dump writes and thin_restore reads (thin-provisioning-tools). It is
// how a thinpool pool and a kernel dm-thin pool exchange metadata.
//
// # Format
//
// Encode writes exactly what thin_dump 0.9.0 writes, two spaces of indent
// per level and a newline at the end:
//
//	<superblock uuid="" time="1" transaction="2" flags="0" version="2" data_block_size="128" nr_data_blocks="16384">
//	  <device dev_id="1" mapped_blocks="4" transaction="0" creation_time="0" snap_time="1">
//	    <range_mapping origin_begin="0" data_begin="0" length="3" time="0"/>
//	    <single_mapping origin_block="100" data_block="3" time="1"/>
//	  </device>
//	</superblock>
//
// data_block_size is in 512-byte sectors; block numbers are in data blocks.
// Decode also reads what thin_dump 1.x may write: a metadata_snap attribute
// on <superblock>, no flags or version, and shared mapping lists, each
// defined once as <def name="N"> (holding mappings) before the devices and
// used in a device as <ref name="N"/>. Decode expands every <ref>, so a
// decoded Device always holds plain mappings.
//
// # What thinpool adds
//
// dm-thin metadata has no device names, sizes, origins, read-only flags or
// labels. Encode writes them as extra attributes on <device> when they are
// set: name, size (bytes), origin (a dev_id), read_only, created (RFC 3339,
// UTC) and labels (KEY=VALUE pairs joined by commas, each key and value
// URL-query-escaped, so any bytes survive). thin_restore 0.9.0 ignores
// unknown attributes (and thin_dump then drops them); thin_restore 1.x
// rejects them, so write plain dumps for it by leaving those fields empty.
//
// # Rules
//
// Decode rejects a document that breaks any of these, with the line:
//
//   - X1: data_block_size is a power of two from 128 to 2097152 sectors
//     (64 KiB to 1 GiB), and nr_data_blocks is at least 1.
//   - X2: every mapping lies inside the data device: its last data block is
//     below nr_data_blocks.
//   - X3: a device's mappings are sorted by origin block and do not overlap;
//     each has a length of at least 1 and does not wrap around 2^64.
//   - X4: dev_ids are unique and below 2^24 (dm-thin device ids are 24-bit).
//   - X5: every attribute thin_restore requires is present and numeric.
//
// The same data block may appear in several devices (snapshots share
// blocks); thin_restore counts the references.
//
// # Hostile input
//
// Decode reads a stream with encoding/xml: no entity expansion beyond the
// five XML ones, no element larger than 1 MiB, at most Limits.MaxMappings
// mappings in all (after <ref> expansion), and it never panics.
//
// Encode and Decode are safe to call concurrently on different values.
package thinxml

import (
	"bufio"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/bits"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits of the format and of Decode.
const (
	// MinDataBlockSize and MaxDataBlockSize bound data_block_size, in
	// 512-byte sectors, as dm-thin does (64 KiB to 1 GiB).
	MinDataBlockSize = 128
	MaxDataBlockSize = 2097152
	// MaxDevID is the largest dm-thin device id (24 bits).
	MaxDevID = 1<<24 - 1
	// DefaultMaxMappings is the default Limits.MaxMappings: 64 Mi mappings,
	// about 2 GiB in memory, the dump of a 4 TiB pool whose every 64 KiB
	// block is its own extent.
	DefaultMaxMappings = 1 << 26

	// maxElementBytes bounds one token (a start tag with its attributes,
	// a run of text, a comment).
	maxElementBytes = 1 << 20
)

// ErrInvalid is returned (wrapped in an *Error) when a document breaks the
// format or one of the rules X1–X5.
var ErrInvalid = errors.New("thinxml: invalid metadata XML")

// Error is a problem in a document, at a line. It matches ErrInvalid with
// errors.Is.
type Error struct {
	Line int    // 1-based line of the offending element, or 0 if unknown
	Msg  string // what is wrong, e.g. "mapping beyond end of data device (150 >= 100)"
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("thinxml: line %d: %s", e.Line, e.Msg)
	}
	return "thinxml: " + e.Msg
}

// Is reports whether target is ErrInvalid.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// Superblock is a whole document: the pool-wide values and every device.
type Superblock struct {
	UUID        string
	Time        uint32 // dm-thin's snapshot clock
	Transaction uint64 // id of the last committed transaction
	Flags       uint32
	Version     uint32 // metadata format version: 2 (Decode reads a missing one as 2)
	// DataBlockSize is the data block size in 512-byte sectors (X1).
	DataBlockSize uint32
	// NrDataBlocks is the size of the data device in data blocks.
	NrDataBlocks uint64
	// MetadataSnap is the metadata block of the held metadata snapshot, or
	// 0 if none (block 0 is always the superblock).
	MetadataSnap uint64
	Devices      []Device
}

// Device is one thin device. The fields after Mappings are thinpool's
// additions (see the package doc); their zero values mean "not recorded"
// and are not written.
type Device struct {
	DevID        uint32
	Transaction  uint64
	CreationTime uint32 // dm-thin time the device was created
	SnapTime     uint32 // dm-thin time it was last snapshotted
	// Mappings are sorted by OriginBegin and do not overlap (X3).
	Mappings []Mapping

	Name     string
	Size     uint64 // virtual size in bytes
	Origin   uint32 // dev_id of the device this one was snapshotted from
	ReadOnly bool
	Created  time.Time
	Labels   map[string]string
}

// MappedBlocks is the number of mapped blocks, written as mapped_blocks.
func (d *Device) MappedBlocks() uint64 {
	var n uint64
	for _, m := range d.Mappings {
		n += m.Length
	}
	return n
}

// Mapping maps Length blocks of a thin device from OriginBegin to the data
// blocks from DataBegin. Encode writes a Length of 1 as <single_mapping>.
type Mapping struct {
	OriginBegin uint64
	DataBegin   uint64
	Length      uint64
	// Time is the dm-thin time the blocks were mapped. The kernel treats a
	// mapping as possibly shared (and copies it on write) when its device's
	// SnapTime is later than Time.
	Time uint32
}

// Encode writes sb as thin_dump 0.9.0 does. It does not validate sb.
func Encode(w io.Writer, sb *Superblock) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	e := encoder{b: make([]byte, 0, 512)}
	e.str(`<superblock uuid="`)
	e.escaped(sb.UUID)
	e.num(`" time="`, uint64(sb.Time))
	e.num(`" transaction="`, sb.Transaction)
	e.num(`" flags="`, uint64(sb.Flags))
	e.num(`" version="`, uint64(sb.Version))
	e.num(`" data_block_size="`, uint64(sb.DataBlockSize))
	e.num(`" nr_data_blocks="`, sb.NrDataBlocks)
	if sb.MetadataSnap != 0 {
		e.num(`" metadata_snap="`, sb.MetadataSnap)
	}
	e.str("\">\n")
	for i := range sb.Devices {
		d := &sb.Devices[i]
		e.device(d)
		for _, m := range d.Mappings {
			if m.Length == 1 {
				e.num(`    <single_mapping origin_block="`, m.OriginBegin)
				e.num(`" data_block="`, m.DataBegin)
			} else {
				e.num(`    <range_mapping origin_begin="`, m.OriginBegin)
				e.num(`" data_begin="`, m.DataBegin)
				e.num(`" length="`, m.Length)
			}
			e.num(`" time="`, uint64(m.Time))
			e.str("\"/>\n")
			if len(e.b) >= 32<<10 {
				if err := e.flush(bw); err != nil {
					return err
				}
			}
		}
		e.str("  </device>\n")
		if err := e.flush(bw); err != nil {
			return err
		}
	}
	e.str("</superblock>\n")
	if err := e.flush(bw); err != nil {
		return err
	}
	return bw.Flush()
}

type encoder struct{ b []byte }

func (e *encoder) str(s string) { e.b = append(e.b, s...) }

func (e *encoder) num(prefix string, n uint64) {
	e.b = append(e.b, prefix...)
	e.b = strconv.AppendUint(e.b, n, 10)
}

func (e *encoder) flush(w io.Writer) error {
	_, err := w.Write(e.b)
	e.b = e.b[:0]
	return err
}

func (e *encoder) device(d *Device) {
	e.num(`  <device dev_id="`, uint64(d.DevID))
	e.num(`" mapped_blocks="`, d.MappedBlocks())
	e.num(`" transaction="`, d.Transaction)
	e.num(`" creation_time="`, uint64(d.CreationTime))
	e.num(`" snap_time="`, uint64(d.SnapTime))
	if d.Name != "" {
		e.str(`" name="`)
		e.escaped(d.Name)
	}
	if d.Size != 0 {
		e.num(`" size="`, d.Size)
	}
	if d.Origin != 0 {
		e.num(`" origin="`, uint64(d.Origin))
	}
	if d.ReadOnly {
		e.str(`" read_only="true`)
	}
	if !d.Created.IsZero() {
		e.str(`" created="`)
		e.b = d.Created.UTC().AppendFormat(e.b, time.RFC3339Nano)
	}
	if len(d.Labels) > 0 {
		e.str(`" labels="`)
		e.escaped(encodeLabels(d.Labels))
	}
	e.str("\">\n")
}

// escaped appends s escaped for an attribute value. Characters XML cannot
// hold become U+FFFD, as encoding/xml does.
func (e *encoder) escaped(s string) {
	for _, r := range s {
		switch {
		case r == '&':
			e.str("&amp;")
		case r == '<':
			e.str("&lt;")
		case r == '>':
			e.str("&gt;")
		case r == '"':
			e.str("&quot;")
		case r == '\'':
			e.str("&apos;")
		case r == '\t':
			e.str("&#x9;")
		case r == '\n':
			e.str("&#xA;")
		case r == '\r':
			e.str("&#xD;")
		case !isXMLChar(r):
			e.b = utf8.AppendRune(e.b, utf8.RuneError)
		default:
			e.b = utf8.AppendRune(e.b, r)
		}
	}
}

// isXMLChar reports whether r may appear in an XML 1.0 document.
// REF: https://www.w3.org/TR/xml/#charsets
func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}

// encodeLabels writes labels as "k=v,k=v", sorted by key, with each key and
// value query-escaped (so ',', '=' and any byte survive).
func encodeLabels(labels map[string]string) string {
	var sb strings.Builder
	for i, k := range slices.Sorted(maps.Keys(labels)) {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(url.QueryEscape(k))
		sb.WriteByte('=')
		sb.WriteString(url.QueryEscape(labels[k]))
	}
	return sb.String()
}

func decodeLabels(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	m := map[string]string{}
	for kv := range strings.SplitSeq(s, ",") {
		ek, ev, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("label %q has no '='", kv)
		}
		k, err1 := url.QueryUnescape(ek)
		v, err2 := url.QueryUnescape(ev)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("label %q: bad escape", kv)
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("label %q appears twice", k)
		}
		m[k] = v
	}
	return m, nil
}

// Limits bound what Decode accepts. The zero value means the defaults.
type Limits struct {
	// MaxMappings is the most mappings in a document: those in every <def>
	// and <device>, counting each <ref> as the mappings of its <def>. 0
	// means DefaultMaxMappings.
	MaxMappings int
}

// Decode reads and validates a document with the default limits.
func Decode(r io.Reader) (*Superblock, error) { return Limits{}.Decode(r) }

// Decode reads one document from r and checks rules X1–X5. Errors in the
// document are *Error; errors from r are returned wrapped.
func (l Limits) Decode(r io.Reader) (*Superblock, error) {
	if l.MaxMappings <= 0 {
		l.MaxMappings = DefaultMaxMappings
	}
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	src := &boundedReader{r: br, max: maxElementBytes}
	d := xml.NewDecoder(src)
	d.Strict = true
	p := &parser{lim: l, d: d, src: src}
	sb, err := p.parse()
	if errors.Is(err, errElementTooLarge) {
		return nil, &Error{Line: p.line(), Msg: fmt.Sprintf("an element or text is longer than %d bytes", maxElementBytes)}
	}
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		return nil, &Error{Line: se.Line, Msg: "XML syntax error: " + se.Msg}
	}
	return sb, err
}

var errElementTooLarge = errors.New("element too large")

// boundedReader fails once more than max bytes are read since start, the
// offset where the current token began. It is an io.ByteReader, so
// encoding/xml reads from it byte by byte and adds no buffer of its own.
type boundedReader struct {
	r        *bufio.Reader
	n, start int64
	max      int64
	tooLarge bool
}

func (b *boundedReader) ReadByte() (byte, error) {
	if b.n-b.start >= b.max {
		b.tooLarge = true
		return 0, errElementTooLarge
	}
	c, err := b.r.ReadByte()
	if err == nil {
		b.n++
	}
	return c, err
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c, err := b.ReadByte()
	if err != nil {
		return 0, err
	}
	p[0] = c
	return 1, nil
}

// parser holds the state of one Decode.
type parser struct {
	lim      Limits
	d        *xml.Decoder
	src      *boundedReader
	sb       *Superblock
	defs     map[string][]Mapping
	ids      map[uint32]bool
	mappings int // so far, after <ref> expansion
	tokLine  int // line where the last token began
	err      *Error
}

// line is the line where the last token began.
func (p *parser) line() int { return p.tokLine }

// errorf records the first error of an element.
func (p *parser) errorf(format string, args ...any) {
	if p.err == nil {
		p.err = &Error{Line: p.line(), Msg: fmt.Sprintf(format, args...)}
	}
}

// token returns the next token that matters: elements and non-space text.
// Comments, processing instructions (<?xml ...?>), directives and white
// space are skipped. At the end of input it returns nil.
func (p *parser) token() (xml.Token, error) {
	for {
		p.src.start = p.src.n
		p.tokLine, _ = p.d.InputPos()
		t, err := p.d.Token()
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			if p.src.tooLarge {
				return nil, errElementTooLarge
			}
			return nil, err
		}
		switch t := t.(type) {
		case xml.StartElement, xml.EndElement:
			return t, nil
		case xml.CharData:
			s := string(t)
			if text := strings.TrimLeftFunc(s, unicode.IsSpace); text != "" {
				line := p.line() + strings.Count(s[:len(s)-len(text)], "\n")
				return nil, &Error{Line: line, Msg: fmt.Sprintf("unexpected text %q", clip(text))}
			}
		}
	}
}

func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func (p *parser) parse() (*Superblock, error) {
	t, err := p.token()
	if err != nil {
		return nil, err
	}
	se, ok := t.(xml.StartElement)
	if !ok || se.Name.Space != "" || se.Name.Local != "superblock" {
		return nil, &Error{Line: p.line(), Msg: "document does not start with <superblock>"}
	}
	if err := p.superblock(se); err != nil {
		return nil, err
	}
	for {
		t, err := p.token()
		if err != nil {
			return nil, err
		}
		switch t := t.(type) {
		case nil:
			return nil, &Error{Line: p.line(), Msg: "unexpected end of file: <superblock> is not closed"}
		case xml.EndElement: // the decoder checks it matches
			if err := p.trailer(); err != nil {
				return nil, err
			}
			return p.sb, nil
		case xml.StartElement:
			switch t.Name.Local {
			case "def":
				err = p.def(t)
			case "device":
				err = p.device(t)
			default:
				err = p.unexpected(t, "superblock")
			}
			if err != nil {
				return nil, err
			}
		}
	}
}

// trailer checks nothing but comments and space follow </superblock>.
func (p *parser) trailer() error {
	t, err := p.token()
	if err != nil {
		return err
	}
	if t != nil {
		return &Error{Line: p.line(), Msg: "unexpected content after </superblock>"}
	}
	return nil
}

func (p *parser) unexpected(t xml.StartElement, in string) error {
	name := t.Name.Local
	if t.Name.Space != "" {
		name = t.Name.Space + ":" + name
	}
	return &Error{Line: p.line(), Msg: fmt.Sprintf("unexpected <%s> in <%s>", name, in)}
}

func (p *parser) superblock(se xml.StartElement) error {
	sb := &Superblock{Version: 2}
	sb.UUID = p.attr(se, "uuid", true)
	sb.Time = uint32(p.num(se, "time", 32, true))
	sb.Transaction = p.num(se, "transaction", 64, true)
	sb.Flags = uint32(p.num(se, "flags", 32, false))
	if _, ok := find(se, "version"); ok {
		sb.Version = uint32(p.num(se, "version", 32, true))
	}
	sb.DataBlockSize = uint32(p.num(se, "data_block_size", 32, true))
	sb.NrDataBlocks = p.num(se, "nr_data_blocks", 64, true)
	sb.MetadataSnap = p.num(se, "metadata_snap", 64, false)
	if p.err != nil {
		return p.err
	}
	bs := sb.DataBlockSize
	if bs < MinDataBlockSize || bs > MaxDataBlockSize || bits.OnesCount32(bs) != 1 {
		p.errorf("data_block_size %d is not a power of two from %d to %d sectors", bs, MinDataBlockSize, MaxDataBlockSize)
	}
	if sb.NrDataBlocks == 0 {
		p.errorf("nr_data_blocks is 0")
	}
	p.sb = sb
	return p.errOrNil()
}

func (p *parser) errOrNil() error {
	if p.err != nil {
		return p.err
	}
	return nil
}

// find returns the value of the attribute called name (without a prefix).
func find(se xml.StartElement, name string) (string, bool) {
	for _, a := range se.Attr {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value, true
		}
	}
	return "", false
}

// attr returns an attribute, recording an error if it is required and
// missing.
func (p *parser) attr(se xml.StartElement, name string, required bool) string {
	v, ok := find(se, name)
	if !ok && required {
		p.errorf("<%s> is missing attribute %q", se.Name.Local, name)
	}
	return v
}

// num parses a decimal attribute of the given bit size; absent optional
// attributes are 0.
func (p *parser) num(se xml.StartElement, name string, bitSize int, required bool) uint64 {
	v, ok := find(se, name)
	if !ok {
		if required {
			p.errorf("<%s> is missing attribute %q", se.Name.Local, name)
		}
		return 0
	}
	n, err := strconv.ParseUint(v, 10, bitSize)
	if err != nil {
		p.errorf("<%s> attribute %s=%q is not a number from 0 to %d", se.Name.Local, name, clip(v), uint64(1)<<bitSize-1)
	}
	return n
}

// mapping parses a <single_mapping> or <range_mapping> and its end tag.
func (p *parser) mapping(se xml.StartElement) (Mapping, error) {
	var m Mapping
	if se.Name.Local == "single_mapping" {
		m.OriginBegin = p.num(se, "origin_block", 64, true)
		m.DataBegin = p.num(se, "data_block", 64, true)
		m.Length = 1
	} else {
		m.OriginBegin = p.num(se, "origin_begin", 64, true)
		m.DataBegin = p.num(se, "data_begin", 64, true)
		m.Length = p.num(se, "length", 64, true)
	}
	m.Time = uint32(p.num(se, "time", 32, true))
	if p.err != nil {
		return m, p.err
	}
	switch {
	case m.Length == 0:
		p.errorf("mapping of length 0")
	case m.OriginBegin+m.Length < m.OriginBegin:
		p.errorf("mapping at origin block %d of length %d wraps around", m.OriginBegin, m.Length)
	case m.DataBegin+m.Length < m.DataBegin || m.DataBegin+m.Length > p.sb.NrDataBlocks:
		last := m.DataBegin + min(m.Length-1, ^uint64(0)-m.DataBegin)
		p.errorf("mapping beyond end of data device (%d >= %d)", last, p.sb.NrDataBlocks)
	}
	if p.err != nil {
		return m, p.err
	}
	return m, p.empty(se)
}

// empty reads the end tag of se, allowing nothing in between.
func (p *parser) empty(se xml.StartElement) error {
	t, err := p.token()
	if err != nil {
		return err
	}
	switch t := t.(type) {
	case xml.EndElement:
		return nil
	case xml.StartElement:
		return p.unexpected(t, se.Name.Local)
	}
	return &Error{Line: p.line(), Msg: "unexpected end of file"}
}

func (p *parser) isMapping(se xml.StartElement) bool {
	return se.Name.Space == "" && (se.Name.Local == "single_mapping" || se.Name.Local == "range_mapping")
}

// count admits n more mappings under the limit.
func (p *parser) count(n int) error {
	if n > p.lim.MaxMappings-p.mappings {
		return &Error{Line: p.line(), Msg: fmt.Sprintf("more than %d mappings", p.lim.MaxMappings)}
	}
	p.mappings += n
	return nil
}

// def reads <def name="N"> holding mappings, shared by <ref name="N"/>.
func (p *parser) def(se xml.StartElement) error {
	name := p.attr(se, "name", true)
	if p.err != nil {
		return p.err
	}
	if _, dup := p.defs[name]; dup {
		return &Error{Line: p.line(), Msg: fmt.Sprintf("<def name=%q> is defined twice", clip(name))}
	}
	if len(p.sb.Devices) > 0 {
		return &Error{Line: p.line(), Msg: "<def> after a <device>"}
	}
	var ms []Mapping
	for {
		t, err := p.token()
		if err != nil {
			return err
		}
		switch t := t.(type) {
		case nil:
			return &Error{Line: p.line(), Msg: "unexpected end of file in <def>"}
		case xml.EndElement:
			if p.defs == nil {
				p.defs = map[string][]Mapping{}
			}
			p.defs[name] = ms
			return nil
		case xml.StartElement:
			if !p.isMapping(t) {
				return p.unexpected(t, "def")
			}
			m, err := p.mapping(t)
			if err != nil {
				return err
			}
			if err := p.count(1); err != nil {
				return err
			}
			ms = append(ms, m)
		}
	}
}

func (p *parser) device(se xml.StartElement) error {
	d := Device{DevID: uint32(p.num(se, "dev_id", 32, true))}
	p.num(se, "mapped_blocks", 64, true) // recomputed from the mappings
	d.Transaction = p.num(se, "transaction", 64, true)
	d.CreationTime = uint32(p.num(se, "creation_time", 32, true))
	d.SnapTime = uint32(p.num(se, "snap_time", 32, true))
	p.extras(se, &d)
	if p.err != nil {
		return p.err
	}
	switch {
	case d.DevID > MaxDevID:
		p.errorf("dev_id %d does not fit in 24 bits", d.DevID)
	case p.ids[d.DevID]:
		p.errorf("dev_id %d appears twice", d.DevID)
	}
	if p.err != nil {
		return p.err
	}
	if p.ids == nil {
		p.ids = map[uint32]bool{}
	}
	p.ids[d.DevID] = true
	for {
		t, err := p.token()
		if err != nil {
			return err
		}
		var ms []Mapping
		switch t := t.(type) {
		case nil:
			return &Error{Line: p.line(), Msg: "unexpected end of file in <device>"}
		case xml.EndElement:
			p.sb.Devices = append(p.sb.Devices, d)
			return nil
		case xml.StartElement:
			switch {
			case p.isMapping(t):
				m, err := p.mapping(t)
				if err != nil {
					return err
				}
				ms = []Mapping{m}
			case t.Name.Space == "" && t.Name.Local == "ref":
				if ms, err = p.ref(t); err != nil {
					return err
				}
			default:
				return p.unexpected(t, "device")
			}
		}
		if err := p.count(len(ms)); err != nil {
			return err
		}
		for _, m := range ms {
			if n := len(d.Mappings); n > 0 {
				prev := d.Mappings[n-1]
				if m.OriginBegin < prev.OriginBegin+prev.Length {
					return &Error{Line: p.line(), Msg: fmt.Sprintf("device %d: mapping at origin block %d overlaps or is out of order (the previous one ends at %d)",
						d.DevID, m.OriginBegin, prev.OriginBegin+prev.Length)}
				}
			}
			d.Mappings = append(d.Mappings, m)
		}
	}
}

func (p *parser) ref(se xml.StartElement) ([]Mapping, error) {
	name := p.attr(se, "name", true)
	if p.err != nil {
		return nil, p.err
	}
	ms, ok := p.defs[name]
	if !ok {
		return nil, &Error{Line: p.line(), Msg: fmt.Sprintf("<ref name=%q> has no <def>", clip(name))}
	}
	return ms, p.empty(se)
}

// extras reads thinpool's own device attributes.
func (p *parser) extras(se xml.StartElement, d *Device) {
	d.Name = p.attr(se, "name", false)
	d.Size = p.num(se, "size", 64, false)
	d.Origin = uint32(p.num(se, "origin", 32, false))
	if v, ok := find(se, "read_only"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			p.errorf("<device> attribute read_only=%q is not true or false", clip(v))
		}
		d.ReadOnly = b
	}
	if v, ok := find(se, "created"); ok {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			p.errorf("<device> attribute created=%q is not an RFC 3339 time", clip(v))
		}
		d.Created = t
	}
	if v, ok := find(se, "labels"); ok {
		m, err := decodeLabels(v)
		if err != nil {
			p.errorf("<device> attribute labels: %v", err)
		}
		d.Labels = m
	}
}
