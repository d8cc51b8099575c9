// Package localsock serves and dials HTTP over local unix sockets, admitting
// only trusted peers by their kernel credentials (SO_PEERCRED).
package localsock

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"syscall"
	"time"
)

// Policy decides which peers are admitted.
type Policy struct {
	// UIDs admitted (root is always admitted).
	UIDs []uint32
	// GID admitted: members of this group (primary or supplementary).
	GID int
}

// DefaultPolicy admits root, this process's user, and the safekit group
// when it exists.
func DefaultPolicy() Policy {
	p := Policy{UIDs: []uint32{uint32(os.Geteuid())}, GID: -1}
	if g, err := user.LookupGroup("safekit"); err == nil {
		if gid, err := strconv.Atoi(g.Gid); err == nil {
			p.GID = gid
		}
	}
	return p
}

func (p Policy) admits(c *syscall.Ucred) bool {
	if c.Uid == 0 {
		return true
	}
	for _, u := range p.UIDs {
		if c.Uid == u {
			return true
		}
	}
	if p.GID < 0 {
		return false
	}
	if int(c.Gid) == p.GID {
		return true
	}
	return inGroup(int(c.Pid), p.GID)
}

// inGroup reads the supplementary groups of pid.
func inGroup(pid, gid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range splitLines(string(data)) {
		if len(line) > 7 && line[:7] == "Groups:" {
			for _, f := range fields(line[7:]) {
				if g, err := strconv.Atoi(f); err == nil && g == gid {
					return true
				}
			}
		}
	}
	return false
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func fields(s string) []string {
	var out []string
	cur := ""
	for _, c := range s {
		if c == ' ' || c == '\t' {
			if cur != "" {
				out = append(out, cur)
			}
			cur = ""
			continue
		}
		cur += string(c)
	}
	if cur != "" {
		out = append(out, cur)
	}
	return out
}

// Listen listens on path (a file path, or "@name" for the abstract
// namespace) and admits only peers allowed by p. Rejected connections are
// reported to reject (which may be nil).
func Listen(path string, p Policy, reject func(c *syscall.Ucred)) (net.Listener, error) {
	if path[0] != '@' {
		if len(path) >= 108 {
			return nil, fmt.Errorf("socket path %s is too long for a unix socket (%d bytes, the limit is 107): use a shorter SAFEVAR", path, len(path))
		}
		_ = os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if path[0] != '@' {
		mode := os.FileMode(0o600)
		if p.GID >= 0 {
			mode = 0o660
			_ = os.Chown(path, 0, p.GID)
		}
		if err := os.Chmod(path, mode); err != nil {
			l.Close()
			return nil, err
		}
	}
	return &listener{Listener: l, p: p, reject: reject}, nil
}

type listener struct {
	net.Listener
	p      Policy
	reject func(*syscall.Ucred)
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		cred, err := PeerCred(c)
		if err == nil && l.p.admits(cred) {
			return c, nil
		}
		if l.reject != nil && cred != nil {
			l.reject(cred)
		}
		c.Close()
	}
}

// PeerCred returns the credentials of the process at the other end.
func PeerCred(c net.Conn) (*syscall.Ucred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, errors.New("not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *syscall.Ucred
	var cerr error
	err = raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	if err != nil {
		return nil, err
	}
	return cred, cerr
}

// Client returns an HTTP client that talks to the socket at path; URLs use
// the host "local" (http://local/...).
func Client(path string, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
			MaxIdleConnsPerHost: 4,
		},
	}
}

// AbstractName derives a name in the abstract socket namespace that is
// unique to a node's SAFEVAR and a purpose, so that several nodes can share
// a machine in tests.
func AbstractName(safevar, purpose string) string {
	h := sha256.Sum256([]byte(safevar))
	return "@safekit-" + hex.EncodeToString(h[:8]) + "-" + purpose
}
