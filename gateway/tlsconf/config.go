package tlsconf

import (
	"crypto/tls"
)

// cipherSuites are the TLS 1.2 suites offered: forward-secret AEAD only
// (TLS 1.3 suites are not configurable and all sound).
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ServerConfig returns the gateway's TLS configuration: TLS 1.2 minimum,
// forward-secret AEAD cipher suites, HTTP/2 and HTTP/1.1 offered, and the
// certificate chosen by getCert.
func ServerConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   cipherSuites,
		GetCertificate: getCert,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}
