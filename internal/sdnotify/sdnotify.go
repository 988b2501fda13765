// Package sdnotify sends service state notifications to systemd
// (sd_notify(3)) over the datagram socket named by $NOTIFY_SOCKET, without
// cgo or libsystemd: READY=1 once a Type=notify service serves, RELOADING=1
// and READY=1 around a reload, STOPPING=1 when it shuts down. Without
// $NOTIFY_SOCKET (not run by systemd, or not Type=notify) every call does
// nothing.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Env is the environment variable systemd sets for a Type=notify service.
const Env = "NOTIFY_SOCKET"

// The states this project sends.
const (
	Ready     = "READY=1"
	Stopping  = "STOPPING=1"
	reloading = "RELOADING=1"
)

// Notify sends state (newline-separated VAR=VALUE assignments) to the
// socket in $NOTIFY_SOCKET. It reports whether a message was sent: false
// with a nil error when the variable is unset. The socket is a file-system
// path ("/run/systemd/notify") or, with a leading "@", an abstract one.
func Notify(state string) (bool, error) {
	return notifyTo(os.Getenv(Env), state)
}

// Reloading is the RELOADING=1 message with the MONOTONIC_USEC systemd
// 253+ asks for (CLOCK_MONOTONIC in microseconds); systemd 252 ignores the
// extra field. Send Ready when the reload is done.
func Reloading() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return reloading
	}
	usec := ts.Sec*int64(time.Second/time.Microsecond) + ts.Nsec/int64(time.Microsecond)
	return reloading + "\nMONOTONIC_USEC=" + strconv.FormatInt(usec, 10)
}

func notifyTo(socket, state string) (bool, error) {
	if socket == "" {
		return false, nil
	}
	name := socket
	switch {
	case strings.HasPrefix(socket, "@"):
		name = "\x00" + socket[1:]
	case strings.HasPrefix(socket, "/"):
	default:
		return false, fmt.Errorf("%s=%q: want an absolute path or @abstract name", Env, socket)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("sd_notify %s: %w", socket, err)
	}
	defer conn.Close()
	if err := conn.SetWriteDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return false, fmt.Errorf("sd_notify %s: %w", socket, err)
	}
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("sd_notify %s: %w", socket, err)
	}
	return true, nil
}
