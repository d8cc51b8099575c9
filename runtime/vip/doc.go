// Package vip owns the virtual IP addresses of a mirror module on this node
// (User's Guide §13.6, <vip><interface_list><interface><real_interface>):
//
//   - where a VIP goes: the interface that <interface name> gives, else the
//     interface that holds an address of the VIP's network; its prefix
//     length is <virtual_addr netmask>, else that of the interface's
//     address (Place);
//   - adding it and removing it, each idempotent (Set, Unset), with, for
//     where="one_side", the VIP made the preferred source address of the
//     interface's routes so that the node's own connections leave from it;
//   - the reset of the TCP connections of a VIP that goes (<vip
//     tcpreset="on">, ResetTCP);
//   - the gratuitous ARPs that tell the switches and the neighbours the MAC
//     address of the node that now holds an IPv4 VIP: one burst when it is
//     set (Announce), then every arpinterval for arpelapse with <interface
//     arpreroute="on"> (Reroute).
//
// It works in the network namespace of the calling thread (the node's), with
// the ip and ss commands of iproute2 and a raw packet socket.
//
// What the package does not own: when a VIP is set (the automaton's SetVIP
// action, executed by the module process), the module log (the module
// process logs what these functions return), and the interface and IP
// checkers that <vip> generates (runtime/module). The farm forms
// (<virtual_interface>, load balancing) are not done.
package vip
