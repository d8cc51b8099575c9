package safe

import (
	"fmt"
	"sort"
	"strings"

	"github.com/beevik/etree"
)

// Cluster is the typed SAFEVAR/cluster/cluster.xml (User's Guide ch. 12): the
// nodes of the cluster and the networks (lans) that link them.
type Cluster struct {
	// Port is the UDP port of cluster membership. Default 4800.
	Port int `json:"port"`
	// Pulse between membership packets. Unit ms, default 100ms.
	Pulse Duration `json:"pulse"`
	// MlostCount packets missed before electing a new leader. Default 20.
	MlostCount int `json:"mlost_count"`
	// SlostCount packets missed before declaring a follower offline. Default 10.
	SlostCount int   `json:"slost_count"`
	Lans       []Lan `json:"lans"`
}

// Lan is one network of the cluster.
type Lan struct {
	Name string `json:"name"`
	// Command: this lan carries distributed commands. When no lan says so,
	// the first one does.
	Command bool   `json:"command"`
	Nodes   []Node `json:"nodes"`
}

// Node is a node's address on one lan.
type Node struct {
	Name string `json:"name"`
	// Addr is IPv4, IPv6 in brackets, or a DNS name.
	Addr string `json:"addr"`
	// LAddr is the node's local address when Addr is translated by NAT.
	LAddr string `json:"laddr,omitempty"`
}

// Lan returns the lan called name, or nil.
func (c *Cluster) Lan(name string) *Lan {
	for i := range c.Lans {
		if c.Lans[i].Name == name {
			return &c.Lans[i]
		}
	}
	return nil
}

// LanNames lists the lans in file order.
func (c *Cluster) LanNames() []string {
	out := make([]string, len(c.Lans))
	for i, l := range c.Lans {
		out[i] = l.Name
	}
	return out
}

// NodeNames lists the nodes in the order of the first lan.
func (c *Cluster) NodeNames() []string {
	if len(c.Lans) == 0 {
		return nil
	}
	out := make([]string, len(c.Lans[0].Nodes))
	for i, n := range c.Lans[0].Nodes {
		out[i] = n.Name
	}
	return out
}

// HasNode tells whether name is a node of the cluster.
func (c *Cluster) HasNode(name string) bool { return contains(c.NodeNames(), name) }

// CommandLan is the lan of distributed commands.
func (c *Cluster) CommandLan() *Lan {
	for i := range c.Lans {
		if c.Lans[i].Command {
			return &c.Lans[i]
		}
	}
	if len(c.Lans) == 0 {
		return nil
	}
	return &c.Lans[0]
}

// Addr returns the address of node on lan, or "".
func (c *Cluster) Addr(lan, node string) string {
	if l := c.Lan(lan); l != nil {
		for _, n := range l.Nodes {
			if n.Name == node {
				return n.Addr
			}
		}
	}
	return ""
}

// ParseCluster reads and checks a cluster.xml. The Cluster is nil when the
// file is not usable at all; otherwise check the diagnostics for errors.
func ParseCluster(data []byte, file string) (*Cluster, Diagnostics) {
	if file == "" {
		file = "cluster.xml"
	}
	doc, err := parseXML(file, data)
	if err != nil {
		if d, ok := err.(*Diagnostic); ok {
			return nil, Diagnostics{*d}
		}
		return nil, Diagnostics{{File: file, Msg: err.Error()}}
	}
	c := &checker{file: file, tree: doc.tree, pos: doc.pos, roots: doc.roots, rootSpec: clusterSpec}
	cl := c.buildCluster()
	return cl, c.diags.sorted()
}

func (c *checker) buildCluster() *Cluster {
	if len(c.roots) == 0 || c.roots[0].Tag != "cluster" {
		if len(c.roots) == 0 {
			c.diags = append(c.diags, Diagnostic{File: c.file, Pos: Pos{1, 1}, Msg: "empty document: a cluster.xml starts with <cluster>"})
		} else {
			c.errorf(c.roots[0], "the root element must be <cluster>, not <%s>", c.roots[0].Tag)
		}
		return nil
	}
	root := c.roots[0]
	for _, r := range c.roots[1:] {
		c.errorf(r, "<%s> is outside <cluster>: an XML document has a single root element", r.Tag)
	}
	c.validate(root, clusterSpec)
	lansEl := root.SelectElement("lans")
	if lansEl == nil {
		c.errorf(root, `missing <lans>: a cluster.xml lists its networks in <lans><lan name="default">...</lan></lans>`)
		return nil
	}
	lansSpec := clusterSpec.child("lans")
	a := at(lansEl, lansSpec)
	cl := &Cluster{Port: a.int("port"), Pulse: a.dur("pulse"), MlostCount: a.int("mlost_count"), SlostCount: a.int("slost_count")}
	lanSpec := lansSpec.child("lan")
	var firstNames []string
	var firstLan, commandLan *etree.Element
	lanEls := map[string]*etree.Element{}
	for _, le := range lansEl.SelectElements("lan") {
		l := Lan{Name: le.SelectAttrValue("name", ""), Command: at(le, lanSpec).on("command")}
		if f, dup := lanEls[l.Name]; dup && l.Name != "" {
			c.attrErrorf(le, "name", "lan %q is defined twice (first at line %d): give each lan its own name", l.Name, c.pos[f].Line)
		}
		lanEls[l.Name] = le
		if l.Command {
			if commandLan != nil {
				c.attrErrorf(le, "command", `command="on" is set on lan %q and on lan %q (line %d): only one lan carries distributed commands`, l.Name, commandLan.SelectAttrValue("name", ""), c.pos[commandLan].Line)
			}
			commandLan = le
		}
		nodes := map[string]*etree.Element{}
		addrs := map[string]*etree.Element{}
		for _, ne := range le.SelectElements("node") {
			n := Node{Name: ne.SelectAttrValue("name", ""), Addr: ne.SelectAttrValue("addr", ""), LAddr: ne.SelectAttrValue("laddr", "")}
			if f, dup := nodes[n.Name]; dup && n.Name != "" {
				c.attrErrorf(ne, "name", "node %q appears twice in lan %q (first at line %d)", n.Name, l.Name, c.pos[f].Line)
			}
			nodes[n.Name] = ne
			if f, dup := addrs[n.Addr]; dup && n.Addr != "" {
				c.attrErrorf(ne, "addr", "address %s is given to two nodes of lan %q (the other at line %d)", n.Addr, l.Name, c.pos[f].Line)
			}
			addrs[n.Addr] = ne
			if strings.Contains(n.Name, "[") {
				c.attrErrorf(ne, "name", "node name %q contains '[': use letters, digits, '-', '_' and '.'", n.Name)
			}
			l.Nodes = append(l.Nodes, n)
		}
		names := make([]string, 0, len(l.Nodes))
		for _, n := range l.Nodes {
			names = append(names, n.Name)
		}
		sort.Strings(names)
		if firstLan == nil {
			firstLan, firstNames = le, names
			if len(l.Nodes) < 2 {
				c.errorf(le, "lan %q has %d node(s): a cluster has at least 2 nodes", l.Name, len(l.Nodes))
			}
		} else if strings.Join(names, ",") != strings.Join(firstNames, ",") {
			c.errorf(le, "lan %q has the nodes %s but lan %q (line %d) has %s: every lan lists the same node names",
				l.Name, listOrNone(names), firstLan.SelectAttrValue("name", ""), c.pos[firstLan].Line, listOrNone(firstNames))
		}
		cl.Lans = append(cl.Lans, l)
	}
	if len(cl.Lans) == 0 {
		c.errorf(lansEl, `<lans> needs at least one <lan name="default"> with the nodes`)
	}
	return cl
}

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// String renders the cluster as cluster.xml.
func (c *Cluster) String() string {
	doc := etree.NewDocument()
	doc.CreateProcInst("xml", `version="1.0" encoding="utf-8"`)
	root := doc.CreateElement("cluster")
	lans := root.CreateElement("lans")
	if c.Port != 0 && c.Port != 4800 {
		lans.CreateAttr("port", fmt.Sprint(c.Port))
	}
	for _, l := range c.Lans {
		le := lans.CreateElement("lan")
		le.CreateAttr("name", l.Name)
		if l.Command {
			le.CreateAttr("command", "on")
		}
		for _, n := range l.Nodes {
			ne := le.CreateElement("node")
			ne.CreateAttr("name", n.Name)
			ne.CreateAttr("addr", n.Addr)
			if n.LAddr != "" {
				ne.CreateAttr("laddr", n.LAddr)
			}
		}
	}
	doc.Indent(2)
	s, _ := doc.WriteToString()
	return s
}
