package farm

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strings"

	"github.com/safekit-oss/safekit/safe"
)

// Entries is the size of a load-balancing table: client addresses or ports
// hash into 256 entries, each served by one UP node (User's Guide §13.6.6).
const Entries = 256

// maxPower bounds a power so that Entries*power summed over any realistic
// farm stays far from overflow; beyond it a power changes nothing that
// 256 entries can show.
const maxPower = 1 << 32

// Host is a node of a load-balancing group: <cluster><host name power>.
type Host struct {
	Name string
	// Power is the node's relative weight; 0 takes no traffic.
	Power int
}

// Group is a load-balancing group as the logs and the console name it.
type Group struct {
	Name string
	// Index is the group's position in <loadbalancing_list>. The product
	// shows groups as "<name>_<index>" (FarmProto_0); that the suffix is
	// this position is an inference from the User's Guide, not documented.
	Index int
	// Hosts from <cluster>; nil: every farm node with power 1.
	Hosts []Host
}

// Label is the group's name in the logs and the resources: "FarmProto_0".
func (g Group) Label() string { return Label(g.Name, g.Index) }

// Label returns "<group>_<index>".
func Label(group string, index int) string { return fmt.Sprintf("%s_%d", group, index) }

// Groups returns the load-balancing groups of a farm module. A module
// without <loadbalancing_list> (no <vip>, or none of its groups) still
// balances nothing but has a membership to log and show: it gets one
// implicit group named after the module, index 0, with every farm node at
// power 1.
func Groups(module string, vip *safe.VIP) []Group {
	if vip == nil || len(vip.Groups) == 0 {
		return []Group{{Name: module}}
	}
	out := make([]Group, 0, len(vip.Groups))
	for i, g := range vip.Groups {
		gr := Group{Name: g.Name, Index: i}
		if len(g.Hosts) > 0 {
			gr.Hosts = make([]Host, 0, len(g.Hosts))
			for _, h := range g.Hosts {
				gr.Hosts = append(gr.Hosts, Host{Name: h.Name, Power: h.Power})
			}
		}
		out = append(out, gr)
	}
	return out
}

// Shares returns how many of the Entries each node owns in the group: the
// UP nodes of the group share the table in proportion to their power
// (hosts nil: every UP node with power 1). The counts sum to Entries when
// an UP node of the group has a power above 0, else all are 0. Every
// listed host and every UP node has a key; a node down, not in the group
// or with power 0 gets 0.
//
// Rounding is by largest remainder. Equal remainders (equal powers) go in
// name order rotated by a hash of the group's label, so that the extra
// entries of several groups fall on different nodes, and every node
// computes the same counts.
func Shares(group string, index int, hosts []Host, up []string) map[string]int {
	out := map[string]int{}
	power := map[string]int64{}
	if hosts == nil {
		for _, n := range up {
			power[n] = 1
		}
	} else {
		for _, h := range hosts {
			power[h.Name] = int64(min(max(h.Power, 0), maxPower))
			out[h.Name] = 0
		}
	}
	var cands []string
	var total int64
	for _, n := range up {
		out[n] = 0
		if p := power[n]; p > 0 && !slices.Contains(cands, n) {
			cands = append(cands, n)
			total += p
		}
	}
	if total == 0 {
		return out
	}
	slices.Sort(cands)

	rem := make(map[string]int64, len(cands))
	left := Entries
	for _, n := range cands {
		q := Entries * power[n]
		out[n] = int(q / total)
		rem[n] = q % total
		left -= out[n]
	}
	h := fnv.New32a()
	h.Write([]byte(Label(group, index)))
	start := int(h.Sum32() % uint32(len(cands)))
	order := append(slices.Clone(cands[start:]), cands[:start]...)
	slices.SortStableFunc(order, func(a, b string) int {
		switch {
		case rem[a] > rem[b]:
			return -1
		case rem[a] < rem[b]:
			return 1
		}
		return 0
	})
	for _, n := range order[:left] {
		out[n]++
	}
	return out
}

// GroupMembers returns the UP nodes of the group, sorted: the nodes named in
// the "farm membership" line. A listed host with power 0 is a member that
// takes no traffic.
func GroupMembers(hosts []Host, up []string) []string {
	var out []string
	for _, n := range up {
		if slices.Contains(out, n) {
			continue
		}
		if hosts == nil || slices.ContainsFunc(hosts, func(h Host) bool { return h.Name == n }) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// LogLines returns what the module log of node self says when the
// membership of a group changes:
//
//	farm membership: node1 node2 (group FarmProto_0)
//	farm load: 128/256 (group FarmProto_0)
func LogLines(group string, index int, hosts []Host, up []string, self string) []string {
	label := Label(group, index)
	return []string{
		MembershipLine(label, GroupMembers(hosts, up)),
		LoadLine(label, Shares(group, index, hosts, up)[self]),
	}
}

// MembershipLine is "farm membership: node1 node2 (group FarmProto_0)".
func MembershipLine(label string, members []string) string {
	return strings.Join(append(append([]string{"farm membership:"}, members...), "(group "+label+")"), " ")
}

// LoadLine is "farm load: 128/256 (group FarmProto_0)".
func LoadLine(label string, entries int) string {
	return fmt.Sprintf("farm load: %d/%d (group %s)", entries, Entries, label)
}

// Percent is a share as the console shows it next to the group's label
// ("FarmProto_0 50%"), rounded to the nearest percent.
func Percent(entries int) string {
	return fmt.Sprintf("%d%%", (entries*100+Entries/2)/Entries)
}
