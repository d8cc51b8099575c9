package safe

import (
	"fmt"
	"slices"
	"strings"

	"github.com/beevik/etree"
)

// checkWholeModule runs the checks that need the whole module: sections
// that fit the mode, the sections a mode requires, names that refer to
// cluster.xml, syntax mixing, Windows modules.
func (c *checker) checkWholeModule(svc *etree.Element) {
	cfg := c.cfg
	section := func(tag string) *etree.Element { return svc.SelectElement(tag) }
	vmac := cfg.VIP != nil && hasVirtualInterface(cfg.VIP)

	switch cfg.Service.Mode {
	case ModeMirror:
		if cfg.Heart == nil {
			c.errorf(svc, `a mirror module needs <heart> with at least one <heartbeat name="..."> (one per lan of cluster.xml)`)
		}
		if f := section("farm"); f != nil {
			if vmac {
				c.warnf(f, "<farm> in a mirror module is the legacy form for a virtual MAC address (vmac); it is accepted")
			} else {
				c.errorf(f, "<farm> is for farm modules: a mirror module uses <heart>")
			}
		}
	case ModeFarm:
		if cfg.Farm == nil {
			c.errorf(svc, `a farm module needs <farm> with at least one <lan name="..."> (a lan of cluster.xml)`)
		}
		if h := section("heart"); h != nil {
			c.errorf(h, "<heart> is for mirror modules: a farm module uses <farm>")
		}
		if r := section("rfs"); r != nil {
			c.errorf(r, `<rfs> in a farm module: file replication needs a mirror module (mode="mirror")`)
		}
		if v := section("vip"); v != nil {
			for _, r := range v.FindElements("interface_list/interface/real_interface") {
				c.warnf(r, "a <real_interface> holds the VIPs of a mirror, set on its primary: a farm module does not set them (a farm uses a <virtual_interface>)")
			}
		}
		for _, attr := range []string{"failover", "defaultprim"} {
			if svc.SelectAttr(attr) != nil {
				c.attrWarnf(svc, attr, "attribute %s applies to mirror modules and is ignored in a farm", attr)
			}
		}
	case ModeLight:
		for _, tag := range []string{"heart", "farm", "rfs", "vip"} {
			if e := section(tag); e != nil {
				c.errorf(e, `<%s> is not used by a light module, which runs alone on one node: remove it or use mode="mirror" or "farm"`, tag)
			}
		}
	}
	if cfg.Service.Mode != ModeMirror && cfg.Check.Splitbrain != nil {
		if chk := section("check"); chk != nil {
			c.errorf(chk.SelectElement("splitbrain"), "the split-brain checker is for mirror modules")
		}
	}
	if e := section("errd"); e != nil && cfg.User == nil {
		c.errorf(e, "<errd> needs <user/>: add an empty <user/> to the service")
	}
	if dp := cfg.Service.DefaultPrim; cfg.Service.Mode == ModeMirror && dp != "alone" && dp != "lastprim" && c.opts.Cluster != nil {
		if !c.opts.Cluster.HasNode(dp) {
			c.attrErrorf(svc, "defaultprim", "defaultprim %q is not a node of cluster.xml (nodes: %s): use \"alone\", \"lastprim\" or a node name", dp, strings.Join(c.opts.Cluster.NodeNames(), ", "))
		}
	}
	if c.syntax71 != nil && c.syntax72 != nil {
		c.errorf(c.syntax71, "the pre-7.2 syntax (<%s> with addresses) cannot be mixed with the 7.2 syntax (<%s name=...> at line %d): refer to lans of cluster.xml and remove the addresses",
			c.syntax71.Tag, c.syntax72.Tag, c.pos[c.syntax72].Line)
	}
	c.checkLanNames(svc)
	c.checkWindows()
}

func hasVirtualInterface(v *VIP) bool {
	for _, i := range v.Interfaces {
		if i.VirtualType != "" {
			return true
		}
	}
	return false
}

// checkLanNames resolves and checks every lan name against cluster.xml.
func (c *checker) checkLanNames(svc *etree.Element) {
	cl := c.opts.Cluster
	cfg := c.cfg
	type ref struct {
		el   *etree.Element
		name *string
		what string
	}
	var refs []ref
	if cfg.Heart != nil {
		hbs := svc.SelectElement("heart").SelectElements("heartbeat")
		for i := range cfg.Heart.Heartbeats {
			if len(cfg.Heart.Heartbeats[i].Servers) == 0 {
				refs = append(refs, ref{hbs[i], &cfg.Heart.Heartbeats[i].Lan, "heartbeat"})
			}
		}
	}
	if cfg.Farm != nil {
		lans := svc.SelectElement("farm").SelectElements("lan")
		for i := range cfg.Farm.Lans {
			if len(cfg.Farm.Lans[i].Nodes) == 0 {
				refs = append(refs, ref{lans[i], &cfg.Farm.Lans[i].Name, "farm lan"})
			}
		}
	}
	if cfg.RFS != nil && cfg.RFS.Flow != nil && cfg.RFS.Flow.Lan != "" {
		refs = append(refs, ref{svc.SelectElement("rfs").SelectElement("flow"), &cfg.RFS.Flow.Lan, "flow"})
	}
	// A name that is absent, not empty, was reported as missing by the
	// builders; it does not mean the first lan.
	refs = slices.DeleteFunc(refs, func(r ref) bool { return r.el.SelectAttr("name") == nil })
	if len(refs) == 0 {
		return
	}
	if cl == nil {
		c.attrWarnf(refs[0].el, "name", "lan names are not checked: there is no cluster.xml yet (set one with safekit cluster config)")
		for _, r := range refs {
			if *r.name == "" {
				c.attrWarnf(r.el, "name", `name is empty: it will mean the first lan of cluster.xml; write name="default" (or another lan) to make it explicit`)
			}
		}
		return
	}
	for _, r := range refs {
		switch {
		case *r.name == "" && len(cl.Lans) > 0:
			*r.name = cl.Lans[0].Name
			c.attrWarnf(r.el, "name", `name is empty: using the first lan of cluster.xml, %q; write name=%q to make it explicit`, *r.name, *r.name)
			c.fixIdent(r.el)
		case cl.Lan(*r.name) == nil:
			c.attrErrorf(r.el, "name", "name %q is not a lan of cluster.xml (lans: %s): use one of them or add the lan to cluster.xml", *r.name, strings.Join(cl.LanNames(), ", "))
		}
	}
	if vip := svc.SelectElement("vip"); vip != nil {
		for _, h := range vip.FindElements("loadbalancing_list/group/cluster/host") {
			if name := h.SelectAttrValue("name", ""); name != "" && !cl.HasNode(name) {
				c.attrErrorf(h, "name", "load-balancing host %q is not a node of cluster.xml (nodes: %s)", name, strings.Join(cl.NodeNames(), ", "))
			}
		}
	}
}

// fixIdent gives a heartbeat whose empty name was resolved the lan as ident,
// unless it has its own.
func (c *checker) fixIdent(hb *etree.Element) {
	if hb.Tag != "heartbeat" || c.cfg.Heart == nil {
		return
	}
	for i := range c.cfg.Heart.Heartbeats {
		h := &c.cfg.Heart.Heartbeats[i]
		if h.Pos == c.pos[hb] && h.Ident == "" {
			h.Ident = h.Lan
		}
	}
}

// checkWindows recognises a Windows module: one warning that says why.
func (c *checker) checkWindows() {
	if c.opts.Scripts != nil && !c.cfg.Windows {
		for _, s := range c.opts.Scripts {
			if isWindowsScript(s) && !hasLinuxScripts(c.opts.Scripts) {
				c.cfg.Windows = true
				c.windowsWhy = fmt.Sprintf("script bin/%s", s)
				break
			}
		}
	}
	if c.cfg.Windows {
		c.warnf(c.windowsEl, "this is a Windows module (%s): it is checked here, but safekit config refuses it on Linux", c.windowsWhy)
	}
}

// hasLinuxScripts tells whether bin/ holds the Linux form of a module script.
func hasLinuxScripts(names []string) bool {
	for _, n := range names {
		if contains(ScriptNames, n) {
			return true
		}
	}
	return false
}

// ScriptNames are the module scripts SafeKit calls by name (User's Guide
// §14.1).
var ScriptNames = []string{
	"prestart", "poststop", "start_prim", "stop_prim", "start_both", "stop_both",
	"start_second", "stop_second", "start_sec", "stop_sec", "transition", "update",
	"config", "postconfig", "deconfig", "confcheck", "state", "level",
}
