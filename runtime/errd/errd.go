package errd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/safekit-oss/safekit/safe"
)

// CommLen is the longest command name the kernel keeps (TASK_COMM_LEN
// less its final NUL): the name of a longer executable shows truncated in
// /proc, and a <proc name> is compared as truncated the same way (User's
// Guide §13.10.3: "at max 15 characters in Linux").
const CommLen = 15

// DefaultPollTimer is the polling period of an <errd> without polltimer.
const DefaultPollTimer = 30 * time.Second

// serviceTimeout bounds one `systemctl is-active`.
const serviceTimeout = 10 * time.Second

// Watch is what one <proc> looks at.
type Watch struct {
	proc          safe.Proc
	nameRx, argRx *regexp.Regexp
	// ProcRoot is where the proc filesystem is read ("/proc"); tests give
	// a tree of their own.
	ProcRoot string
}

// New compiles the regular expressions of p (POSIX extended, as safe
// validated them).
func New(p safe.Proc) (*Watch, error) {
	w := &Watch{proc: p, ProcRoot: "/proc"}
	var err error
	if p.NameRegex != "" {
		if w.nameRx, err = regexp.CompilePOSIX(p.NameRegex); err != nil {
			return nil, fmt.Errorf("proc %s: nameregex: %w", p.Name, err)
		}
	}
	if p.ArgRegex != "" {
		if w.argRx, err = regexp.CompilePOSIX(p.ArgRegex); err != nil {
			return nil, fmt.Errorf("proc %s: argregex: %w", p.Name, err)
		}
	}
	return w, nil
}

// String describes what is watched, for the module log.
func (w *Watch) String() string {
	p := w.proc
	if p.Service {
		return "service " + p.Name + " (systemctl is-active)"
	}
	s := "processes named " + truncate(p.Name)
	if p.NameRegex != "" {
		s = fmt.Sprintf("processes whose command name matches %q", p.NameRegex)
	}
	if p.ArgRegex != "" {
		s += fmt.Sprintf(" and arguments match %q", p.ArgRegex)
	}
	return s
}

// Count returns how many processes of the <proc> run, or for a service 1
// when systemd says it is active, 0 otherwise.
func (w *Watch) Count(ctx context.Context) (int, error) {
	if w.proc.Service {
		on, err := ServiceActive(ctx, w.proc.Name)
		if on {
			return 1, err
		}
		return 0, err
	}
	entries, err := os.ReadDir(w.ProcRoot)
	if err != nil {
		return 0, fmt.Errorf("cannot list the processes: %w", err)
	}
	n := 0
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err != nil || pid <= 0 {
			continue
		}
		if w.matches(filepath.Join(w.ProcRoot, e.Name())) {
			n++
		}
	}
	return n, nil
}

// matches reads the process of directory dir of /proc. A process that
// ended while it was read does not match; neither does a zombie, whose
// program has ended even though its parent has not collected it yet.
func (w *Watch) matches(dir string) bool {
	comm, state, ok := readStat(dir)
	if !ok || state == 'Z' || state == 'X' || state == 'x' {
		return false
	}
	if w.nameRx != nil {
		if !w.nameRx.MatchString(comm) {
			return false
		}
	} else if comm != truncate(w.proc.Name) {
		return false
	}
	if w.argRx == nil {
		return true
	}
	args, ok := readCmdline(dir)
	return ok && w.argRx.MatchString(args)
}

// truncate is name as the kernel keeps a command name.
func truncate(name string) string {
	if len(name) > CommLen {
		return name[:CommLen]
	}
	return name
}

// readStat returns the command name and the state letter of the process
// of dir, from its stat file: "pid (comm) S ...". The name may hold
// spaces and parentheses: it ends at the last ')'.
func readStat(dir string) (comm string, state byte, ok bool) {
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return "", 0, false
	}
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open || end+2 >= len(b) {
		return "", 0, false
	}
	return string(b[open+1 : end]), b[end+2], true
}

// readCmdline returns the argument list of the process of dir, the
// executable first, joined by spaces: what argregex is matched against.
// A kernel thread has none: "".
func readCmdline(dir string) (string, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil {
		return "", false
	}
	b = bytes.TrimRight(b, "\x00")
	return string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})), true
}

// ServiceActive runs `systemctl is-active name`: true when it answers
// "active". Any other answer (inactive, failed, activating, unknown unit)
// is false; an error only when systemctl cannot be run.
func ServiceActive(ctx context.Context, name string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, serviceTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "systemctl", "is-active", name).Output()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return false, fmt.Errorf("systemctl is-active %s: %w", name, err)
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return first == "active", nil
}

// Verdict tells whether n running processes (a service: 1 when active)
// satisfy p, and if not, the message of the module log. An error is fewer
// than atleast (unless atleast is -1), or at least atmax with one at least
// running (unless atmax is -1): atmax="0" and atmax="1" both act as soon
// as one runs.
func Verdict(p safe.Proc, n int) (ok bool, msg string) {
	what := "Process"
	if p.Service {
		what = "Service"
	}
	switch {
	case p.AtLeast >= 0 && n < p.AtLeast:
		if n == 0 {
			return false, fmt.Sprintf("%s %s not running", what, p.Name)
		}
		return false, fmt.Sprintf("%s %s: %d running, fewer than atleast=%d", what, p.Name, n, p.AtLeast)
	case p.AtMax >= 0 && n >= p.AtMax && n > 0:
		return false, fmt.Sprintf("%s %s: %d running, atmax=%d reached", what, p.Name, n, p.AtMax)
	}
	return true, ""
}

// Result is one poll: the count, or why it could not be made.
type Result struct {
	Count int
	Err   error
}

// Run polls every interval until ctx ends: the first poll one interval
// after Run starts, as SafeKit leaves a freshly started application that
// long; with startAfter n > 1 the first n-1 polls are skipped (the
// monitoring starts (n-1) intervals later). It reports every poll, never
// one that ctx interrupted; report runs in Run's goroutine.
func Run(ctx context.Context, interval time.Duration, startAfter int, poll func(context.Context) Result, report func(Result)) {
	if interval <= 0 {
		interval = DefaultPollTimer
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n < startAfter {
			continue
		}
		r := poll(ctx)
		if ctx.Err() != nil {
			return
		}
		report(r)
	}
}
