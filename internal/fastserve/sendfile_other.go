//go:build !linux

package fastserve

import (
	"io"
	"net"
	"os"
)

// sendFile is Linux only; elsewhere the caller copies with net's ReadFrom.
func sendFile(*net.TCPConn, *os.File, *io.LimitedReader) (int64, error, bool) { return 0, nil, false }
