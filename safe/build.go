package safe

import (
	"fmt"
	"net"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/beevik/etree"
)

// The builders turn the expanded, schema-checked tree into the typed Config.
// Checks that concern one element and its children are done here, where the
// element (and so its position) is at hand; checks that need the whole
// module are in checkWholeModule.

// attrs reads the attributes of one element with the defaults of its spec.
// Values were checked by validate; an invalid one reads as the default.
type attrs struct {
	e    *etree.Element
	spec *elemSpec
}

func at(e *etree.Element, spec *elemSpec) attrs { return attrs{e, spec} }

func (a attrs) has(name string) bool { return a.e.SelectAttr(name) != nil }

func (a attrs) str(name string) string {
	if v := a.e.SelectAttrValue(name, ""); v != "" {
		return v
	}
	if s := a.spec.attr(name); s != nil {
		return s.def
	}
	return ""
}

func (a attrs) int(name string) int {
	if n, err := strconv.Atoi(a.e.SelectAttrValue(name, "")); err == nil {
		return n
	}
	if s := a.spec.attr(name); s != nil {
		n, _ := strconv.Atoi(s.def)
		return n
	}
	return 0
}

func (a attrs) dur(name string) Duration {
	s := a.spec.attr(name)
	if s == nil {
		return 0
	}
	if d, err := parseTime(name, a.e.SelectAttrValue(name, ""), s.unit); err == nil {
		return Duration(d)
	}
	d, _ := parseTime(name, s.def, s.unit)
	return Duration(d)
}

func (a attrs) on(name string) bool {
	v := a.str(name)
	return v == "on" || v == "yes"
}

func (c *checker) buildService(e *etree.Element, fragment bool) {
	a := at(e, serviceSpec)
	c.cfg.Service = Service{
		Mode:            Mode(a.str("mode")),
		Boot:            a.str("boot"),
		BootDelay:       a.dur("boot_delay"),
		Failover:        a.on("failover"),
		DefaultPrim:     a.str("defaultprim"),
		MaxLoop:         a.int("maxloop"),
		LoopInterval:    a.dur("loop_interval"),
		AutomaticReboot: a.on("automatic_reboot"),
	}
	for _, ch := range e.ChildElements() {
		// A repeated section was refused by validate; only the first one is
		// built, the one checkWholeModule finds with SelectElement.
		if cs := serviceSpec.child(ch.Tag); cs != nil && e.SelectElement(ch.Tag) == ch {
			c.buildSection(ch, cs, "service")
		}
	}
}

// buildSection builds a section of <service>, or, in a fragment, one of the
// elements a fragment may start with.
func (c *checker) buildSection(e *etree.Element, spec *elemSpec, parent string) {
	if spec.notEnforced != "" {
		c.warnf(e, "loaded and checked, but %s", spec.notEnforced)
	}
	switch e.Tag {
	case "heart":
		c.cfg.Heart = c.buildHeart(e)
	case "farm":
		c.cfg.Farm = c.buildFarm(e)
	case "vip":
		c.cfg.VIP = c.buildVIP(e)
	case "rfs":
		c.cfg.RFS = c.buildRFS(e)
	case "replicated":
		r := c.buildRFS(etree.NewElement("rfs"))
		r.Replicated = []Replicated{c.buildReplicated(e)}
		c.cfg.RFS = r
	case "user":
		c.cfg.User = c.buildUser(e)
	case "vhost":
		c.cfg.VHost = c.buildVHost(e)
	case "errd":
		c.cfg.Errd = c.buildErrd(e)
	case "check":
		c.buildCheck(e)
	case "module":
		c.buildChecker(e, checkSpec.child("module"))
	case "failover":
		c.cfg.Failover = c.buildFailover(e)
	case "service":
		c.buildService(e, true)
	case "macro":
		c.cfg.Macros = append(c.cfg.Macros, c.macros([]*etree.Element{e})...)
	}
}

func (c *checker) buildHeart(e *etree.Element) *Heart {
	a := at(e, heartSpec)
	h := &Heart{Port: a.int("port"), Pulse: a.dur("pulse"), Timeout: a.dur("timeout"), PermanentARP: a.on("permanent_arp")}
	idents := map[string]*etree.Element{}
	lans := map[string]*etree.Element{}
	for _, hb := range e.SelectElements("heartbeat") {
		ha := at(hb, heartbeatSpec)
		b := Heartbeat{Lan: ha.str("name"), Ident: ha.str("ident"), Pulse: h.Pulse, Timeout: h.Timeout, Pos: c.pos[hb]}
		if ha.has("pulse") {
			b.Pulse = ha.dur("pulse")
		}
		if ha.has("timeout") {
			b.Timeout = ha.dur("timeout")
		}
		for _, s := range hb.SelectElements("server") {
			b.Servers = append(b.Servers, s.SelectAttrValue("addr", ""))
			c.syntax(s, true)
		}
		switch {
		case b.Lan != "":
			c.syntax(hb, false)
		case !ha.has("name") && len(b.Servers) == 0:
			c.attrErrorf(hb, "name", `missing attribute name: set it to a lan of cluster.xml, e.g. name="default"`)
		}
		if b.Ident == "" {
			b.Ident = b.Lan
		}
		if b.Ident == "" && len(b.Servers) > 0 {
			b.Ident = strconv.Itoa(len(h.Heartbeats)) // legacy resources are heartbeat.0, heartbeat.1...
		}
		if f, dup := idents[b.Ident]; dup && b.Ident != "" {
			// The ident is the lan name unless it is written.
			attr := "ident"
			if !ha.has("ident") {
				attr = "name"
			}
			c.attrErrorf(hb, attr, "two heartbeats are named %q (the other at line %d): give each one its own ident", b.Ident, c.pos[f].Line)
		}
		idents[b.Ident] = hb
		if f, dup := lans[b.Lan]; dup && b.Lan != "" {
			c.attrErrorf(hb, "name", "two heartbeats use the lan %q (the other at line %d): one heartbeat per lan", b.Lan, c.pos[f].Line)
		}
		lans[b.Lan] = hb
		if b.Timeout <= b.Pulse {
			// The values may come from <heart>; the attribute is named
			// when the heartbeat sets one.
			attr := ""
			switch {
			case ha.has("timeout"):
				attr = "timeout"
			case ha.has("pulse"):
				attr = "pulse"
			}
			c.attrErrorf(hb, attr, "timeout %s is not longer than pulse %s: the heartbeat would be declared lost between two packets", b.Timeout, b.Pulse)
		}
		h.Heartbeats = append(h.Heartbeats, b)
	}
	if len(h.Heartbeats) == 0 {
		c.errorf(e, `<heart> needs at least one <heartbeat name="..."> (one per lan of cluster.xml)`)
	}
	return h
}

func (c *checker) buildFarm(e *etree.Element) *Farm {
	a := at(e, farmSpec)
	f := &Farm{Port: a.int("port"), Pulse: a.dur("pulse"), MlostCount: a.int("mlost_count"), SlostCount: a.int("slost_count")}
	lanSpec := farmSpec.child("lan")
	for _, l := range e.SelectElements("lan") {
		fl := FarmLan{Name: at(l, lanSpec).str("name"), Pos: c.pos[l]}
		for _, n := range l.SelectElements("node") {
			fl.Nodes = append(fl.Nodes, LegacyNode{Name: n.SelectAttrValue("name", ""), Addr: n.SelectAttrValue("addr", "")})
			// In a mirror, <farm><lan><node> is the legacy form of a vmac VIP
			// (KB SK-0043), accepted with a warning, not the pre-7.2
			// addressing of the module; elsewhere it is.
			if c.cfg.Service.Mode != ModeMirror {
				c.syntax(n, true)
			}
		}
		if fl.Name != "" {
			c.syntax(l, false)
		} else if len(fl.Nodes) == 0 && l.SelectAttr("name") == nil {
			c.attrErrorf(l, "name", `missing attribute name: set it to a lan of cluster.xml, e.g. name="default"`)
		}
		f.Lans = append(f.Lans, fl)
	}
	if len(f.Lans) == 0 {
		c.errorf(e, `<farm> needs at least one <lan name="..."> (a lan of cluster.xml)`)
	}
	return f
}

func (c *checker) buildVIP(e *etree.Element) *VIP {
	a := at(e, vipSpec)
	v := &VIP{TCPReset: a.on("tcpreset"), ScriptControl: a.on("scriptcontrol")}
	listSpec := vipSpec.child("interface_list")
	ifSpec := listSpec.child("interface")
	for _, list := range e.SelectElements("interface_list") {
		for _, ie := range list.SelectElements("interface") {
			ia := at(ie, ifSpec)
			vi := VIPInterface{Check: ia.on("check"), ARPReroute: ia.on("arpreroute"),
				ARPInterval: ia.dur("arpinterval"), ARPElapse: ia.dur("arpelapse"), Name: ia.str("name")}
			real, virt := ie.SelectElement("real_interface"), ie.SelectElement("virtual_interface")
			switch {
			case real == nil && virt == nil:
				c.errorf(ie, "<interface> needs <real_interface> (mirror) or <virtual_interface> (farm)")
				continue
			case real != nil && virt != nil:
				c.errorf(virt, "<interface> has both <real_interface> and <virtual_interface>: keep one")
			}
			holder := real
			defWhere := "one_side_alias"
			if virt != nil {
				c.warnf(virt, "loaded and checked, but %s", ifSpec.child("virtual_interface").notEnforced)
			}
			if real == nil {
				holder = virt
				defWhere = "alias"
				vi.VirtualType = virt.SelectAttrValue("type", "")
				vi.VirtualMAC = virt.SelectAttrValue("addr", "")
				if vi.VirtualType == "" && virt.SelectAttr("type") == nil {
					c.attrErrorf(virt, "type", `missing attribute type: set it to "vmac_directed" or "vmac_invisible"`)
				}
				if vi.VirtualType == "vmac_invisible" && vi.ARPReroute {
					c.attrErrorf(ie, "arpreroute", `arpreroute="on" does not work with a vmac_invisible virtual interface: set arpreroute="off"`)
				}
			}
			vaSpec := ifSpec.child("real_interface").child("virtual_addr")
			for _, va := range holder.SelectElements("virtual_addr") {
				aa := at(va, vaSpec)
				where := aa.str("where")
				if where == "" {
					where = defWhere
				}
				if real == nil && where == "one_side" {
					c.attrErrorf(va, "where", `where="one_side" is for a <real_interface>: use "alias" or "one_side_alias"`)
				}
				if real != nil && where == "alias" {
					c.attrErrorf(va, "where", `where="alias" is for the <virtual_interface> of a farm: a mirror uses "one_side_alias"`)
				}
				addr := VirtualAddr{Addr: aa.str("addr"), Where: where, Check: aa.on("check"),
					Connections: aa.on("connections"), Netmask: aa.str("netmask")}
				if addr.Connections {
					c.attrWarnf(va, "connections", `connections="on": the connections of %s are not counted by this version (no resource connections.%s)`, addr.Addr, addr.Addr)
				}
				if addr.Netmask != "" {
					addr.PrefixLen = c.netmask(va, addr.Addr, addr.Netmask)
				}
				vi.Addrs = append(vi.Addrs, addr)
			}
			if len(vi.Addrs) == 0 {
				c.errorf(holder, "<%s> needs at least one <virtual_addr addr=\"...\">", holder.Tag)
			}
			v.Interfaces = append(v.Interfaces, vi)
		}
	}
	groupSpec := vipSpec.child("loadbalancing_list").child("group")
	for _, list := range e.SelectElements("loadbalancing_list") {
		c.warnf(list, "loaded and checked, but %s", vipSpec.child("loadbalancing_list").notEnforced)
		for _, ge := range list.SelectElements("group") {
			g := LBGroup{Name: ge.SelectAttrValue("name", "")}
			if cl := ge.SelectElement("cluster"); cl != nil {
				hostSpec := groupSpec.child("cluster").child("host")
				for _, h := range cl.SelectElements("host") {
					g.Hosts = append(g.Hosts, LBHost{Name: h.SelectAttrValue("name", ""), Power: at(h, hostSpec).int("power")})
				}
			}
			ruleSpec := groupSpec.child("rule")
			for _, r := range ge.SelectElements("rule") {
				ra := at(r, ruleSpec)
				rule := LBRule{VirtualAddr: ra.str("virtual_addr"), Port: ra.str("port"), Proto: ra.str("proto"), Filter: ra.str("filter")}
				if rule.Proto == "arp" && rule.Filter != "on_addr" {
					c.attrErrorf(r, "filter", `proto="arp" works only with filter="on_addr"`)
				}
				if rule.Filter == "on_ipid" && rule.Proto == "tcp" {
					c.attrErrorf(r, "filter", `filter="on_ipid" is for UDP: use "on_addr" or "on_port" with TCP`)
				}
				g.Rules = append(g.Rules, rule)
			}
			if len(g.Rules) == 0 {
				c.errorf(ge, `a load-balancing <group> needs at least one <rule proto="..." filter="..."/>`)
			}
			v.Groups = append(v.Groups, g)
		}
	}
	return v
}

// netmask reads <virtual_addr netmask> as a prefix length: a dotted IPv4
// netmask (255.255.255.0) or the length itself (24, or 64 for an IPv6 VIP).
// It reports a value that is neither, or that does not fit the address.
func (c *checker) netmask(va *etree.Element, addr, mask string) int {
	ip := net.ParseIP(strings.Trim(addr, "[]"))
	v6 := ip != nil && ip.To4() == nil
	bits, dotted := 0, false
	if n, err := strconv.Atoi(mask); err == nil {
		bits = n
	} else if m := net.ParseIP(mask).To4(); m != nil {
		ones, size := net.IPMask(m).Size()
		if size == 0 {
			c.attrErrorf(va, "netmask", "netmask %q is not a netmask: its ones must come first (255.255.255.0), or give a prefix length such as 24", mask)
			return 0
		}
		bits, dotted = ones, true
	} else {
		c.attrErrorf(va, "netmask", "netmask %q is neither a dotted netmask (255.255.255.0) nor a prefix length (24)", mask)
		return 0
	}
	maxBits := 32
	if v6 || (ip == nil && !dotted) {
		// A name may stand for an IPv6 address.
		maxBits = 128
	}
	switch {
	case dotted && v6:
		c.attrErrorf(va, "netmask", "netmask %q is an IPv4 netmask and %s an IPv6 address: give a prefix length such as 64", mask, addr)
	case bits < 1 || bits > maxBits:
		c.attrErrorf(va, "netmask", "netmask %q does not fit %s: give a prefix length from 1 to %d", mask, addr, maxBits)
	default:
		return bits
	}
	return 0
}

func (c *checker) buildRFS(e *etree.Element) *RFS {
	a := at(e, rfsSpec)
	ns, _ := strconv.Atoi(a.str("namespacepolicy"))
	r := &RFS{
		ACL: a.on("acl"), Async: a.str("async"), IOTimeout: a.dur("iotimeout"), ROFlags: a.str("roflags"),
		LockTimeout: a.dur("locktimeout"), SendTimeout: a.dur("sendtimeout"), NbRei: a.int("nbrei"),
		RUZoneBlockSize: a.int("ruzone_blocksize"), NamespacePolicy: ns, ReiTimeout: a.dur("reitimeout"),
		ReiCommit: a.int("reicommit"), ReiDetail: a.on("reidetail"), AllocThreshold: a.int("allocthreshold"),
		NbRemConn: a.int("nbremconn"), CheckTime: a.dur("checktime"), CheckIntv: a.dur("checkintv"),
		NFSBoxOptions: a.str("nfsbox_options"), Scripts: a.on("scripts"), ReiAllowedBW: a.int("reiallowedbw"),
		SyncDelta: a.dur("syncdelta"), SyncAt: a.str("syncat"), MountOverSuffix: a.str("mountoversuffix"),
		PacketSize: a.int("packetsize"), ReiPacketSize: a.int("reipacketsize"), MountOver: e.SelectAttrValue("mountover", ""),
	}
	if r.ReiPacketSize > 0 && r.RUZoneBlockSize%r.ReiPacketSize != 0 {
		c.attrErrorf(e, "ruzone_blocksize", "ruzone_blocksize %d is not a multiple of reipacketsize %d: make it one", r.RUZoneBlockSize, r.ReiPacketSize)
	}
	if strings.ContainsAny(r.MountOverSuffix, `/\`) {
		c.attrErrorf(e, "mountoversuffix", "mountoversuffix %q contains a path separator: use a plain suffix such as \"_For_SafeKit_Replication\"", r.MountOverSuffix)
	}
	if e.Parent() == nil && len(e.ChildElements()) == 0 {
		return r // the holder of a <replicated> fragment
	}
	dirs := map[string]*etree.Element{}
	var order []string // the keys of dirs in file order, for a stable order of diagnostics
	for _, re := range e.SelectElements("replicated") {
		rep := c.buildReplicated(re)
		if rep.Dir != "" {
			for _, d := range order {
				other := dirs[d]
				switch {
				case d == rep.Dir:
					c.attrErrorf(re, "dir", "directory %q is replicated twice (also at line %d): keep one <replicated>", rep.Dir, c.pos[other].Line)
				case isUnder(rep.Dir, d) || isUnder(d, rep.Dir):
					c.attrErrorf(re, "dir", "directory %q and %q (line %d) are nested: replicate only the outer one", rep.Dir, d, c.pos[other].Line)
				}
			}
			if _, ok := dirs[rep.Dir]; !ok {
				order = append(order, rep.Dir)
			}
			dirs[rep.Dir] = re
		}
		r.Replicated = append(r.Replicated, rep)
	}
	if len(r.Replicated) == 0 {
		c.errorf(e, `<rfs> needs at least one <replicated dir="..."/>`)
	}
	if fe := e.SelectElement("flow"); fe != nil {
		f := &Flow{Lan: fe.SelectAttrValue("name", "")}
		for _, s := range fe.SelectElements("server") {
			f.Servers = append(f.Servers, s.SelectAttrValue("addr", ""))
			c.syntax(s, true)
		}
		if f.Lan != "" {
			c.syntax(fe, false)
		}
		r.Flow = f
	}
	return r
}

// isUnder tells whether dir is strictly inside parent.
func isUnder(dir, parent string) bool {
	sep := "/"
	if isWindowsPath(parent) {
		sep = `\`
		dir, parent = strings.ToLower(dir), strings.ToLower(parent)
	}
	return strings.HasPrefix(dir, strings.TrimSuffix(parent, sep)+sep)
}

func (c *checker) buildReplicated(e *etree.Element) Replicated {
	a := at(e, replicatedSpec)
	dir := a.str("dir")
	rep := Replicated{ReadOnly: a.str("mode") == "read_only", Pos: c.pos[e]}
	switch {
	case c.isPlaceholder(e, "dir", dir):
		// reported by validate
	case isWindowsPath(dir):
		c.markWindows(e, fmt.Sprintf("replicated dir %q", dir))
		rep.Dir = strings.TrimRight(dir, `\`)
		if len(rep.Dir) == 2 {
			c.attrErrorf(e, "dir", "dir %q is the root of a drive: replicate a directory inside it", dir)
		}
	case !strings.HasPrefix(dir, "/"):
		c.attrErrorf(e, "dir", "dir %q is not an absolute path: write the full path, e.g. %q%s", dir, "/"+strings.TrimLeft(dir, "./"), c.undefinedHint(e, "dir"))
	default:
		rep.Dir = path.Clean(dir)
		if rep.Dir == "/" {
			c.attrErrorf(e, "dir", `dir "/" is the root of the file system: replicate a directory inside it`)
		}
		if strings.ContainsAny(rep.Dir, " \t") {
			c.attrErrorf(e, "dir", "dir %q contains a blank: replicated paths with spaces are supported only on Windows; rename the directory", dir)
		}
	}
	ncSpec := replicatedSpec.child("notreplicated")
	for _, t := range e.SelectElements("tocheck") {
		rep.ToCheck = append(rep.ToCheck, t.SelectAttrValue("path", ""))
	}
	for _, n := range e.SelectElements("notreplicated") {
		na := at(n, ncSpec)
		nr := NotReplicated{Path: na.str("path"), RegexPath: na.str("regexpath")}
		switch {
		case na.has("path") && na.has("regexpath"):
			c.errorf(n, "<notreplicated> has both path and regexpath: use two elements")
		case !na.has("path") && !na.has("regexpath"):
			c.errorf(n, `<notreplicated> needs path="relative/path" or regexpath="expression"`)
		case nr.RegexPath != "":
			if _, err := regexp.CompilePOSIX(strings.TrimPrefix(nr.RegexPath, "!")); err != nil {
				c.attrErrorf(n, "regexpath", "regexpath %q is not a valid POSIX extended regular expression: %v", nr.RegexPath, unwrapRegexpErr(err))
			}
		}
		rep.NotReplicated = append(rep.NotReplicated, nr)
	}
	return rep
}

func unwrapRegexpErr(err error) string {
	return strings.TrimPrefix(err.Error(), "error parsing regexp: ")
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// reservedVars are set by SafeKit for every script; a <var> may not change
// them.
var reservedVars = []string{"SAFE", "SAFEBIN", "SAFEVAR", "SAFEMODULE", "SAFEUSERBIN", "SAFEUSERCONF", "SAFEUSERVAR"}

func (c *checker) buildUser(e *etree.Element) *User {
	a := at(e, userSpec)
	u := &User{NiceStopTimeout: a.dur("nicestoptimeout"), ForceStopTimeout: a.dur("forcestoptimeout"),
		Logging: a.str("logging"), UserLogSize: a.int("userlogsize")}
	seen := map[string]*etree.Element{}
	for _, v := range e.SelectElements("var") {
		name := v.SelectAttrValue("name", "")
		switch {
		case name == "":
		case !envNameRE.MatchString(name):
			c.attrErrorf(v, "name", "var name %q is not a valid environment variable name: use letters, digits and _", name)
		case contains(reservedVars, name):
			c.attrErrorf(v, "name", "var %s is set by SafeKit for every script: choose another name", name)
		}
		if f, dup := seen[name]; dup {
			c.attrErrorf(v, "name", "var %s is defined twice (first at line %d): keep one", name, c.pos[f].Line)
		}
		seen[name] = v
		u.Vars = append(u.Vars, Var{Name: name, Value: v.SelectAttrValue("value", "")})
	}
	return u
}

func (c *checker) buildVHost(e *etree.Element) *VHost {
	vs := vhostSpec.child("virtualhostname")
	h := &VHost{}
	for _, v := range e.SelectElements("virtualhostname") {
		a := at(v, vs)
		h.Hosts = append(h.Hosts, VirtualHostName{Name: a.str("name"), EnvFile: a.str("envfile"), When: a.str("when")})
	}
	return h
}

var errdActions = []string{"restart", "stopstart", "stop", "noaction"}
var errdClasses = []string{"prim", "both", "pre", "second", "sec"}

func (c *checker) buildErrd(e *etree.Element) *Errd {
	d := &Errd{PollTimer: at(e, errdSpec).dur("polltimer")}
	ps := errdSpec.child("proc")
	names := map[string]*etree.Element{}
	for _, p := range e.SelectElements("proc") {
		a := at(p, ps)
		pr := Proc{Name: a.str("name"), Service: a.on("service"), NameRegex: a.str("nameregex"), ArgRegex: a.str("argregex"),
			AtLeast: a.int("atleast"), AtMax: a.int("atmax"), Action: a.str("action"),
			RestartServices: a.str("restart_services"), Class: a.str("class"), StartAfter: a.int("start_after")}
		if f, dup := names[pr.Name]; dup && pr.Name != "" {
			c.attrErrorf(p, "name", "name %q is already used by the <proc> at line %d: both would set the resource proc.%s; rename one (with nameregex, name only names the resource)", pr.Name, c.pos[f].Line, pr.Name)
		} else {
			names[pr.Name] = p
		}
		if handler := !contains(errdActions, pr.Action); handler && contains(errdClasses, pr.Class) {
			c.attrErrorf(p, "action", "action %q is a special handler: give it its own class (not %q) and switch it with safekit errd enable|disable from the scripts", pr.Action, pr.Class)
		} else if handler && isWindowsScript(pr.Action) {
			c.markWindows(p, fmt.Sprintf("errd handler %q", pr.Action))
		} else if handler && pr.Action != "" && !isAbsPath(pr.Action) && c.opts.Scripts != nil && !contains(c.opts.Scripts, pr.Action) {
			c.attrErrorf(p, "action", "action %q is a special handler that is not in the module's bin/ directory: add bin/%s, give an absolute path, or use restart, stopstart, stop or noaction", pr.Action, pr.Action)
		}
		if pr.RestartServices != "" && (!pr.Service || pr.Action != "restart") {
			c.attrErrorf(p, "restart_services", `restart_services needs service="yes" and action="restart"`)
		}
		for _, rx := range []string{"nameregex", "argregex"} {
			if v := a.str(rx); v != "" {
				if _, err := regexp.CompilePOSIX(v); err != nil {
					c.attrErrorf(p, rx, "%s %q is not a valid POSIX extended regular expression: %s", rx, v, unwrapRegexpErr(err))
				}
			}
		}
		if strings.HasSuffix(strings.ToLower(pr.Name), ".exe") {
			c.markWindows(p, fmt.Sprintf("process %q", pr.Name))
		}
		d.Procs = append(d.Procs, pr)
	}
	if len(d.Procs) == 0 {
		c.errorf(e, `<errd> needs at least one <proc name="..." class="..."/>`)
	}
	return d
}

func (c *checker) buildCheck(e *etree.Element) {
	for _, ch := range e.ChildElements() {
		// As in buildService: a repeated <splitbrain> was refused by validate.
		if cs := checkSpec.child(ch.Tag); cs != nil && (cs.many || e.SelectElement(ch.Tag) == ch) {
			if cs.notEnforced != "" {
				c.warnf(ch, "loaded and checked, but %s", cs.notEnforced)
			}
			c.buildChecker(ch, cs)
		}
	}
}

func (c *checker) buildChecker(e *etree.Element, spec *elemSpec) {
	a := at(e, spec)
	ident, when, action := a.str("ident"), a.str("when"), a.str("action")
	var to *etree.Element
	if spec.child("to") != nil {
		to = e.SelectElement("to")
		if to == nil && e.Tag != "module" {
			c.errorf(e, "<%s> needs a <to .../> target", e.Tag)
		}
	}
	target := func() Target {
		if to == nil {
			return Target{}
		}
		ta := at(to, spec.child("to"))
		t := Target{Addr: ta.str("addr"), Port: ta.int("port"), Interval: ta.dur("interval"), Timeout: ta.dur("timeout"), Secure: ta.on("secure")}
		if e.Tag == "module" && t.Secure && !ta.has("port") {
			t.Port = 9453
		}
		return t
	}
	checkPre := func() {
		if when == "pre" && action != "wait" && action != "noaction" {
			c.attrErrorf(e, "action", `action %q is not allowed with when="pre" (the application is not running yet): use "wait" or "noaction"`, action)
		}
	}
	if ident != "" && e.Tag != "module" {
		key := e.Tag + "." + ident
		if f, dup := c.resources[key]; dup {
			c.attrErrorf(e, "ident", "ident %q is already used by the checker at line %d: both would set the resource %s; rename one", ident, c.pos[f].Line, key)
		}
		c.resources[key] = e
	}
	ch := &c.cfg.Check
	switch e.Tag {
	case "tcp":
		if action == "" {
			action = "restart"
			if when == "pre" {
				action = "wait"
			}
		}
		checkPre()
		ch.TCP = append(ch.TCP, TCPCheck{Ident: ident, When: when, Action: action, To: target()})
	case "ping":
		if action == "" {
			action = "wait"
			if when != "pre" {
				action = "restart"
			}
		}
		checkPre()
		if when != "pre" && action == "wait" {
			c.attrErrorf(e, "action", `action "wait" needs when="pre": with when=%q use "stop", "stopstart", "restart" or "noaction"`, when)
		}
		ch.Ping = append(ch.Ping, PingCheck{Ident: ident, When: when, Action: action, To: target()})
	case "intf":
		la := ""
		if to != nil {
			la = to.SelectAttrValue("local_addr", "")
		}
		ch.Intf = append(ch.Intf, IntfCheck{Ident: ident, When: when, LocalAddr: la})
	case "ip":
		if when == "" {
			// A farm or light module has no prim window.
			when = "both"
			if c.cfg.Service.Mode == ModeMirror {
				when = "prim"
			}
		}
		ch.IP = append(ch.IP, IPCheck{Ident: ident, When: when, To: target()})
	case "custom":
		checkPre()
		exec := a.str("exec")
		if isWindowsScript(exec) {
			c.markWindows(e, fmt.Sprintf("custom checker %q", exec))
		} else if exec != "" && !isAbsPath(exec) && c.opts.Scripts != nil && !contains(c.opts.Scripts, exec) {
			c.attrErrorf(e, "exec", "exec %q is not in the module's bin/ directory: add bin/%s or give an absolute path", exec, exec)
		}
		ch.Custom = append(ch.Custom, CustomCheck{Ident: ident, When: when, Exec: exec, Args: strings.Fields(a.str("arg")), Action: action})
	case "module":
		m := ModuleCheck{Ident: ident, Name: a.str("name")}
		if to != nil {
			t := target()
			m.To = &t
		}
		key := "module." + m.ResourceIdent()
		if f, dup := c.resources[key]; dup {
			c.errorf(e, "<module name=%q> and the one at line %d would both set the resource %s: remove one, or give each its own ident", m.Name, c.pos[f].Line, key)
		}
		c.resources[key] = e
		ch.Module = append(ch.Module, m)
	case "splitbrain":
		ch.Splitbrain = &SplitbrainCheck{Ident: ident, Witnesses: strings.Fields(a.str("arg")), When: when}
		for _, w := range ch.Splitbrain.Witnesses {
			if !validAddr(w) {
				c.attrErrorf(e, "arg", "witness %q is not an IP address or host name", w)
			}
		}
	}
}

var windowsScriptExt = []string{".ps1", ".cmd", ".bat", ".vbs", ".exe"}

func isWindowsScript(name string) bool {
	l := strings.ToLower(name)
	for _, ext := range windowsScriptExt {
		if strings.HasSuffix(l, ext) {
			return true
		}
	}
	return isWindowsPath(name)
}

func (c *checker) buildFailover(e *etree.Element) *Failover {
	a := at(e, failoverSpec)
	f := &Failover{Extends: a.on("extends"), Period: a.dur("period"), HandleTime: a.dur("handle_time")}
	for _, t := range e.Child {
		if cd, ok := t.(*etree.CharData); ok && strings.TrimSpace(cd.Data) != "" {
			f.Rules = append(f.Rules, strings.TrimSpace(cd.Data))
		}
	}
	if f.Period > 0 && f.HandleTime%f.Period != 0 {
		c.attrErrorf(e, "handle_time", "handle_time %s is not a multiple of period %s: make it one (e.g. %s)", f.HandleTime, f.Period, Duration((f.HandleTime/f.Period+1)*f.Period))
	}
	return f
}
