package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/safekit-oss/safekit/runtime/automaton"
	"github.com/safekit-oss/safekit/runtime/module"
)

// The synchronisation commands of file replication (User's Guide
// §13.7.4.8, §13.7.4.9): rfssync sets how the next resynchronisation of
// the pair copies, secondforce starts a secondary restored from a backup.

func init() {
	register(&command{
		name:  "rfssync",
		usage: "rfssync [full | external prim|second <uid> | -d prim|second <uid>] [-m AM]",
		help:  "show the synchronisation policy, or set the next synchronisation's: full copies everything; external (both nodes, the same uid) compares a backup restored on the secondary; -d is accepted and changes nothing here",
		flags: map[string]bool{"-m": true, "-d": false},
		run:   runRFSSync,
	})
	register(&command{
		name:  "secondforce",
		usage: `secondforce -d YYYY-MM-DD[Z]|"YYYY-MM-DD hh:mm:ss[Z]"|YYYY-MM-DDThh:mm:ss[Z] -m AM`,
		help:  "start as secondary copying only the files modified since the date (local time, Z: UTC), whole; older files are left as they are",
		flags: map[string]bool{"-m": true, "-d": true},
		run:   runSecondforce,
	})
}

func runRFSSync(e *Env, a *args) int {
	cmd := commands["rfssync"]
	name, err := e.module(a)
	if err != nil {
		return e.usage(cmd, "%v", err)
	}
	if len(a.pos) == 0 && !a.has("-d") {
		return e.showSyncPolicy(name)
	}
	p, err := parseSyncPolicy(a.pos, a.has("-d"))
	if err != nil {
		return e.usage(cmd, "%v", err)
	}
	return e.sendCommand(name, a.raw, module.CommandRequest{Action: "rfssync", Sync: p, By: e.caller()})
}

// parseSyncPolicy reads the words after rfssync: full, external prim|second
// <uid>, or (with -d) [external] prim|second <uid>.
func parseSyncPolicy(words []string, noDetect bool) (automaton.SyncPolicy, error) {
	if len(words) > 0 && words[0] == automaton.SyncFull {
		switch {
		case noDetect:
			return automaton.SyncPolicy{}, errors.New("-d applies to the external policy: safekit rfssync -d prim|second <uid>")
		case len(words) > 1:
			return automaton.SyncPolicy{}, fmt.Errorf("unexpected argument %q after full", words[1])
		}
		return automaton.SyncPolicy{Mode: automaton.SyncFull}, nil
	}
	if len(words) > 0 && words[0] == automaton.SyncExternal {
		words = words[1:]
	} else if !noDetect {
		return automaton.SyncPolicy{}, fmt.Errorf("unknown policy %q: full, external prim|second <uid>, or -d prim|second <uid>", strings.Join(words, " "))
	}
	if len(words) != 2 {
		return automaton.SyncPolicy{}, errors.New("the external policy needs the role of this node (prim: it was backed up, second: the backup is restored on it) and the uid of the backup")
	}
	role, uid := words[0], words[1]
	if role != automaton.SyncRolePrim && role != automaton.SyncRoleSecond {
		return automaton.SyncPolicy{}, fmt.Errorf("role %q: prim (the node backed up) or second (the node the backup is restored on)", role)
	}
	if n := len([]rune(uid)); n > automaton.MaxSyncUID {
		return automaton.SyncPolicy{}, fmt.Errorf("uid %q has %d characters: at most %d", uid, n, automaton.MaxSyncUID)
	}
	if uid == "" || strings.IndexFunc(uid, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return automaton.SyncPolicy{}, fmt.Errorf("uid %q: give a word without spaces, the same on both nodes", uid)
	}
	return automaton.SyncPolicy{Mode: automaton.SyncExternal, Role: role, UID: uid, NoDetect: noDetect}, nil
}

// showSyncPolicy prints the policy as the module's resources hold it.
func (e *Env) showSyncPolicy(name string) int {
	var s module.Snapshot
	if err := e.daemon().do(context.Background(), http.MethodGet, "/v1/modules/"+name+"/state", nil, &s); err != nil {
		return e.fail(err)
	}
	res := map[string]string{}
	for _, r := range s.Resources {
		res[r[0]] = r[1]
	}
	names := []string{"usersetting.rfssyncmode", "usersetting.rfssyncrole", "usersetting.rfssyncuid", "rfs.rfssync"}
	if _, ok := res[names[0]]; !ok {
		return e.fail(fmt.Errorf("module %s has no replicated directories (<rfs>): it has no synchronisation policy", name))
	}
	mode, role, uid := res[names[0]], res[names[1]], res[names[2]]
	switch mode {
	case automaton.SyncDefault:
		e.printf("Synchronisation policy of module %s: default (what changed since the last synchronisation is copied, zone by zone; everything the first time)\n", name)
	case automaton.SyncFull:
		e.printf("Synchronisation policy of module %s: full (the next synchronisation copies every file whole)\n", name)
	default:
		e.printf("Synchronisation policy of module %s: %s, role %s, uid %s (the next synchronisation compares every file zone by zone and copies the zones that differ)\n", name, mode, role, uid)
	}
	for _, n := range names {
		e.printf("  %-24s %s\n", n, res[n])
	}
	p := s.Persisted
	if mode == automaton.SyncExternal && p.Sync.NoDetect {
		e.printf("-d: no change detection between the backup or restore and the start (no effect here: every file is compared by its zone checksums)\n")
	}
	if mode == automaton.SyncExternal && res["rfs.rfssync"] != "up" {
		other := automaton.SyncRolePrim
		if role == automaton.SyncRolePrim {
			other = automaton.SyncRoleSecond
		}
		e.printf("rfs.rfssync is down: the other node is not known, or its policy is not external %s %s (run safekit rfssync external %s %s -m %s there)\n", other, uid, other, uid, name)
	}
	if !p.SyncSince.IsZero() {
		e.printf("secondforce -d: the next resynchronisation of this node copies the files modified since %s\n", p.SyncSince.Local().Format("2006-01-02 15:04:05 MST"))
	}
	return ExitOK
}

func runSecondforce(e *Env, a *args) int {
	cmd := commands["secondforce"]
	name, err := e.module(a)
	if err != nil {
		return e.usage(cmd, "%v", err)
	}
	if len(a.pos) > 0 {
		return e.usage(cmd, "unexpected argument %q", strings.Join(a.pos, " "))
	}
	if a.get("-d") == "" {
		return e.usage(cmd, "secondforce needs -d <date>: the date of the backup restored on this node")
	}
	since, err := parseSyncDate(a.get("-d"), time.Local)
	if err != nil {
		return e.usage(cmd, "%v", err)
	}
	return e.sendCommand(name, a.raw, module.CommandRequest{Action: "secondforce", Since: since, By: e.caller()})
}

// syncDateLayouts are the date formats of secondforce -d (User's Guide
// §13.7.4.8), each also with a final Z for UTC.
var syncDateLayouts = []string{"2006-01-02", "2006-01-02 15:04:05", "2006-01-02T15:04:05"}

// parseSyncDate reads a date of secondforce -d: in loc, or in UTC with a
// final Z.
func parseSyncDate(s string, loc *time.Location) (time.Time, error) {
	v := s
	if z, ok := strings.CutSuffix(v, "Z"); ok {
		v, loc = z, time.UTC
	}
	for _, l := range syncDateLayouts {
		if t, err := time.ParseInLocation(l, v, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf(`date %q: use YYYY-MM-DD[Z], "YYYY-MM-DD hh:mm:ss[Z]" or YYYY-MM-DDThh:mm:ss[Z] (local time, UTC with Z)`, s)
}
