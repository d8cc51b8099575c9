// Package checkers owns the tests of the built-in checkers of <check>
// (User's Guide §13.12-§13.17): a TCP connection (tcpcheck), a ping
// (pingcheck), the link of the interface that holds a local address
// (intfcheck), an address configured on this node (ipcheck), and the state
// of another module polled over a node's web service (modulecheck). Each is
// a Probe, run once by Run at its interval, which reports the results that
// change.
//
// What the package does not own: when a checker runs (the automaton opens
// and closes its window), what its resource triggers (the failover rules
// of the automaton), and the module log: the module process
// (runtime/module) turns the reports into `safekit set -r` events.
package checkers
