//go:build !linux

package rawsock

import (
	"io"
	"net"
	"os"
)

// SendFile is Linux only; elsewhere it reports handled=false.
func SendFile(*net.TCPConn, *os.File, *io.LimitedReader) (int64, error, bool) { return 0, nil, false }
