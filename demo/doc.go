// Package demo wires the pieces of stella-mirror into the embedded default
// that `make run` starts: a signing key, a generated and signed export tree,
// and the origin on localhost, with a demo.json that scripts can drive.
//
// It is not a deployment: everything listens on loopback, data is synthetic,
// and keys live in the demo directory.
package demo
