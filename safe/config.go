package safe

import (
	"fmt"
	"time"
)

// Config is the validated runtime configuration of a module: macros
// expanded, defaults applied, units converted. What the file says, with its
// positions, stays in Userconfig.Doc; the runtime reads only this.
//
// Pointers to sections are nil when the section is absent, because absence
// has a meaning (no <user>: no script runs; no <rfs>: nothing to replicate).
type Config struct {
	// Macros in definition order, values expanded.
	Macros  []Var   `json:"macros,omitempty"`
	Service Service `json:"service"`

	Heart    *Heart    `json:"heart,omitempty"`
	Farm     *Farm     `json:"farm,omitempty"`
	VIP      *VIP      `json:"vip,omitempty"`
	RFS      *RFS      `json:"rfs,omitempty"`
	User     *User     `json:"user,omitempty"`
	VHost    *VHost    `json:"vhost,omitempty"`
	Errd     *Errd     `json:"errd,omitempty"`
	Check    Check     `json:"check"`
	Failover *Failover `json:"failover,omitempty"`

	// Windows is true for a module written for Windows (drive-letter paths,
	// .ps1/.cmd scripts): it validates here but is not configured on Linux.
	Windows bool `json:"windows,omitempty"`
}

// Mode of a module.
type Mode string

// Module modes (User's Guide §13.3).
const (
	ModeMirror Mode = "mirror" // two nodes, primary/secondary, replication
	ModeFarm   Mode = "farm"   // N nodes, all active, load balancing
	ModeLight  Mode = "light"  // one node, local restart only
)

// Service is <service>: the module type and its global behaviour.
type Service struct {
	Mode Mode `json:"mode"`
	// Boot: on, off, auto (start if it was running before) or ignore (obey
	// `safekit boot on|off`). Default ignore.
	Boot string `json:"boot"`
	// BootDelay before a start at boot. Unit s, default 0s.
	BootDelay Duration `json:"boot_delay"`
	// Failover: mirror only; off keeps the secondary in WAIT when the
	// primary fails. Default on.
	Failover bool `json:"failover"`
	// DefaultPrim: alone, lastprim or a node name. Default alone.
	DefaultPrim string `json:"defaultprim"`
	// MaxLoop actions called with -i allowed within LoopInterval before the
	// module is stopped. Default 3.
	MaxLoop int `json:"maxloop"`
	// LoopInterval is the maxloop window. Unit h, default 24h; 0 disables.
	LoopInterval Duration `json:"loop_interval"`
	// AutomaticReboot: a stopstart reboots the server. Default off.
	AutomaticReboot bool `json:"automatic_reboot"`
}

// Heart is <heart>: the heartbeats of a mirror module.
type Heart struct {
	// Port is the UDP port of every heartbeat; 0 means 8888+(id-1).
	Port int `json:"port,omitempty"`
	// Pulse between packets. Unit ms, default 700ms.
	Pulse Duration `json:"pulse"`
	// Timeout without packets before a heartbeat is lost. Unit ms, default 30000ms.
	Timeout Duration `json:"timeout"`
	// PermanentARP keeps a static ARP entry for the peer. Default on.
	PermanentARP bool        `json:"permanent_arp"`
	Heartbeats   []Heartbeat `json:"heartbeats"`
}

// Heartbeat is one <heartbeat>.
type Heartbeat struct {
	// Lan of cluster.xml (attribute name). An empty name means the first lan.
	Lan string `json:"lan"`
	// Ident names the resource heartbeat.<Ident>; default: Lan.
	Ident   string   `json:"ident"`
	Pulse   Duration `json:"pulse"`
	Timeout Duration `json:"timeout"`
	// Servers are the pre-7.2 per-node addresses.
	Servers []string `json:"servers,omitempty"`
	Pos     Pos      `json:"-"`
}

// Farm is <farm>: the membership protocol of a farm module.
type Farm struct {
	// Port is UDP; 0 means 4803+(id-1)*3.
	Port int `json:"port,omitempty"`
	// Pulse between packets. Unit ms, default 100ms.
	Pulse      Duration  `json:"pulse"`
	MlostCount int       `json:"mlost_count"`
	SlostCount int       `json:"slost_count"`
	Lans       []FarmLan `json:"lans"`
}

// FarmLan is <farm><lan>.
type FarmLan struct {
	Name  string       `json:"name"`
	Nodes []LegacyNode `json:"nodes,omitempty"`
	Pos   Pos          `json:"-"`
}

// LegacyNode is a pre-7.2 <lan><node>.
type LegacyNode struct {
	Name string `json:"name,omitempty"`
	Addr string `json:"addr"`
}

// VIP is <vip>: virtual IP addresses. A mirror sets those of its
// <real_interface>s on the node that is primary (runtime/vip); the
// <virtual_interface>s and load balancing of a farm are not done.
type VIP struct {
	// TCPReset: the TCP connections of a VIP are reset before it is
	// removed. Default on.
	TCPReset bool `json:"tcpreset"`
	// ScriptControl (farm): the scripts open and close the VIP traffic.
	// Default off.
	ScriptControl bool           `json:"scriptcontrol"`
	Interfaces    []VIPInterface `json:"interfaces,omitempty"`
	Groups        []LBGroup      `json:"groups,omitempty"`
}

// VIPInterface is <interface>: the VIPs of one network interface.
type VIPInterface struct {
	// Check generates the interface checker intf.<network> of the VIPs'
	// networks. Default on.
	Check bool `json:"check"`
	// ARPReroute broadcasts gratuitous ARPs for the IPv4 VIPs every
	// ARPInterval during ARPElapse after they are set. Default off; unit s,
	// defaults 60s and 1200s.
	ARPReroute  bool     `json:"arpreroute"`
	ARPInterval Duration `json:"arpinterval"`
	ARPElapse   Duration `json:"arpelapse"`
	// Name of the OS interface; "": the one that holds an address of the
	// VIP's network.
	Name string `json:"name,omitempty"`
	// VirtualType is empty for <real_interface>, else the
	// <virtual_interface type>.
	VirtualType string        `json:"virtual_type,omitempty"`
	VirtualMAC  string        `json:"virtual_mac,omitempty"`
	Addrs       []VirtualAddr `json:"addrs"`
}

// VirtualAddr is <virtual_addr>: one VIP.
type VirtualAddr struct {
	// Addr is the IPv4 or IPv6 address, or a name, as written.
	Addr string `json:"addr"`
	// Where: alias (farm), one_side_alias (mirror, the default of a
	// <real_interface>) or one_side (mirror: the VIP is also the source
	// address of the primary's connections).
	Where string `json:"where"`
	// Check generates the IP checker ip.<Addr>. Default on.
	Check bool `json:"check"`
	// Connections counts the active connections (not done). Default off.
	Connections bool   `json:"connections"`
	Netmask     string `json:"netmask,omitempty"`
	// PrefixLen is Netmask as a prefix length (24 for 255.255.255.0); 0
	// when there is none: the prefix length of the interface's address.
	PrefixLen int `json:"prefix_len,omitempty"`
}

// LBGroup is a load-balancing <group>.
type LBGroup struct {
	Name  string   `json:"name"`
	Hosts []LBHost `json:"hosts,omitempty"`
	Rules []LBRule `json:"rules"`
}

// LBHost is <cluster><host>.
type LBHost struct {
	Name  string `json:"name"`
	Power int    `json:"power"`
}

// LBRule is <rule>.
type LBRule struct {
	VirtualAddr string `json:"virtual_addr"`
	Port        string `json:"port"`
	Proto       string `json:"proto"`
	Filter      string `json:"filter"`
}

// RFS is <rfs>: real-time file replication.
type RFS struct {
	ACL bool `json:"acl"`
	// Async: "second" (acknowledge on receipt) or "none" (after the write).
	Async       string   `json:"async"`
	IOTimeout   Duration `json:"iotimeout"`
	ROFlags     string   `json:"roflags"`
	LockTimeout Duration `json:"locktimeout"`
	SendTimeout Duration `json:"sendtimeout"`
	NbRei       int      `json:"nbrei"`
	// RUZoneBlockSize in bytes.
	RUZoneBlockSize int      `json:"ruzone_blocksize"`
	NamespacePolicy int      `json:"namespacepolicy"`
	ReiTimeout      Duration `json:"reitimeout"`
	ReiCommit       int      `json:"reicommit"`
	ReiDetail       bool     `json:"reidetail"`
	AllocThreshold  int      `json:"allocthreshold"`
	NbRemConn       int      `json:"nbremconn"`
	CheckTime       Duration `json:"checktime"`
	CheckIntv       Duration `json:"checkintv"`
	NFSBoxOptions   string   `json:"nfsbox_options"`
	Scripts         bool     `json:"scripts"`
	// ReiAllowedBW in KB/s; 0 = no limit.
	ReiAllowedBW    int      `json:"reiallowedbw"`
	SyncDelta       Duration `json:"syncdelta"`
	SyncAt          string   `json:"syncat,omitempty"`
	MountOverSuffix string   `json:"mountoversuffix"`
	// PacketSize in bytes; 0 = the implementation's choice.
	PacketSize    int `json:"packetsize,omitempty"`
	ReiPacketSize int `json:"reipacketsize"`
	// MountOver is the legacy attribute, kept as written ("" when absent); it
	// has no effect.
	MountOver  string       `json:"mountover,omitempty"`
	Replicated []Replicated `json:"replicated"`
	Flow       *Flow        `json:"flow,omitempty"`
}

// Replicated is <replicated>.
type Replicated struct {
	Dir string `json:"dir"`
	// ReadOnly is what mode="read_only" asks; the secondary's copy is
	// read-only in any case.
	ReadOnly      bool            `json:"read_only"`
	ToCheck       []string        `json:"tocheck,omitempty"`
	NotReplicated []NotReplicated `json:"notreplicated,omitempty"`
	Pos           Pos             `json:"-"`
}

// NotReplicated is one <notreplicated>: Path or RegexPath.
type NotReplicated struct {
	Path      string `json:"path,omitempty"`
	RegexPath string `json:"regexpath,omitempty"`
}

// Flow is the legacy <rfs><flow>.
type Flow struct {
	Lan     string   `json:"lan,omitempty"`
	Servers []string `json:"servers,omitempty"`
}

// User is <user>: module scripts are run only when it is present.
type User struct {
	// NiceStopTimeout of a graceful stop script. Unit s, default 300s.
	NiceStopTimeout Duration `json:"nicestoptimeout"`
	// ForceStopTimeout of a stop script called with "force". Unit s, default 300s.
	ForceStopTimeout Duration `json:"forcestoptimeout"`
	// Logging: "userlog" (script output to userlog files) or "none".
	Logging string `json:"logging"`
	// UserLogSize caps the module's userlog files, in KB. Default 2048.
	UserLogSize int   `json:"userlogsize"`
	Vars        []Var `json:"vars,omitempty"`
}

// Var is a name/value pair: a <var> or a <macro>.
type Var struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// VHost is <vhost>.
type VHost struct {
	Hosts []VirtualHostName `json:"hosts"`
}

// VirtualHostName is <virtualhostname>.
type VirtualHostName struct {
	Name    string `json:"name"`
	EnvFile string `json:"envfile"`
	When    string `json:"when"`
}

// Errd is <errd>: process and service monitoring (runtime/errd).
type Errd struct {
	// PollTimer is the polling period (default 30s).
	PollTimer Duration `json:"polltimer"`
	Procs     []Proc   `json:"procs"`
}

// Proc is <proc>: what must run, and what its absence does.
type Proc struct {
	// Name is the command name (the kernel keeps 15 bytes of it) or, with
	// Service, the systemd service; it names the resource proc.<Name>.
	Name string `json:"name"`
	// Service: Name is a systemd service, running when active.
	Service bool `json:"service"`
	// NameRegex replaces Name in the test of the command name (POSIX ERE).
	NameRegex string `json:"nameregex,omitempty"`
	// ArgRegex must match the argument list too, executable first (POSIX ERE).
	ArgRegex string `json:"argregex,omitempty"`
	// AtLeast: fewer running is an error (default 1; -1: no such test).
	AtLeast int `json:"atleast"`
	// AtMax: that many running, one at least, is an error (default -1: no
	// such test).
	AtMax int `json:"atmax"`
	// Action: restart, stopstart (default), stop, noaction or a handler.
	Action string `json:"action"`
	// RestartServices are given to the scripts of a restart (-Services).
	RestartServices string `json:"restart_services,omitempty"`
	// Class names the window of its monitoring: pre, prim, both, second,
	// sec, or one that the scripts switch (safekit errd enable|disable).
	Class string `json:"class"`
	// StartAfter n skips the first n-1 polls (default 0).
	StartAfter int `json:"start_after"`
}

// Check is <check>.
type Check struct {
	TCP        []TCPCheck       `json:"tcp,omitempty"`
	Ping       []PingCheck      `json:"ping,omitempty"`
	Intf       []IntfCheck      `json:"intf,omitempty"`
	IP         []IPCheck        `json:"ip,omitempty"`
	Custom     []CustomCheck    `json:"custom,omitempty"`
	Module     []ModuleCheck    `json:"module,omitempty"`
	Splitbrain *SplitbrainCheck `json:"splitbrain,omitempty"`
}

// Target is a checker's <to>.
type Target struct {
	Addr     string   `json:"addr"`
	Port     int      `json:"port,omitempty"`
	Interval Duration `json:"interval,omitempty"`
	Timeout  Duration `json:"timeout,omitempty"`
	Secure   bool     `json:"secure,omitempty"`
}

// TCPCheck is <tcp>.
type TCPCheck struct {
	Ident  string `json:"ident"`
	When   string `json:"when"`
	Action string `json:"action"`
	To     Target `json:"to"`
}

// PingCheck is <ping>.
type PingCheck struct {
	Ident  string `json:"ident"`
	When   string `json:"when"`
	Action string `json:"action"`
	To     Target `json:"to"`
}

// IntfCheck is <intf>.
type IntfCheck struct {
	Ident     string `json:"ident"`
	When      string `json:"when"`
	LocalAddr string `json:"local_addr"`
}

// IPCheck is <ip>.
type IPCheck struct {
	Ident string `json:"ident"`
	When  string `json:"when"`
	To    Target `json:"to"`
}

// CustomCheck is <custom>: a program that sets its resource custom.<Ident>
// with `safekit set`.
type CustomCheck struct {
	Ident string `json:"ident"`
	// When: the window the checker runs in (pre, prim, second, both).
	When string `json:"when"`
	// Exec is the program; relative to SAFEUSERBIN unless absolute.
	Exec string `json:"exec"`
	// Args are the words of arg, passed after the module and resource names.
	Args []string `json:"args,omitempty"`
	// Action once the resource is down: wait, stop, stopstart, restart or
	// noaction (the default: only a user rule acts).
	Action string `json:"action"`
}

// Resource is the name of the resource the checker sets.
func (c CustomCheck) Resource() string { return "custom." + c.Ident }

// Rule is the name of the generated failover rule.
func (c CustomCheck) Rule() string { return "c_" + c.Ident }

// ModuleCheck is <module>: a dependency on module Name.
type ModuleCheck struct {
	Ident string `json:"ident,omitempty"`
	Name  string `json:"name"`
	// To is the web service that tells Name's state; nil: this node's,
	// at LocalModuleAddr.
	To *Target `json:"to,omitempty"`
}

// LocalModuleAddr is where a <module> without <to> looks for the module
// (User's Guide §15.9.2).
const LocalModuleAddr = "127.0.0.1"

// ResourceIdent is the id of the checker's resource module.<id>: its
// ident, else <name>_<addr> (module.mysql_172.24.190.21).
func (c ModuleCheck) ResourceIdent() string {
	if c.Ident != "" {
		return c.Ident
	}
	addr := LocalModuleAddr
	if c.To != nil {
		addr = c.To.Addr
	}
	return c.Name + "_" + addr
}

// SplitbrainCheck is <splitbrain>.
type SplitbrainCheck struct {
	Ident     string   `json:"ident"`
	Witnesses []string `json:"witnesses"`
	When      string   `json:"when"`
}

// Failover is <failover>: the rule text is kept as written (macros expanded).
type Failover struct {
	Extends    bool     `json:"extends"`
	Period     Duration `json:"period"`
	HandleTime Duration `json:"handle_time"`
	// Rules holds one entry per CDATA section; Lua sections start with
	// "--Lua Rules".
	Rules []string `json:"rules,omitempty"`
}

// FlowLan is the lan that carries replication: <flow name>, else the lan of
// the heartbeat with ident "flow", else the first heartbeat's.
func (c *Config) FlowLan() string {
	if c.RFS != nil && c.RFS.Flow != nil && c.RFS.Flow.Lan != "" {
		return c.RFS.Flow.Lan
	}
	if c.Heart == nil || len(c.Heart.Heartbeats) == 0 {
		return ""
	}
	for _, h := range c.Heart.Heartbeats {
		if h.Ident == "flow" {
			return h.Lan
		}
	}
	return c.Heart.Heartbeats[0].Lan
}

// Var returns the value of the <user><var> name.
func (c *Config) Var(name string) (string, bool) {
	if c.User == nil {
		return "", false
	}
	for _, v := range c.User.Vars {
		if v.Name == name {
			return v.Value, true
		}
	}
	return "", false
}

// Duration is a time.Duration that reads and prints the SafeKit way
// ("700ms", "30s", "24h").
type Duration time.Duration

// D returns the standard library value.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string {
	v := time.Duration(d)
	if v == 0 {
		return "0s"
	}
	for _, u := range []struct {
		s string
		d time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}, {"us", time.Microsecond}} {
		if v%u.d == 0 {
			return fmt.Sprintf("%d%s", v/u.d, u.s)
		}
	}
	return v.String()
}

// MarshalText renders the duration for JSON.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a duration written with a unit ("700ms", "24h").
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := parseTime("duration", string(b), time.Microsecond)
	*d = Duration(v)
	return err
}
