package main

import (
	"fmt"
	"math"
	"strings"
	"unicode"

	"github.com/dustin/go-humanize"
)

// parseSize parses a size such as 10G, 10GiB, 512M, 64K, 1.5T or 4096.
// Single-letter and "iB" units are binary, as in LVM and Docker; "B" alone
// means bytes. "GB", "MB", "KB", "TB" are binary too, since that is what an
// LVM or Docker user means by them.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty size")
	}
	i := strings.IndexFunc(t, func(r rune) bool { return unicode.IsLetter(r) })
	num, unit := t, ""
	if i >= 0 {
		num, unit = strings.TrimSpace(t[:i]), strings.ToUpper(t[i:])
	}
	switch unit {
	case "", "B":
		unit = "B"
	case "K", "KB", "KIB", "M", "MB", "MIB", "G", "GB", "GIB", "T", "TB", "TIB", "P", "PB", "PIB", "E", "EB", "EIB":
		unit = unit[:1] + "iB"
	default:
		return 0, fmt.Errorf("bad size %q: unknown unit %q", s, t[i:])
	}
	if strings.HasPrefix(num, "-") {
		return 0, fmt.Errorf("bad size %q: negative", s)
	}
	v, err := humanize.ParseBigBytes(num + " " + unit)
	if err != nil || num == "" {
		return 0, fmt.Errorf("bad size %q", s)
	}
	if !v.IsInt64() || v.Int64() > math.MaxInt64/2 {
		return 0, fmt.Errorf("bad size %q: too large", s)
	}
	return v.Int64(), nil
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
