package scripts

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Proc is a long-running program started by Start: a custom checker.
type Proc struct {
	Pgid    int
	LogFile string
	exited  chan struct{}
	result  Result
	waitErr chan error
	stop    sync.Once
	start   time.Time
	out     *os.File
	spec    Spec
}

// Start runs s in the background, in its own process group, with its output
// in a userlog file. Stop ends it; Done reports when it ended on its own.
// s.Timeout is ignored.
func Start(s Spec) (*Proc, error) {
	out, logPath, err := openOutput(s)
	if err != nil {
		return nil, err
	}
	cmd := command(s)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Dir = s.Dir
	cmd.Env = s.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		finishLog(s, logPath)
		return nil, fmt.Errorf("cannot run %s: %w", s.Path, err)
	}
	p := &Proc{Pgid: cmd.Process.Pid, exited: make(chan struct{}), waitErr: make(chan error, 1), start: time.Now(), out: out, spec: s}
	if logPath != "" && !s.Discard {
		p.LogFile = baseName(logPath)
	}
	if s.Started != nil {
		s.Started(p.Pgid, p.LogFile)
	}
	go func() { p.waitErr <- cmd.Wait() }()
	go func() {
		err := <-p.waitErr
		p.finish(err, logPath)
	}()
	return p, nil
}

func baseName(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}

func (p *Proc) finish(err error, logPath string) {
	res := Result{LogFile: p.LogFile, Duration: time.Since(p.start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitCode()
		if res.ExitCode < 0 {
			res.ExitCode = 128 + int(signalOf(ee))
		}
	default:
		res.Err = err
	}
	res.Tail = readTail(p.out)
	p.out.Close()
	finishLog(p.spec, logPath)
	p.result = res
	close(p.exited)
}

// Done is closed when the program has ended (on its own or stopped).
func (p *Proc) Done() <-chan struct{} { return p.exited }

// Result is how the program ended; valid once Done is closed.
func (p *Proc) Result() Result {
	<-p.exited
	return p.result
}

// Stop ends the program's whole process group (TERM, then KILL after
// KillGrace) and waits for it.
func (p *Proc) Stop() {
	p.stop.Do(func() {
		_ = syscall.Kill(-p.Pgid, syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(KillGrace):
			_ = syscall.Kill(-p.Pgid, syscall.SIGKILL)
			<-p.exited
		}
		_ = syscall.Kill(-p.Pgid, syscall.SIGKILL)
	})
}
