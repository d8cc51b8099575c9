package checkers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Result is the outcome of one probe.
type Result struct {
	// Up: the test succeeded.
	Up bool
	// Err says why it failed (nil when Up).
	Err error
	// Restarted (module checker): the watched module started again since
	// the probe last saw it Ready.
	Restarted bool
}

// Probe runs one test. It returns soon after ctx ends.
type Probe func(ctx context.Context) Result

func result(err error) Result { return Result{Up: err == nil, Err: err} }

// DefaultInterval is the interval of a checker whose <to> gives none
// (User's Guide §13.12.3).
const DefaultInterval = 10 * time.Second

// Run runs probe at once, then every interval, until ctx ends. It calls
// report with the first result, then with each result whose Up differs
// from the one before, and with each that says Restarted; never after ctx
// ended. report runs in Run's goroutine.
func Run(ctx context.Context, interval time.Duration, probe Probe, report func(Result)) {
	if interval <= 0 {
		interval = DefaultInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	first, last := true, false
	for {
		r := probe(ctx)
		if ctx.Err() != nil {
			return
		}
		if first || r.Up != last || r.Restarted {
			report(r)
		}
		first, last = false, r.Up
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// host is addr without the brackets an IPv6 address may be written with.
func host(addr string) string {
	return strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
}

// HostPort joins an address of userconfig.xml (IPv4, IPv6 with or without
// brackets, or a name) and a port: "[::1]:80".
func HostPort(addr string, port int) string {
	return net.JoinHostPort(host(addr), strconv.Itoa(port))
}

// TCP connects to addr:port within timeout (<tcp>, tcpcheck): up when the
// connection is established, which it closes at once.
func TCP(addr string, port int, timeout time.Duration) Probe {
	target := HostPort(addr, port)
	return func(ctx context.Context) Result {
		d := net.Dialer{Timeout: timeout}
		c, err := d.DialContext(ctx, "tcp", target)
		if err != nil {
			return result(err)
		}
		c.Close()
		return result(nil)
	}
}

// Ping sends one ICMP echo request to addr (<ping>, pingcheck): up when it
// is answered within timeout.
func Ping(addr string, timeout time.Duration) Probe {
	return func(ctx context.Context) Result { return result(Reach(ctx, addr, timeout)) }
}

// Reach runs `ping -c 1 -W <timeout> addr`, the timeout rounded up to the
// second as ping counts it, and returns nil when addr answered. ping(8)
// is used rather than a raw socket so that it works without privileges
// and with the node's own ping settings.
func Reach(ctx context.Context, addr string, timeout time.Duration) error {
	secs := max(1, int((timeout+time.Second-1)/time.Second))
	// -W bounds the wait for the answer only; this bounds the whole run,
	// the resolution of a name included.
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs+2)*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ping", "-c", "1", "-W", strconv.Itoa(secs), host(addr)).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return fmt.Errorf("ping %s: no answer within %ds", addr, secs)
	}
	if msg := strings.TrimPrefix(lastLine(out), "ping: "); msg != "" {
		return fmt.Errorf("ping %s: %s", addr, msg)
	}
	return fmt.Errorf("ping %s: %w", addr, err)
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// resolve returns addr as an IP address, or the addresses of the name.
func resolve(ctx context.Context, addr string) ([]net.IP, error) {
	if ip := net.ParseIP(host(addr)); ip != nil {
		return []net.IP{ip}, nil
	}
	return net.DefaultResolver.LookupIP(ctx, "ip", addr)
}

// holding returns the local interface that holds one of ips.
func holding(ips []net.IP) (*net.Interface, net.IP, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, nil, err
	}
	for i := range ifs {
		addrs, err := ifs[i].Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			for _, ip := range ips {
				if n.IP.Equal(ip) {
					return &ifs[i], ip, nil
				}
			}
		}
	}
	return nil, nil, nil
}

// Interface tests the interface that holds localAddr (<intf>, intfcheck):
// up when the address is configured on an interface that is up (IFF_UP)
// and has its link (IFF_RUNNING: a cable, a carrier). The address gone is
// down too: the interface that held it cannot be named any more.
func Interface(localAddr string) Probe {
	return func(ctx context.Context) Result {
		ifi, err := held(ctx, localAddr)
		switch {
		case err != nil:
			return result(err)
		case ifi.Flags&net.FlagUp == 0:
			return result(fmt.Errorf("interface %s (%s) is down", ifi.Name, localAddr))
		case ifi.Flags&net.FlagRunning == 0:
			return result(fmt.Errorf("interface %s (%s) has no link (no carrier)", ifi.Name, localAddr))
		}
		return result(nil)
	}
}

// Address tests that addr is configured on an interface of this node
// (<ip>, ipcheck). Whether that interface has its link is the interface
// checker's business.
func Address(addr string) Probe {
	return func(ctx context.Context) Result {
		_, err := held(ctx, addr)
		return result(err)
	}
}

// held returns the interface of this node that holds addr (or one of the
// addresses of the name), and an error saying why when none does.
func held(ctx context.Context, addr string) (*net.Interface, error) {
	ips, err := resolve(ctx, addr)
	if err != nil {
		return nil, err
	}
	ifi, _, err := holding(ips)
	if err != nil {
		return nil, err
	}
	if ifi == nil {
		return nil, fmt.Errorf("%s is not configured on any interface of this node", addr)
	}
	return ifi, nil
}

// ModuleState is the answer of GET /api/v1.0/modules/AM/checkstate, the
// open endpoint of a node's web service that module checkers poll.
type ModuleState struct {
	State string `json:"state"`
	Ready string `json:"ready"`
	// Started is when the module's application last started (zero: not
	// since the module process started, or a node that does not say).
	Started time.Time `json:"started,omitzero"`
}

// Serving tells whether the module runs its application for clients:
// PRIM, ALONE or UP, and Ready. A Ready SECOND does not: a module that
// depends on a mirror waits on the node where the mirror is secondary.
func (s ModuleState) Serving() bool {
	return s.Ready == "Ready" && (s.State == "PRIM" || s.State == "ALONE" || s.State == "UP")
}

// Module polls the state of module name on the web service at base
// ("http://127.0.0.1:9010") with timeout (<module>, modulecheck): up while
// the module is Serving. The probe remembers when the module last started:
// a later start, seen while it is up again, is a Restarted result, even
// when the polls missed the restart itself. A probe is for one checker
// run: a new run starts with no memory.
func Module(base, name string, timeout time.Duration) Probe {
	u := strings.TrimRight(base, "/") + "/api/v1.0/modules/" + url.PathEscape(name) + "/checkstate"
	// No keep-alive: one short request every interval, and nothing left
	// running once the checker stops.
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	var started time.Time
	return func(ctx context.Context) Result {
		st, err := getState(ctx, client, u)
		if err != nil {
			return result(err)
		}
		if !st.Serving() {
			return result(fmt.Errorf("module %s is %s %s", name, st.State, st.Ready))
		}
		r := result(nil)
		if !st.Started.IsZero() {
			r.Restarted = !started.IsZero() && !st.Started.Equal(started)
			started = st.Started
		}
		return r
	}
}

func getState(ctx context.Context, client *http.Client, u string) (ModuleState, error) {
	var st ModuleState
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return st, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return st, fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return st, fmt.Errorf("GET %s: %s: %s", u, resp.Status, e.Error)
		}
		return st, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("GET %s: %w", u, err)
	}
	return st, nil
}
