//go:build race

package jws

// raceEnabled reports whether the race detector is on; it makes the
// pure-Go base64 encoding about 20 times slower, so TestBoundedMemory uses
// a smaller file then.
const raceEnabled = true
