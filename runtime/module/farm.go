package module

import (
	"fmt"
	"strings"

	"github.com/safekit-oss/safekit/modules"
	"github.com/safekit-oss/safekit/modules/clusterconf"
	"github.com/safekit-oss/safekit/runtime/automaton"
	"github.com/safekit-oss/safekit/runtime/farm"
	"github.com/safekit-oss/safekit/safe"
)

// farming connects a farm module to its membership: the nodes where it is
// UP share the load of each load-balancing group, and the module log says
// so as the guide shows it ("farm membership: node1 node2 (group X_0)",
// "farm load: 128/256 (group X_0)").
type farming struct {
	d      *Driver
	m      *farm.Membership
	node   string
	groups []farm.Group
	// last lines logged per group, to log only changes.
	last map[string]string
}

// farmConfig builds the membership of a farm module over its first lan.
func farmConfig(o Options, cfg *safe.Config, cl *safe.Cluster, node string) (farm.Config, error) {
	id, err := modules.NewManager(o.Roots, nil).ID(o.Name)
	if err != nil || id == 0 {
		return farm.Config{}, fmt.Errorf("module %s has no id: reinstall it", o.Name)
	}
	key, err := clusterconf.Key(o.Roots)
	if err != nil {
		return farm.Config{}, err
	}
	fc := farm.Config{Module: o.Name, ID: id, Port: modules.FarmPort(id), Node: node, Key: key,
		Pulse: cfg.Farm.Pulse.D(), MlostCount: cfg.Farm.MlostCount, SlostCount: cfg.Farm.SlostCount}
	if cfg.Farm.Port != 0 {
		fc.Port = cfg.Farm.Port
	}
	if len(cfg.Farm.Lans) == 0 {
		return fc, fmt.Errorf("module %s has no <farm><lan>", o.Name)
	}
	lan := cl.Lan(cfg.Farm.Lans[0].Name)
	if lan == nil {
		return fc, fmt.Errorf("farm lan %q is not in cluster.xml", cfg.Farm.Lans[0].Name)
	}
	for _, n := range lan.Nodes {
		if n.Name == node {
			fc.BindAddr = n.Addr
		} else {
			fc.Peers = append(fc.Peers, n.Addr)
		}
	}
	if fc.BindAddr == "" {
		return fc, fmt.Errorf("node %s has no address on lan %s", node, lan.Name)
	}
	return fc, nil
}

// startFarming joins the farm; the membership advertises the module state.
func (d *Driver) startFarming(fc farm.Config) error {
	fc.Logf = func(level, format string, args ...any) { d.Logf("vipd", level, format, args...) }
	changes := make(chan []farm.Member, 8)
	m, err := farm.Start(fc, func() string {
		s := d.Snapshot()
		if s.State == automaton.Up && s.Ready == automaton.Ready {
			return "UP"
		}
		return string(s.State)
	}, changes)
	if err != nil {
		return err
	}
	f := &farming{d: d, m: m, node: fc.Node, groups: farm.Groups(d.mod.Name, d.cfg.VIP), last: map[string]string{}}
	d.farming = f
	go f.run(changes)
	return nil
}

func (f *farming) run(changes <-chan []farm.Member) {
	for members := range changes {
		var up []string
		for _, m := range members {
			if m.State == "UP" {
				up = append(up, m.Name)
			}
		}
		f.report(up)
	}
}

// report logs the membership and load share of each group when they
// change, and sets the resource farm.<group label> to this node's share.
func (f *farming) report(up []string) {
	for _, g := range f.groups {
		lines := farm.LogLines(g.Name, g.Index, g.Hosts, up, f.node)
		text := strings.Join(lines, "\n")
		if f.last[g.Label()] == text {
			continue
		}
		f.last[g.Label()] = text
		for _, l := range lines {
			f.d.Logf("vipd", "E", "%s", l)
		}
		share := farm.Shares(g.Name, g.Index, g.Hosts, up)[f.node]
		f.d.send(automaton.SetResource{Name: "farm." + g.Label(), Value: farm.Percent(share), By: "vipd", Quiet: true})
	}
}
