//go:build race

package btree

// raceEnabled is set under -race, which makes these single-threaded
// tests about ten times slower without finding more: they run smaller.
const raceEnabled = true
