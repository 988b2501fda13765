// Package tlsconf provides the gateway's server certificates: PEM file pairs
// selected by SNI and reloaded without a restart (FileStore), or certificates
// obtained and renewed over ACME through certmagic (ACME), and the TLS
// configuration they are served with (ServerConfig: TLS 1.2+, AEAD cipher
// suites only).
//
// An unknown SNI name (or none) gets no certificate at all: the handshake
// fails, so a scanner learns nothing about the names the gateway serves.
//
// It is not a certificate authority; internal/devcert makes test and demo
// certificates.
package tlsconf
