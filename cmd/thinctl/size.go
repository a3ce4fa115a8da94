package main

import (
	"math"
	"strings"
	"unicode"

	"github.com/dustin/go-humanize"

	"github.com/thinpool/thinpool/errdefs"
)

// Units a bare number is taken in, as LVM takes them: -L (--size) in MiB,
// --chunksize in KiB. Offsets are in bytes.
const (
	bareMiB   = "MiB"
	bareKiB   = "KiB"
	bareBytes = "B"
)

// sizeHelp is the sentence the --help of every size flag ends with.
const sizeHelp = "a bare number is MiB, as lvcreate -L"

// parseSize parses a size flag such as 10G, 10GiB, 512M, 64K, 1.5T or 100.
// A bare number is MiB, as LVM's -L takes it. Single-letter and "iB" units
// are binary, as in LVM and Docker; "B" alone means bytes and "S" 512-byte
// sectors. "GB", "MB", "KB", "TB" are binary too, since that is what an LVM
// or Docker user means by them.
func parseSize(s string) (int64, error) { return parseSizeIn(s, bareMiB) }

// parseSizeIn parses a size whose bare number is in unit (bareMiB, bareKiB
// or bareBytes).
func parseSizeIn(s, bare string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errdefs.Newf(errdefs.ErrInvalidArgument, "empty size")
	}
	if strings.HasPrefix(t, "-") {
		return 0, errdefs.Newf(errdefs.ErrInvalidArgument, "bad size %q: negative", s)
	}
	i := strings.IndexFunc(t, func(r rune) bool { return unicode.IsLetter(r) })
	num, unit := t, ""
	if i >= 0 {
		num, unit = strings.TrimSpace(t[:i]), strings.ToUpper(t[i:])
	}
	sectors := false
	switch unit {
	case "":
		unit = bare
	case "B":
	case "S":
		unit, sectors = "B", true
	case "K", "KB", "KIB", "M", "MB", "MIB", "G", "GB", "GIB", "T", "TB", "TIB", "P", "PB", "PIB", "E", "EB", "EIB":
		unit = unit[:1] + "iB"
	default:
		return 0, errdefs.Newf(errdefs.ErrInvalidArgument, "bad size %q: unknown unit %q (use B, S, K, M, G, T, P or E)", s, t[i:])
	}
	if num == "" {
		return 0, errdefs.Newf(errdefs.ErrInvalidArgument, "bad size %q: no number", s)
	}
	v, err := humanize.ParseBigBytes(num + " " + unit)
	if err != nil {
		return 0, errdefs.Newf(errdefs.ErrInvalidArgument, "bad size %q: %q is not a number", s, num)
	}
	if sectors {
		v.Lsh(v, 9)
	}
	if !v.IsInt64() || v.Int64() > math.MaxInt64/2 {
		return 0, errdefs.Newf(errdefs.ErrInvalidArgument, "bad size %q: too large", s)
	}
	return v.Int64(), nil
}

// sizeChange is a size flag that may be relative: "+1G" grows by 1 GiB, as
// lvextend -L +1G does; "20G" is an absolute size.
type sizeChange struct {
	n        int64
	relative bool
}

// parseSizeChange parses an absolute size or a "+SIZE" increment. A "-SIZE"
// is refused: neither the pool nor its devices shrink.
func parseSizeChange(s string) (sizeChange, error) {
	t := strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(t, "+"); ok {
		n, err := parseSize(rest)
		if err != nil {
			return sizeChange{}, err
		}
		if n == 0 {
			return sizeChange{}, errdefs.Newf(errdefs.ErrInvalidArgument, "bad size %q: grows by nothing", s)
		}
		return sizeChange{n: n, relative: true}, nil
	}
	if strings.HasPrefix(t, "-") {
		return sizeChange{}, errdefs.Newf(errdefs.ErrInvalidArgument, "bad size %q: shrinking is not supported", s)
	}
	n, err := parseSize(t)
	return sizeChange{n: n}, err
}

// from returns the new size for a current size cur.
func (c sizeChange) from(cur int64) (int64, error) {
	if !c.relative {
		return c.n, nil
	}
	if c.n > math.MaxInt64/2-cur {
		return 0, errdefs.Newf(errdefs.ErrInvalidArgument, "%s + %s is too large", formatSize(cur), formatSize(c.n))
	}
	return cur + c.n, nil
}

// formatSize prints a byte count with binary units: "10 GiB", "512 B".
func formatSize(n int64) string {
	if n < 0 {
		return "-" + humanize.IBytes(uint64(-n))
	}
	return humanize.IBytes(uint64(n))
}

// roundUp rounds n up to a multiple of m.
func roundUp(n, m int64) int64 { return (n + m - 1) / m * m }
