// Package errd owns what <errd> (User's Guide §13.10) looks at: the
// processes of this node that a <proc> names, found in /proc by command
// name (as the kernel truncates it), a regular expression on the command
// name and one on the argument list; the state of a systemd service
// (service="yes"); whether their number breaks atleast or atmax; and the
// loop that polls one <proc> every polltimer.
//
// /proc is read as the module process sees it: the processes of its own
// PID namespace (a node of internal/testcluster mounts its own /proc), the
// ones `ps` would show there.
//
// What the package does not own: when a <proc> is monitored (the
// automaton opens and closes the window of its class), what its error
// triggers (the automaton's errd actions) and the module log: the module
// process (runtime/module) turns each poll into an automaton event.
package errd
