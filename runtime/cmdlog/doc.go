// Package cmdlog owns the command log of a node, what `safekit cmdlog`
// shows: one START record per command with its arguments, one END record
// with its exit code, and notes from the cluster's own actions. It is kept
// in a single bbolt file (SAFEVAR/cmdlog.db) that holds the last 50,000
// records; appends are durable and group-committed.
package cmdlog
