// Package modlog owns the module log of one module: the lines that
// `safekit log`, `safekit logview`, the console and the snapshot's log.txt /
// logverbose.txt show, stored in a single bbolt file
// (SAFEVAR/modules/<AM>/log.db).
//
// A line has a level letter. U (user action), E (event), C (critical) and
// S (script) are the main messages, shown by the non-verbose log and copied
// to syslog/journald with the tag "safekit"; I, W and D are for support and
// debug and only appear in the verbose log (-A).
//
// Appends are durable (fsync'd) and group-committed, so that many goroutines
// logging at once share fsyncs. Entries are keyed by a persisted, monotonic
// sequence number: readers page with Last and After, and follow new entries
// with Subscribe, which never slows down a writer: a subscriber that does not
// keep up loses entries, is told how many with Missed, and catches up with
// After. The oldest entries beyond Options.MaxEntries are pruned.
//
// The project's log calls go through logrus: NewLogger returns a logger whose
// entries land in the store (and main ones in syslog), and Log is the one
// call the runtime uses to write a line.
package modlog
