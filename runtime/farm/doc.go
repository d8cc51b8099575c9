// Package farm owns the membership of a farm module (User's Guide §6,
// §13.5) and the load share that follows from it.
//
// Membership: which nodes run the module, and in which state. The product's
// vipd runs its own protocol on UDP port 4803+(id-1)*3; this package runs
// github.com/hashicorp/memberlist (SWIM gossip over UDP, push/pull over TCP)
// on that port instead, so a farm of this implementation does not talk to a
// farm of the product. Each node advertises its module id and module state
// ("UP", "WAIT", ...) in its memberlist metadata; nodes of another module id
// are refused, and a cluster key encrypts every packet. A node that leaves
// cleanly disappears at once; a node that dies disappears after the
// suspicion timeout derived from <farm pulse mlost_count slost_count>
// (slost_count pulses; the mapping is documented at applyTimings).
//
// Load share: SafeKit spreads the clients of a load-balancing group over a
// table of 256 entries; each UP node owns a number of entries proportional
// to its <cluster><host power>. Shares, LogLines and Percent compute the
// counts and the text of the module log and the console; they are pure
// functions of the group and of the members in state UP, so every node
// computes the same result. A farm module without <loadbalancing_list> has
// one implicit group named after the module (see Groups).
//
// What the package does not own: the automaton that decides when a node is
// UP, the virtual IPs and the packet filter that applies the table.
package farm
