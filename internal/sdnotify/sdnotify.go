// Package sdnotify tells systemd about the service's state (sd_notify(3)):
// READY=1 once bpfmon watches, STOPPING=1 when it drains, so that a unit of
// Type=notify starts what depends on bpfmon only once it is really
// watching, and shows that it is stopping rather than hung.
package sdnotify

import (
	"net"
	"os"
)

// States bpfmon sends.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
)

// Notify sends state to the socket named by $NOTIFY_SOCKET. Without it (not
// started by systemd, or not Type=notify) it does nothing and returns nil.
func Notify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	if addr[0] == '@' {
		addr = "\x00" + addr[1:] // an abstract socket
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}
