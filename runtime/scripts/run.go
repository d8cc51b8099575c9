package scripts

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Spec describes one run of a script.
type Spec struct {
	// Script is the name shown in logs and used in the userlog file name
	// (start_prim, postconfig...).
	Script string
	// Path is the executable.
	Path string
	Args []string
	Env  []string
	// Dir is the working directory (SAFEUSERBIN).
	Dir string
	// Timeout kills the whole process group when it expires; 0 = none.
	Timeout time.Duration
	// LogDir receives userlog_<date>_<script>.ulog (SAFEUSERVAR). Empty: the
	// output is only kept in Result.Tail.
	LogDir string
	// Discard drops the output (<user logging="none">); Tail is still kept.
	Discard bool
	// LogCapKB caps the total size of the userlog files in LogDir, oldest
	// deleted first (<user userlogsize>); 0 = no cap.
	LogCapKB int
	// ShAsBash runs "#!/bin/sh" scripts with bash when bash is installed:
	// published modules were written where /bin/sh is bash and use bashisms
	// (let, ==). See docs/scripts.md.
	ShAsBash bool
	// Started is called once the script runs, with its process group id (so
	// that a supervisor can record it and clean up after a crash) and the
	// base name of its userlog file ("" when none).
	Started func(pgid int, logFile string)
	// Clock gives the time used in the userlog name; nil = time.Now.
	Clock func() time.Time
}

// Result of a run.
type Result struct {
	ExitCode int
	// Err is set when the script could not run at all.
	Err error
	// TimedOut: the timeout expired and the process group was killed.
	TimedOut bool
	// LogFile is the base name of the userlog file ("" when none).
	LogFile string
	// Tail is the end of the output (up to TailBytes).
	Tail     string
	Duration time.Duration
}

// OK tells whether the script ran and exited 0.
func (r Result) OK() bool { return r.Err == nil && !r.TimedOut && r.ExitCode == 0 }

// Describe explains a failure in one line.
func (r Result) Describe() string {
	switch {
	case r.Err != nil:
		return r.Err.Error()
	case r.TimedOut:
		return "timed out, killed"
	case r.ExitCode != 0:
		return fmt.Sprintf("exit code %d", r.ExitCode)
	}
	return "ok"
}

// TailBytes is how much of the output a Result keeps.
const TailBytes = 16 << 10

// KillGrace is the time between SIGTERM and SIGKILL for a process group
// whose script timed out or was cancelled.
const KillGrace = 2 * time.Second

// Run runs the script to completion (or timeout, or ctx cancellation) and
// returns how it ended. Output goes to a file, not a pipe, so that a
// background child that keeps the descriptor open (a daemon started by the
// script) does not hold Run up.
func Run(ctx context.Context, s Spec) Result {
	start := time.Now()
	res := Result{}
	out, logPath, err := openOutput(s)
	if err != nil {
		res.Err = err
		return res
	}
	defer out.Close()
	if logPath != "" && !s.Discard {
		res.LogFile = filepath.Base(logPath)
	}

	cmd := command(s)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Stdin = nil
	cmd.Dir = s.Dir
	cmd.Env = s.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		res.Err = fmt.Errorf("cannot run %s: %w", s.Path, err)
		fmt.Fprintf(out, "%v\n", res.Err)
		res.Tail = readTail(out)
		finishLog(s, logPath)
		return res
	}
	pgid := cmd.Process.Pid
	if s.Started != nil {
		s.Started(pgid, res.LogFile)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	var timeout <-chan time.Time
	if s.Timeout > 0 {
		t := time.NewTimer(s.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	var werr error
	select {
	case werr = <-done:
	case <-timeout:
		res.TimedOut = true
		fmt.Fprintf(out, "\n*** %s: timeout %s expired: process group %d killed\n", s.Script, s.Timeout, pgid)
		werr = KillGroup(pgid, done)
	case <-ctx.Done():
		fmt.Fprintf(out, "\n*** %s: cancelled (%v): process group %d killed\n", s.Script, context.Cause(ctx), pgid)
		werr = KillGroup(pgid, done)
		res.Err = fmt.Errorf("cancelled: %w", context.Cause(ctx))
	}
	var ee *exec.ExitError
	switch {
	case werr == nil:
	case errors.As(werr, &ee):
		res.ExitCode = ee.ExitCode()
		if res.ExitCode < 0 {
			res.ExitCode = 128 + int(signalOf(ee))
		}
	default:
		if res.Err == nil {
			res.Err = werr
		}
	}
	res.Duration = time.Since(start)
	res.Tail = readTail(out)
	finishLog(s, logPath)
	return res
}

func signalOf(ee *exec.ExitError) syscall.Signal {
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal()
	}
	return 0
}

// KillGroup sends SIGTERM to the process group, then SIGKILL after
// KillGrace, and waits for the leader (done receives its Wait result).
func KillGroup(pgid int, done <-chan error) error {
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case err := <-done:
		// The leader is gone; members that ignored TERM must not survive.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		return err
	case <-time.After(KillGrace):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return <-done
}

// command builds the exec.Cmd, applying the shebang rule.
func command(s Spec) *exec.Cmd {
	if interp := interpreter(s.Path, s.ShAsBash); interp != "" {
		return exec.Command(interp, append([]string{s.Path}, s.Args...)...)
	}
	return exec.Command(s.Path, s.Args...)
}

// interpreter returns the program to run path with, when it is not run
// directly: bash for "#!/bin/sh" scripts (when shAsBash and bash exists), and
// for scripts without a shebang (which the kernel refuses to execute; shells
// run them with themselves).
func interpreter(path string, shAsBash bool) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	line, _ := bufio.NewReader(io.LimitReader(f, 256)).ReadString('\n')
	bash := bashPath()
	switch {
	case !strings.HasPrefix(line, "#!"):
		if isText(line) {
			if bash != "" {
				return bash
			}
			return "/bin/sh"
		}
		return ""
	case shAsBash && bash != "":
		fields := strings.Fields(strings.TrimPrefix(line, "#!"))
		if len(fields) > 0 && (fields[0] == "/bin/sh" || fields[0] == "/usr/bin/sh") {
			return bash
		}
	}
	return ""
}

func isText(s string) bool {
	for _, c := range []byte(s) {
		if c == 0 || (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
			return false
		}
	}
	return true
}

func bashPath() string {
	for _, p := range []string{"/bin/bash", "/usr/bin/bash"} {
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// UserlogName returns the userlog file name for script at t:
// userlog_2024-02-12T091410_start_prim.ulog.
func UserlogName(t time.Time, script string, n int) string {
	suffix := ""
	if n > 1 {
		suffix = fmt.Sprintf("_%d", n)
	}
	return fmt.Sprintf("userlog_%s_%s%s.ulog", t.Format("2006-01-02T150405"), script, suffix)
}

// openOutput creates the file the script writes to: a new userlog in LogDir
// (a second run in the same second gets _2, _3...), or an unnamed temporary
// file.
func openOutput(s Spec) (*os.File, string, error) {
	if s.LogDir == "" || s.Discard {
		f, err := os.CreateTemp(s.LogDir, ".scriptout-*")
		if err != nil {
			f, err = os.CreateTemp("", ".scriptout-*")
		}
		if err != nil {
			return nil, "", fmt.Errorf("cannot create the output file of %s: %w", s.Script, err)
		}
		_ = os.Remove(f.Name())
		return f, "", nil
	}
	if err := os.MkdirAll(s.LogDir, 0o755); err != nil {
		return nil, "", fmt.Errorf("cannot create %s: %w", s.LogDir, err)
	}
	now := time.Now
	if s.Clock != nil {
		now = s.Clock
	}
	t := now()
	for n := 1; ; n++ {
		p := filepath.Join(s.LogDir, UserlogName(t, s.Script, n))
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDWR|os.O_APPEND, 0o644)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("cannot create %s: %w", p, err)
		}
		return f, p, nil
	}
}

func readTail(f *os.File) string {
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := st.Size() - TailBytes
	if off < 0 {
		off = 0
	}
	buf := make([]byte, st.Size()-off)
	n, _ := f.ReadAt(buf, off)
	return string(buf[:n])
}

// finishLog applies the size cap of the module's userlogs.
func finishLog(s Spec, current string) {
	if current == "" || s.LogCapKB <= 0 {
		return
	}
	CapUserlogs(s.LogDir, int64(s.LogCapKB)<<10, current)
}

// CapUserlogs deletes the oldest userlog files of dir until they total at
// most limit bytes. keep is never deleted.
func CapUserlogs(dir string, limit int64, keep string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type logfile struct {
		path string
		size int64
		mod  time.Time
	}
	var files []logfile
	var total int64
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "userlog_") || !strings.HasSuffix(e.Name(), ".ulog") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		files = append(files, logfile{filepath.Join(dir, e.Name()), info.Size(), info.ModTime()})
		total += info.Size()
	}
	sort.Slice(files, func(i, j int) bool {
		if !files[i].mod.Equal(files[j].mod) {
			return files[i].mod.Before(files[j].mod)
		}
		return files[i].path < files[j].path
	})
	for _, f := range files {
		if total <= limit {
			return
		}
		if f.path == keep {
			continue
		}
		if os.Remove(f.path) == nil {
			total -= f.size
		}
	}
}
