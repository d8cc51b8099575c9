package module

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/safekit-oss/safekit/internal/testenv"
	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/runtime/automaton"
	"github.com/safekit-oss/safekit/runtime/modlog"
	"github.com/safekit-oss/safekit/safe"
)

// testNetnsEnv names the network namespace a test re-executed by
// inTestNetns runs in.
const testNetnsEnv = "SAFEKIT_TEST_NETNS"

// inTestNetns runs the calling test again, alone, in a network namespace
// of its own where the ip commands cmds have run, and reports whether
// this is that run: the module process, its checkers and its gratuitous
// ARPs all work in the namespace of the process. The outer run passes or
// fails with the inner one.
func inTestNetns(t *testing.T, cmds ...string) bool {
	t.Helper()
	if os.Getenv(testNetnsEnv) != "" {
		return true
	}
	testenv.NeedRoot(t)
	for _, tool := range []string{"ip", "ss"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Need(t, tool+" (iproute2)")
		}
	}
	ns := fmt.Sprintf("skvipd%d", os.Getpid())
	ipRun(t, "netns", "add", ns)
	t.Cleanup(func() { ipRun(t, "netns", "del", ns) })
	for _, c := range cmds {
		ipRun(t, append([]string{"-n", ns}, strings.Fields(c)...)...)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), testNetnsEnv+"="+ns)
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("%s in network namespace %s: %v\n%s", t.Name(), ns, err, out)
	}
	t.Logf("in network namespace %s:\n%s", ns, out)
	return false
}

func ipRun(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// garpCounter counts the gratuitous ARPs for an address seen on an
// interface.
type garpCounter struct{ n atomic.Int32 }

func countGARPs(t *testing.T, dev string, ip net.IP) *garpCounter {
	t.Helper()
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	arp := uint16(unix.ETH_P_ARP)
	proto := arp<<8 | arp>>8 // network byte order
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
		t.Fatal(err)
	}
	c := &garpCounter{}
	t.Cleanup(func() { unix.Close(fd) })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				return
			}
			a := buf[14:n]
			if n >= 42 && bytes.Equal(a[14:18], ip.To4()) && bytes.Equal(a[24:28], ip.To4()) {
				c.n.Add(1)
			}
		}
	}()
	return c
}

// vipTestConfig is a mirror with the VIPs 192.0.2.99 (IPv4, checked, with
// arpreroute every 100ms during 350ms), 2001:db8:1::99 (IPv6, not checked)
// and 203.0.113.9, in no network of the node, and start_prim and stop_prim
// scripts that record the addresses of skA when they run.
func vipTestConfig(t *testing.T) *safe.Config {
	t.Helper()
	u := safe.ParseUserconfig([]byte(`<safe><service mode="mirror">
  <heart><heartbeat name="default"/></heart>
  <vip>
    <interface_list>
      <interface arpreroute="on">
        <real_interface>
          <virtual_addr addr="192.0.2.99" where="one_side_alias"/>
          <virtual_addr addr="2001:db8:1::99" netmask="64" check="off"/>
        </real_interface>
      </interface>
      <interface check="off">
        <real_interface>
          <virtual_addr addr="203.0.113.9" check="off"/>
        </real_interface>
      </interface>
    </interface_list>
  </vip>
  <user/>
</service></safe>`), safe.Options{File: "userconfig.xml"})
	if err := u.Diags.Err(); err != nil {
		t.Fatal(err)
	}
	cfg := u.Config
	cfg.VIP.Interfaces[0].ARPInterval = safe.Duration(100 * time.Millisecond)
	cfg.VIP.Interfaces[0].ARPElapse = safe.Duration(350 * time.Millisecond)
	cfg.Failover = &safe.Failover{Period: safe.Duration(50 * time.Millisecond), HandleTime: safe.Duration(100 * time.Millisecond)}
	return cfg
}

// vipDriver runs the driver of module app with cfg, record p, and scripts
// start_prim and stop_prim that write `ip -o addr show dev skA` into
// out/<script>.
func vipDriver(t *testing.T, cfg *safe.Config, p automaton.Persisted, out string) (*Driver, *modlog.Store) {
	t.Helper()
	roots := layout.Roots{SAFE: t.TempDir(), SAFEVAR: t.TempDir()}
	m := roots.Module("app")
	for _, dir := range []string{m.UserVar(), m.UserBin()} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"start_prim", "stop_prim"} {
		script := fmt.Sprintf("#!/bin/sh\n%s -o addr show dev skA >> %s\n", ipPath, filepath.Join(out, s))
		if err := os.WriteFile(filepath.Join(m.UserBin(), s), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return runDriver(t, m, cfg, "node1", "node2", p)
}

// wantInOrder checks that the module log holds a line containing each
// text, in this order.
func wantInOrder(t *testing.T, store *modlog.Store, texts ...string) {
	t.Helper()
	all := logLines(t, store)
	i := 0
	for _, text := range texts {
		for i < len(all) && !strings.Contains(all[i], text) {
			i++
		}
		if i == len(all) {
			t.Fatalf("the log has no %q after the lines before it; it holds:\n%s", text, logText(t, store))
		}
		i++
	}
}

func skAAddrs(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "addr", "show", "dev", "skA").CombinedOutput()
	if err != nil {
		t.Fatalf("ip addr show dev skA: %v: %s", err, out)
	}
	return string(out)
}

// TestVIPDriver runs a mirror with VIPs in a network namespace of the
// test: the checkers <vip> generates; prim sets the VIPs before start_prim
// runs (start_prim sees them) and announces the IPv4 one with gratuitous
// ARPs (one burst, then arpreroute); stop resets the connections to the
// VIP, and removes the VIPs after stop_prim (which still sees them), once.
// A VIP that cannot be set says why and the module goes on.
func TestVIPDriver(t *testing.T) {
	if !inTestNetns(t, "link set lo up", "link add skA type veth peer name skA2",
		"addr add 192.0.2.1/24 dev skA", "addr add 2001:db8:1::1/64 dev skA nodad", "link set skA up", "link set skA2 up") {
		return
	}
	cfg := vipTestConfig(t)
	var got []string
	for _, c := range AutomatonConfig(layout.Roots{SAFE: t.TempDir(), SAFEVAR: t.TempDir()}.Module("app"), cfg, "", "").Checkers {
		got = append(got, fmt.Sprintf("%s %s %s %s", c.Resource(), c.When, c.Action, c.Rule()))
	}
	if want := "ip.192.0.2.99 prim stopstart ip_failure|intf.192.0.2.0 pre wait interface_failure|intf.2001:db8:1:: pre wait interface_failure"; strings.Join(got, "|") != want {
		t.Errorf("generated checkers:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.ReplaceAll(want, "|", "\n"))
	}
	if cfg.VIP.Interfaces[0].Addrs[1].PrefixLen != 64 {
		t.Errorf("netmask 64: prefix length %d", cfg.VIP.Interfaces[0].Addrs[1].PrefixLen)
	}

	out := t.TempDir()
	garps := countGARPs(t, "skA2", net.ParseIP("192.0.2.99"))
	d, store := vipDriver(t, cfg, automaton.DefaultPersisted(), out)
	post(t, d, automaton.Command{Action: "prim"})
	waitState(t, d, store, "ALONE Ready")
	wantInOrder(t, store, "intfcheck I: Resource intf.192.0.2.0 set to up by intfcheck",
		"vipplug I: Virtual IP <192.0.2.99 of app> set", "vipplug I: Virtual IP <2001:db8:1::99 of app> set",
		"vipplug C: Virtual IP <203.0.113.9 of app> not set: no interface of this node has an address in the network of 203.0.113.9",
		"arpreroute I: Gratuitous ARPs for 192.0.2.99 on skA every 100ms during 350ms",
		"userplug S: Script start_prim", "heart E: Local state ALONE Ready")
	b, err := os.ReadFile(filepath.Join(out, "start_prim"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"inet 192.0.2.99/24 ", "inet6 2001:db8:1::99/64 "} {
		if !strings.Contains(string(b), want) {
			t.Errorf("start_prim ran without %s on skA:\n%s", want, b)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for d.Snapshot().Resources == nil || resourceOf(d, "ip.192.0.2.99") != "up" {
		if time.Now().After(deadline) {
			t.Fatalf("ip.192.0.2.99 is %q, want up:\n%s", resourceOf(d, "ip.192.0.2.99"), logText(t, store))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// One burst (a request and a reply) when set, then one every 100ms
	// during 350ms; no more after.
	for garps.n.Load() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d gratuitous ARPs for 192.0.2.99 seen on the peer of skA, want the burst and arpreroute's", garps.n.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(600 * time.Millisecond)
	if n := garps.n.Load(); n > 8 {
		t.Errorf("%d gratuitous ARPs, want at most 8: arpreroute goes on after arpelapse", n)
	}

	// A client of the VIP, connected while the module stops.
	l, err := net.Listen("tcp", "192.0.2.99:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if s, err := l.Accept(); err == nil {
			_, _ = s.Read(make([]byte, 1))
			s.Close()
		}
	}()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	post(t, d, automaton.Command{Action: "stop"})
	waitState(t, d, store, "STOP NotReady")
	wantInOrder(t, store, "userplug S: Script stop_prim", "vipplug I: TCP connections of virtual IP <192.0.2.99 of app> reset: ",
		"vipplug I: Virtual IP <192.0.2.99 of app> unset", "vipplug I: Virtual IP <2001:db8:1::99 of app> unset", "heart E: Local state STOP NotReady")
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the client of the VIP reads %v, want its connection reset (tcpreset)", err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "stop_prim")); !strings.Contains(string(b), "192.0.2.99/24") {
		t.Errorf("stop_prim ran without the VIP on skA:\n%s", b)
	}
	if a := skAAddrs(t); strings.Contains(a, "192.0.2.99") || strings.Contains(a, "2001:db8:1::99") {
		t.Errorf("the VIPs are still on skA after the stop:\n%s", a)
	}
	if n := countLog(t, store, "Virtual IP <192.0.2.99 of app> unset"); n != 1 {
		t.Errorf("unset logged %d times, want once", n)
	}
}

func resourceOf(d *Driver, name string) string {
	for _, r := range d.Snapshot().Resources {
		if r[0] == name {
			return r[1]
		}
	}
	return ""
}

// TestVIPRecover: the module process died while the module was PRIM, its
// VIP left on the node; the next module process removes it.
func TestVIPRecover(t *testing.T) {
	if !inTestNetns(t, "link set lo up", "link add skA type veth peer name skA2",
		"addr add 192.0.2.1/24 dev skA", "link set skA up", "link set skA2 up", "addr add 192.0.2.99/24 dev skA") {
		return
	}
	p := automaton.DefaultPersisted()
	p.State = automaton.Prim
	d, store := vipDriver(t, vipTestConfig(t), p, t.TempDir())
	post(t, d, automaton.Recover{From: automaton.Prim})
	waitState(t, d, store, "STOP NotReady")
	wantInOrder(t, store, "heart E: Module was PRIM when its process ended abnormally",
		`userplug S: Script stop_prim "force"`, "vipplug I: Virtual IP <192.0.2.99 of app> unset", "heart E: Local state STOP NotReady")
	if a := skAAddrs(t); strings.Contains(a, "192.0.2.99") {
		t.Errorf("the VIP left by the crash is still on skA:\n%s", a)
	}
}
