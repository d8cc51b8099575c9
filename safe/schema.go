package safe

import "time"

// The schema describes every element and attribute that SafeKit 8.2 accepts
// in userconfig.xml and cluster.xml, with types, implicit time units and
// defaults. One table drives validation, the typed configuration's defaults
// and the reference in docs/userconfig.md, so the three cannot disagree.
// Sources: User's Guide 8.2 chapter 13 and 12 (see
// shared/reference/userconfig-reference.md for the section of each fact).

type attrKind int

const (
	kString  attrKind = iota // free text
	kEnum                    // one of enum
	kOnOff                   // "on" or "off"
	kYesNo                   // "yes" or "no"
	kInt                     // decimal integer, >= min
	kTime                    // duration with optional unit, see units.go
	kPath                    // absolute path (Linux, or Windows in a Windows module)
	kRelPath                 // path relative to a replicated directory
	kPort                    // TCP/UDP port number, or "*" where allowed by enum
	kAddr                    // IPv4, [IPv6], IPv6 or host name
)

type attrSpec struct {
	name     string
	kind     attrKind
	enum     []string
	unit     time.Duration // implicit unit of a kTime attribute
	min      int           // minimum of a kInt attribute
	def      string        // default when absent ("" = none)
	required bool
	// emptyOK: an empty value is meaningful (a macro or <var> value). Any
	// other attribute written empty is a placeholder left for the console to
	// fill, which is an error naming what to fill.
	emptyOK bool
	// obsolete: accepted and ignored, with a warning.
	obsolete string
	doc      string
}

type elemSpec struct {
	tag      string
	attrs    []attrSpec
	children []*elemSpec
	// many: the element may be repeated under its parent; the others appear
	// at most once.
	many bool
	// legacy marks the pre-7.2 forms; they must not be mixed with 7.2 ones.
	legacy bool
	// notEnforced names what this version loads and validates but does not
	// act on; confcheck and config warn about it.
	notEnforced string
	doc         string
}

func (s *elemSpec) attr(name string) *attrSpec {
	for i := range s.attrs {
		if s.attrs[i].name == name {
			return &s.attrs[i]
		}
	}
	return nil
}

func (s *elemSpec) child(tag string) *elemSpec {
	for _, c := range s.children {
		if c.tag == tag {
			return c
		}
	}
	return nil
}

func onOff(name, def, doc string) attrSpec {
	return attrSpec{name: name, kind: kOnOff, def: def, doc: doc}
}

func timeAttr(name string, unit time.Duration, def, doc string) attrSpec {
	return attrSpec{name: name, kind: kTime, unit: unit, def: def, doc: doc}
}

func intAttr(name string, min int, def, doc string) attrSpec {
	return attrSpec{name: name, kind: kInt, min: min, def: def, doc: doc}
}

func enumAttr(name, def string, values []string, doc string) attrSpec {
	return attrSpec{name: name, kind: kEnum, enum: values, def: def, doc: doc}
}

const (
	ms   = time.Millisecond
	sec  = time.Second
	mins = time.Minute
	hour = time.Hour
)

var checkerWhen = []string{"pre", "prim", "second", "both"}
var checkerActions = []string{"wait", "stop", "stopstart", "restart", "noaction"}

func toSpec(attrs ...attrSpec) *elemSpec { return &elemSpec{tag: "to", attrs: attrs} }

var (
	serverSpec = &elemSpec{tag: "server", many: true, legacy: true, doc: "pre-7.2 address of one node",
		attrs: []attrSpec{{name: "addr", kind: kAddr, required: true, doc: "IP address or name of a node"}}}

	heartbeatSpec = &elemSpec{tag: "heartbeat", many: true, doc: "one heartbeat, normally one per network",
		attrs: []attrSpec{
			{name: "name", kind: kString, emptyOK: true, doc: "lan of cluster.xml that carries this heartbeat"},
			{name: "ident", kind: kString, doc: "label and resource id (heartbeat.<ident>); \"flow\" marks the replication network; default: name"},
			timeAttr("pulse", ms, "", "interval between heartbeat packets; default: <heart pulse>"),
			timeAttr("timeout", ms, "", "time without heartbeat before it is declared lost; default: <heart timeout>"),
		},
		children: []*elemSpec{serverSpec}}

	heartSpec = &elemSpec{tag: "heart", doc: "mirror heartbeats",
		attrs: []attrSpec{
			{name: "port", kind: kPort, doc: "UDP port of every heartbeat; default 8888+(id-1)"},
			timeAttr("pulse", ms, "700ms", "interval between heartbeat packets"),
			timeAttr("timeout", ms, "30000ms", "time without heartbeat before a heartbeat is declared lost"),
			onOff("permanent_arp", "on", "keep a permanent ARP entry for the peer"),
		},
		children: []*elemSpec{heartbeatSpec}}

	farmSpec = &elemSpec{tag: "farm", doc: "farm membership protocol",
		attrs: []attrSpec{
			{name: "port", kind: kPort, doc: "UDP port; default 4803+(id-1)*3"},
			timeAttr("pulse", ms, "100ms", "interval between membership packets"),
			intAttr("mlost_count", 1, "20", "packets missed before electing a new leader"),
			intAttr("slost_count", 1, "10", "packets missed before declaring a follower offline"),
		},
		children: []*elemSpec{{tag: "lan", many: true, doc: "a lan of cluster.xml used by the membership protocol",
			attrs: []attrSpec{{name: "name", kind: kString, doc: "lan of cluster.xml"}},
			children: []*elemSpec{{tag: "node", many: true, legacy: true, doc: "pre-7.2 node of the lan",
				attrs: []attrSpec{{name: "name", kind: kString}, {name: "addr", kind: kAddr, required: true}}}}}}}

	virtualAddrSpec = &elemSpec{tag: "virtual_addr", many: true, doc: "one virtual IP",
		attrs: []attrSpec{
			{name: "addr", kind: kAddr, required: true, doc: "the virtual IP address (IPv4 or IPv6) or name"},
			enumAttr("where", "", []string{"alias", "one_side_alias", "one_side"}, "alias (farm) or one_side_alias (mirror); one_side: the VIP also becomes the source address of the primary's connections through its interface"),
			onOff("check", "on", "generate the IP checker ip.<addr> (when=\"prim\", rule ip_failure: stopstart when the VIP is gone)"),
			onOff("connections", "off", "count active connections to this address (not done by this version: a warning says so)"),
			{name: "netmask", kind: kString, doc: "IPv4 netmask (255.255.255.0) or prefix length (24); default: the prefix length of the interface's address in the VIP's network"},
		}}

	vipSpec = &elemSpec{tag: "vip",
		doc: "virtual IP addresses; in a mirror, those of each `<real_interface>` follow the primary: added to the interface of the node that becomes PRIM or ALONE before `start_prim`, removed after `stop_prim`",
		attrs: []attrSpec{
			onOff("tcpreset", "on", "reset TCP connections of the VIP when it is removed"),
			onOff("scriptcontrol", "off", "farm: the scripts open and close the VIP traffic"),
		},
		children: []*elemSpec{
			{tag: "interface_list", children: []*elemSpec{{tag: "interface", many: true,
				attrs: []attrSpec{
					onOff("check", "on", "generate the interface checker intf.<network of the VIP> (when=\"pre\", rule interface_failure: wait while the link is down)"),
					onOff("arpreroute", "off", "IPv4: broadcast gratuitous ARPs for the VIPs every arpinterval during arpelapse after they are set (one burst is sent when they are set anyway)"),
					timeAttr("arpinterval", sec, "60s", "interval of gratuitous ARPs"),
					timeAttr("arpelapse", sec, "1200s", "duration of gratuitous ARPs"),
					{name: "name", kind: kString, doc: "network interface of the VIPs, the same on both nodes; default: the interface that holds an address of the VIP's network"},
				},
				children: []*elemSpec{
					{tag: "real_interface", doc: "the VIPs of a mirror, carried by the interface's own MAC address", children: []*elemSpec{virtualAddrSpec}},
					{tag: "virtual_interface", notEnforced: "its virtual IPs (a farm's, or a mirror's on a virtual MAC) are not set by this version",
						attrs: []attrSpec{
							enumAttr("type", "", []string{"vmac_directed", "vmac_invisible"}, "load-balancing method"),
							{name: "addr", kind: kString, doc: "virtual MAC address"},
						},
						children: []*elemSpec{virtualAddrSpec}},
				}}}},
			{tag: "loadbalancing_list", notEnforced: "load balancing is not done by this version", children: []*elemSpec{{tag: "group", many: true,
				attrs: []attrSpec{{name: "name", kind: kString, required: true, doc: "group name"}},
				children: []*elemSpec{
					{tag: "cluster", children: []*elemSpec{{tag: "host", many: true, attrs: []attrSpec{
						{name: "name", kind: kString, required: true, doc: "cluster.xml node name"},
						intAttr("power", 0, "1", "relative weight; 0 = no traffic"),
					}}}},
					{tag: "rule", many: true, attrs: []attrSpec{
						{name: "virtual_addr", kind: kString, def: "*", doc: "VIP the rule applies to"},
						{name: "port", kind: kPort, enum: []string{"*"}, def: "*", doc: "TCP/UDP port"},
						{name: "proto", kind: kEnum, enum: []string{"udp", "tcp", "arp"}, required: true},
						{name: "filter", kind: kEnum, enum: []string{"on_addr", "on_port", "on_ipid"}, required: true},
					}},
				}}}},
		}}

	replicatedSpec = &elemSpec{tag: "replicated", many: true, doc: "one replicated directory",
		attrs: []attrSpec{
			{name: "dir", kind: kPath, required: true, doc: "absolute path of the directory"},
			enumAttr("mode", "", []string{"read_only"}, "read-only on the secondary (always the case on Linux)"),
		},
		children: []*elemSpec{
			{tag: "tocheck", many: true, doc: "a path that must exist before replication starts",
				attrs: []attrSpec{{name: "path", kind: kRelPath, required: true}}},
			{tag: "notreplicated", many: true, doc: "an excluded path or pattern",
				attrs: []attrSpec{
					{name: "path", kind: kRelPath, doc: "path relative to the replicated directory"},
					{name: "regexpath", kind: kString, doc: "POSIX ERE; a leading ! replicates only the matching entries"},
				}},
		}}

	rfsSpec = &elemSpec{tag: "rfs", doc: "real-time file replication (mirror only)",
		attrs: []attrSpec{
			onOff("acl", "off", "replicate ACLs"),
			enumAttr("async", "second", []string{"second", "none"}, "second: the secondary acknowledges on receipt; none: after its write"),
			timeAttr("iotimeout", sec, "300s", "Windows: filter I/O timeout"),
			{name: "roflags", kind: kString, def: "0x10", doc: "Windows: read-only flags"},
			timeAttr("locktimeout", sec, "100s", "replication request timeout; on expiry the primary goes ALONE"),
			timeAttr("sendtimeout", sec, "30s", "TCP send timeout to the peer"),
			intAttr("nbrei", 1, "6", "parallel reintegration threads"),
			intAttr("ruzone_blocksize", 1, "8388608", "zone size of the modification bitmap, in bytes"),
			enumAttr("namespacepolicy", "4", []string{"0", "1", "3", "4"}, "zone reintegration policy"),
			timeAttr("reitimeout", sec, "150s", "reintegration request timeout"),
			intAttr("reicommit", 0, "0", "commit every n*reipacketsize while reintegrating"),
			onOff("reidetail", "off", "detailed reintegration log"),
			intAttr("allocthreshold", 0, "0", "Windows: preallocation threshold in GB"),
			intAttr("nbremconn", 1, "1", "TCP connections between the nodes"),
			timeAttr("checktime", ms, "220000ms", "timeout of the null request that checks the replicated file system"),
			timeAttr("checkintv", sec, "120s", "interval between null requests"),
			enumAttr("nfsbox_options", "cross", []string{"cross", "nocross"}, "Windows: reparse points"),
			onOff("scripts", "off", "call the _rfs_* callback scripts"),
			intAttr("reiallowedbw", 0, "0", "reintegration bandwidth cap in KB/s; 0 = no limit"),
			timeAttr("syncdelta", mins, "0m", "a stale node may become primary if its last sync is younger than this"),
			{name: "syncat", kind: kString, doc: "scheduled synchronisation (cron syntax)"},
			{name: "mountoversuffix", kind: kString, def: "_For_SafeKit_Replication", doc: "suffix of the renamed replicated directory"},
			intAttr("packetsize", 1, "", "replication packet size in bytes"),
			intAttr("reipacketsize", 1, "8388608", "maximum reintegration packet size in bytes"),
			{name: "mountover", kind: kOnOff, doc: "legacy switch, accepted and without effect"},
		},
		children: []*elemSpec{replicatedSpec,
			{tag: "flow", doc: "lan of the replication flow (legacy)",
				attrs:    []attrSpec{{name: "name", kind: kString, doc: "lan of cluster.xml"}},
				children: []*elemSpec{serverSpec}}}}

	userSpec = &elemSpec{tag: "user", doc: "module scripts; without it no script runs",
		attrs: []attrSpec{
			timeAttr("nicestoptimeout", sec, "300s", "timeout of a graceful stop script"),
			timeAttr("forcestoptimeout", sec, "300s", "timeout of a forced stop script"),
			enumAttr("logging", "userlog", []string{"userlog", "none"}, "where script output goes"),
			intAttr("userlogsize", 1, "2048", "cap in KB on the module's script logs"),
		},
		children: []*elemSpec{{tag: "var", many: true, doc: "environment variable of every script",
			attrs: []attrSpec{
				{name: "name", kind: kString, required: true},
				{name: "value", kind: kString, emptyOK: true},
			}}}}

	vhostSpec = &elemSpec{tag: "vhost", notEnforced: "virtual hostnames are not set by this version",
		children: []*elemSpec{{tag: "virtualhostname", many: true, attrs: []attrSpec{
			{name: "name", kind: kString, required: true},
			{name: "envfile", kind: kString, required: true},
			enumAttr("when", "prim", []string{"prim", "second", "both"}, ""),
		}}}}

	errdSpec = &elemSpec{tag: "errd", doc: "process and service monitoring (errd): every `polltimer` each monitored <proc> is polled; one that fails sets its resource proc.<name> down and runs its `action` at once; `safekit errd off|on` suspends and resumes all of it, `safekit errd list` shows it",
		attrs: []attrSpec{timeAttr("polltimer", sec, "30s", "polling period; the first poll comes one period after the monitoring starts")},
		children: []*elemSpec{{tag: "proc", many: true, doc: "a process (by command name, `nameregex`, `argregex`, read from /proc) or a systemd service (`service=\"yes\"`, active when `systemctl is-active` says so) that must run, monitored while the window of its `class` is open",
			attrs: []attrSpec{
				{name: "name", kind: kString, required: true, doc: "command name (compared as the kernel truncates it, to 15 bytes) or service name; names the resource proc.<name>, unique in <errd>"},
				{name: "service", kind: kYesNo, def: "no", doc: "yes: a systemd service"},
				{name: "nameregex", kind: kString, doc: "POSIX extended regular expression searched in the command name instead of `name`"},
				{name: "argregex", kind: kString, doc: "POSIX extended regular expression searched in the arguments, the executable first, joined by spaces"},
				intAttr("atleast", -1, "1", "act when fewer processes run; -1 disables"),
				intAttr("atmax", -1, "-1", "act when this many run (0: as soon as one runs); -1 disables"),
				{name: "action", kind: kString, def: "stopstart", doc: "restart, stopstart, stop (counted toward maxloop), noaction, or a handler: a program of SAFEUSERBIN or an absolute path, whose failure calls a stopstart"},
				{name: "restart_services", kind: kString, doc: "with service=\"yes\" and action=\"restart\": the restart's scripts get -Services \"<list>\""},
				{name: "class", kind: kString, required: true, doc: "pre, prim, both, second or sec: monitored after prestart or start_<class> until poststop or stop_<class>; any other name: switched by the scripts with safekit errd enable|disable"},
				intAttr("start_after", 0, "0", "skip the first n-1 polls"),
				{name: "cpu", kind: kInt, obsolete: "undocumented (SafeKit 8.2.5 for Windows)"},
			}}}}

	customSpec = &elemSpec{tag: "custom", many: true, doc: "custom checker",
		attrs: []attrSpec{
			{name: "ident", kind: kString, required: true},
			{name: "when", kind: kEnum, enum: checkerWhen, required: true},
			{name: "exec", kind: kString, required: true},
			{name: "arg", kind: kString, emptyOK: true},
			enumAttr("action", "noaction", checkerActions, ""),
		}}

	checkSpec = &elemSpec{tag: "check", doc: "checkers",
		children: []*elemSpec{
			{tag: "tcp", many: true, doc: "TCP checker (tcpcheck): every `interval` it connects to `addr`:`port`, within `timeout`; its resource tcp.<ident> is up when the connection succeeds, down otherwise, and down runs `action` (rule t_<ident>)",
				attrs: []attrSpec{
					{name: "ident", kind: kString, required: true},
					{name: "when", kind: kEnum, enum: checkerWhen, required: true},
					enumAttr("action", "", checkerActions, "default: restart (wait with when=\"pre\")"),
				},
				children: []*elemSpec{toSpec(
					attrSpec{name: "addr", kind: kAddr, required: true},
					attrSpec{name: "port", kind: kPort, required: true},
					timeAttr("interval", sec, "10s", ""),
					timeAttr("timeout", sec, "5s", ""))}},
			{tag: "ping", many: true, doc: "ping checker (pingcheck): every `interval` it pings `addr` once and waits `timeout` for the answer; its resource ping.<ident> is up when it answers, down otherwise, and down runs `action` (rule p_<ident>)",
				attrs: []attrSpec{
					{name: "ident", kind: kString, required: true},
					enumAttr("when", "pre", checkerWhen, ""),
					enumAttr("action", "", checkerActions, "default: wait (restart with when other than pre)"),
				},
				children: []*elemSpec{toSpec(
					attrSpec{name: "addr", kind: kAddr, required: true},
					timeAttr("interval", sec, "10s", ""),
					timeAttr("timeout", sec, "5s", ""))}},
			{tag: "intf", many: true, doc: "interface checker (intfcheck): every 10 s it tests that `local_addr` is configured on an interface that is up and has its link (carrier); its resource intf.<ident> is down otherwise, which holds the module in WAIT until it is up again (rule interface_failure)",
				attrs: []attrSpec{
					{name: "ident", kind: kString, required: true},
					enumAttr("when", "pre", checkerWhen, ""),
				},
				children: []*elemSpec{toSpec(attrSpec{name: "local_addr", kind: kAddr, required: true})}},
			{tag: "ip", many: true, doc: "IP checker (ipcheck): every `interval` it tests that `addr` is configured on an interface of this node; its resource ip.<ident> is down otherwise, which stops and starts the module (rule ip_failure)",
				attrs: []attrSpec{
					{name: "ident", kind: kString, required: true},
					enumAttr("when", "", []string{"prim", "both"}, "default: prim in a mirror, both otherwise"),
				},
				children: []*elemSpec{toSpec(
					attrSpec{name: "addr", kind: kAddr, required: true},
					timeAttr("interval", sec, "10s", ""))}},
			customSpec,
			{tag: "module", many: true, doc: "module checker (modulecheck): from the start of this module, every `interval` it asks the web service of `<to>` (default: this node) for the state of module `name`; its resource module.<ident>, or module.<name>_<addr> without ident, is up while that module is PRIM, ALONE or UP and Ready, down otherwise, which holds this module in WAIT (rule module_failure); when that module starts again (a restart, a stopstart, a failover), this one, if it runs, stops and starts again",
				attrs: []attrSpec{
					{name: "ident", kind: kString, doc: "id of the resource module.<ident>; default: <name>_<addr>"},
					{name: "name", kind: kString, required: true, doc: "the module this one depends on"},
				},
				children: []*elemSpec{toSpec(
					attrSpec{name: "addr", kind: kAddr, required: true},
					attrSpec{name: "port", kind: kPort, def: "9010"},
					timeAttr("interval", sec, "10s", ""),
					timeAttr("timeout", sec, "5s", ""),
					onOff("secure", "off", "use HTTPS"))}},
			{tag: "splitbrain", doc: "mirror only: a node that loses its peer pings the witnesses (`arg`) and goes ALONE only if one answers; otherwise it stops its application and waits (`splitbrain_failure`), checking again every failover period, until a witness answers or the peer comes back",
				attrs: []attrSpec{
					{name: "ident", kind: kString, required: true},
					{name: "exec", kind: kEnum, enum: []string{"ping"}, required: true},
					{name: "arg", kind: kString, required: true, doc: "witness addresses separated by spaces"},
					enumAttr("when", "pre", []string{"pre"}, ""),
				}},
		}}

	failoverSpec = &elemSpec{tag: "failover", notEnforced: "its rules are kept and not evaluated by this version",
		attrs: []attrSpec{
			{name: "extends", kind: kYesNo, def: "yes", doc: "add to the default rules (yes) or replace them (no)"},
			timeAttr("period", ms, "5000ms", "evaluation period of the rules"),
			timeAttr("handle_time", ms, "15000ms", "time an action must hold before it is applied"),
		}}

	serviceSpec = &elemSpec{tag: "service", doc: "module type and global behaviour",
		attrs: []attrSpec{
			{name: "mode", kind: kEnum, enum: []string{"mirror", "farm", "light"}, required: true},
			enumAttr("boot", "ignore", []string{"off", "on", "auto", "ignore"}, "start at boot"),
			timeAttr("boot_delay", sec, "0s", "delay before the start at boot"),
			onOff("failover", "on", "mirror: the secondary takes over when the primary fails"),
			{name: "defaultprim", kind: kString, def: "alone", doc: "alone, lastprim or a node name"},
			intAttr("maxloop", 0, "3", "checker actions allowed within loop_interval"),
			timeAttr("loop_interval", hour, "24h", "window of maxloop; 0 disables it"),
			onOff("automatic_reboot", "off", "a stopstart reboots the server"),
		},
		children: []*elemSpec{heartSpec, farmSpec, vipSpec, rfsSpec, userSpec, vhostSpec, errdSpec, checkSpec, failoverSpec}}

	macroSpec = &elemSpec{tag: "macro", many: true, doc: "textual macro %name%",
		attrs: []attrSpec{
			{name: "name", kind: kString, required: true},
			{name: "value", kind: kString, emptyOK: true},
		}}

	userconfigSpec = &elemSpec{tag: "safe", children: []*elemSpec{macroSpec, serviceSpec}}
)

var clusterSpec = &elemSpec{tag: "cluster", children: []*elemSpec{{tag: "lans",
	attrs: []attrSpec{
		{name: "port", kind: kPort, def: "4800", doc: "UDP port of cluster membership"},
		timeAttr("pulse", ms, "100ms", "interval between membership packets"),
		intAttr("mlost_count", 1, "20", ""),
		intAttr("slost_count", 1, "10", ""),
	},
	children: []*elemSpec{{tag: "lan", many: true,
		attrs: []attrSpec{
			{name: "name", kind: kString, required: true},
			onOff("command", "off", "this lan carries distributed commands"),
			{name: "console", kind: kOnOff, obsolete: "obsolete since SafeKit 8.2"},
			{name: "framework", kind: kOnOff, obsolete: "obsolete since SafeKit 8.2"},
			{name: "connect", kind: kOnOff, obsolete: "obsolete since SafeKit 8.2"},
		},
		children: []*elemSpec{{tag: "node", many: true, attrs: []attrSpec{
			{name: "name", kind: kString, required: true},
			{name: "addr", kind: kAddr, required: true},
			{name: "laddr", kind: kAddr, doc: "local address behind NAT"},
		}}}}}}}}
