// Package extent holds block addresses and the in-memory range maps that the
// thin pool is built on: per-device mappings from virtual block ranges to pool
// block ranges ([Map]), reference counts of pool blocks ([RefCounts]) and free
// pool space ([FreeSpace]). All three are ordered maps of runs on
// github.com/google/btree; adjacent runs that continue each other are merged,
// so a sequentially written device costs a handful of entries.
//
// The package does no I/O and no locking: none of its types are safe for
// concurrent use, except that a [Map] and its [Map.Clone] may be used from
// different goroutines once Clone has returned.
//
// # Invariants
//
//   - E1: the runs of a Map, RefCounts or FreeSpace never overlap and have Len ≥ 1.
//   - E2: two neighbouring runs that continue each other (in both address
//     spaces, with the same count for RefCounts) are always merged.
//   - E3: RefCounts holds no run with Count 0.
package extent
