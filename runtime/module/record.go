package module

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/safekit-oss/safekit/internal/atomicfile"
	"github.com/safekit-oss/safekit/runtime/automaton"
)

// The module process keeps two small files in SAFEUSERVAR:
//   - state.json: the automaton's persisted record (last state, lastprim,
//     uptodate, usersettings, maxloop counter), rewritten atomically at each
//     change, so that a restart knows whether the application may still run;
//   - pgids: the process groups of the scripts and checkers it runs, so that
//     after a crash the next process kills whatever the dead one left.

func loadRecord(path string) (automaton.Persisted, bool, error) {
	p := automaton.DefaultPersisted()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return p, false, nil
	}
	if err != nil {
		return p, false, err
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return automaton.DefaultPersisted(), false, fmt.Errorf("%s is damaged (%v): starting from a stopped module", path, err)
	}
	return p, true, nil
}

func saveRecord(path string, p automaton.Persisted) error {
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(data, '\n'), 0o644)
}

// pgTracker records the process groups this module process started.
type pgTracker struct {
	mu     sync.Mutex
	path   string
	bootID string
	groups map[int]pgEntry
}

type pgEntry struct {
	start string // start time of the leader, field 22 of /proc/pid/stat
	what  string // "script start_prim", "checker custom.x"
}

func newPGTracker(path string) *pgTracker {
	return &pgTracker{path: path, bootID: bootID(), groups: map[int]pgEntry{}}
}

func (t *pgTracker) add(pgid int, what string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.groups[pgid] = pgEntry{start: procStart(pgid), what: what}
	t.flush()
}

func (t *pgTracker) remove(pgid int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.groups, pgid)
	t.flush()
}

// reset forgets every group: once the module is stopped, what its scripts
// left running is no longer the module's (a stop runs the stop scripts and
// kills nothing else), and a later module process must not kill it.
func (t *pgTracker) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.groups)
	t.flush()
}

func (t *pgTracker) flush() {
	var b strings.Builder
	fmt.Fprintf(&b, "boot %s\n", t.bootID)
	for pg, e := range t.groups {
		fmt.Fprintf(&b, "%d %s %s\n", pg, e.start, e.what)
	}
	_ = atomicfile.WriteFile(t.path, []byte(b.String()), 0o644)
}

// leftover is a process group recorded by a previous run.
type leftover struct {
	pgid int
	what string
}

// killLeftovers kills the process groups recorded by the previous module
// process, when they still exist and are still the same (same boot, same
// leader start time, or members of a group whose leader is gone: Linux does
// not reuse a pid while it is a process group id). It returns what it
// killed.
func (t *pgTracker) killLeftovers() []leftover {
	f, err := os.Open(t.path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var killed []leftover
	sc := bufio.NewScanner(f)
	sameBoot := false
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "boot" {
			sameBoot = fields[1] == t.bootID
			continue
		}
		if !sameBoot || len(fields) < 3 {
			continue
		}
		pgid, err := strconv.Atoi(fields[0])
		if err != nil || pgid <= 1 {
			continue
		}
		if !groupIsOurs(pgid, fields[1]) {
			continue
		}
		if syscall.Kill(-pgid, syscall.SIGKILL) == nil {
			killed = append(killed, leftover{pgid: pgid, what: strings.Join(fields[2:], " ")})
		}
	}
	return killed
}

func groupIsOurs(pgid int, start string) bool {
	if st := procStart(pgid); st != "" {
		return st == start && procPgrp(pgid) == pgid
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err == nil && procPgrp(pid) == pgid {
			return true
		}
	}
	return false
}

// procStat returns the fields of /proc/pid/stat after the command name.
func procStat(pid int) []string {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// procStart is the start time of pid in clock ticks since boot.
func procStart(pid int) string {
	f := procStat(pid)
	if len(f) < 20 {
		return ""
	}
	return f[19] // field 22 of stat; f[0] is field 3
}

func procPgrp(pid int) int {
	f := procStat(pid)
	if len(f) < 3 {
		return -1
	}
	n, _ := strconv.Atoi(f[2]) // field 5
	return n
}

func bootID() string {
	data, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(data))
}
