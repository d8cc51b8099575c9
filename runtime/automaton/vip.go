package automaton

// The virtual IPs of a mirror (<vip><real_interface>, User's Guide §13.6)
// follow the application of the primary: they are set just before
// start_prim, on every way into PRIM or ALONE (a start, a failover, a
// swap, a restart), and removed just after stop_prim, on every way out
// (after its forced call when it follows at once: swap, restart, wait; in a
// stop, after the graceful call, the forced calls of the stop removing what
// is left). A SECOND never sets them. After a crash of the module process
// the VIPs may still be on the node: the recovery removes them with its
// forced stop scripts.
//
// The automaton only says when; runtime/module sets and removes them
// (runtime/vip), logs "Virtual IP <addr of AM> set|unset", and returns at
// once: the next script runs with the VIPs in place.

// vipUp is the step that sets the VIPs, before start_prim.
func (m *Module) vipUp() step {
	return do(func() {
		if m.cfg.VIP && !m.vipSet {
			m.vipSet = true
			m.emit(SetVIP{Up: true})
		}
	})
}

// vipDown is the step that removes the VIPs, after stop_prim; nothing when
// they are not set.
func (m *Module) vipDown() step {
	return do(func() {
		if m.vipSet {
			m.vipSet = false
			m.emit(SetVIP{Up: false})
		}
	})
}
