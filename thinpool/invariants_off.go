//go:build !invariants

package thinpool

// invariants enables expensive checks of the state after every commit
// (make test-invariants); see checkInvariants.
const invariants = false
