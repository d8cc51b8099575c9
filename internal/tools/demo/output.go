package main

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"
)

// out prints the demo's steps for a person: a title per step, the
// commands run in the nodes with their output, and a status line that
// says what a long step is waiting for. On a terminal the status line is
// redrawn in place; elsewhere (a CI log) it is printed when it changes, at
// most every statusEvery, so that a log still shows the demo alive.
type out struct {
	w   io.Writer
	tty bool

	mu        sync.Mutex
	status    string    // current status ("" when none)
	stepStart time.Time // start of the current step
	drawn     bool      // a status line is on the screen (tty)
	lastLine  string    // last status printed (not a tty)
	lastAt    time.Time
	stop      chan struct{}
	done      chan struct{}
}

// How often a status is printed in a log that is not a terminal: at once
// when its words change, after numbersEvery when only its figures do (a
// download's size), and again after statusEvery (a log that shows the
// demo alive), so that the log stays short.
const (
	numbersEvery = 3 * time.Second
	statusEvery  = 10 * time.Second
)

var digitsRE = regexp.MustCompile(`[0-9]+`)

// ANSI sequences, used on a terminal only.
const (
	bold     = "\033[1m"
	dim      = "\033[2m"
	reset    = "\033[0m"
	clearEOL = "\r\033[K"
)

func newOut(w *os.File) *out {
	fi, err := w.Stat()
	return &out{w: w, tty: err == nil && fi.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"}
}

// style wraps s in an ANSI style on a terminal.
func (o *out) style(code, s string) string {
	if !o.tty {
		return s
	}
	return code + s + reset
}

// clearLocked removes the status line from the screen before other text.
func (o *out) clearLocked() {
	if o.drawn {
		fmt.Fprint(o.w, clearEOL)
		o.drawn = false
	}
}

// Printf prints text (whole lines), above the status line.
func (o *out) Printf(format string, a ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.clearLocked()
	fmt.Fprintf(o.w, format, a...)
	o.drawLocked(false)
}

// Step starts a step: its title, and a status line kept up to date until
// End.
func (o *out) Step(title string) {
	o.mu.Lock()
	o.clearLocked()
	fmt.Fprintf(o.w, "\n%s\n", o.style(bold, "==> "+title))
	o.status, o.lastLine, o.stepStart = "", "", time.Now()
	o.stop, o.done = make(chan struct{}), make(chan struct{})
	stop, done := o.stop, o.done
	o.mu.Unlock()
	go func() {
		defer close(done)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				o.mu.Lock()
				o.drawLocked(false)
				o.mu.Unlock()
			}
		}
	}()
}

// Status sets what the current step is doing or waiting for.
func (o *out) Status(format string, a ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.status = fmt.Sprintf(format, a...)
	o.drawLocked(true)
}

// drawLocked shows the status: redrawn on a terminal; on a log, printed
// as the constants above say (changed is true for a new status).
func (o *out) drawLocked(changed bool) {
	if o.status == "" {
		return
	}
	elapsed := time.Since(o.stepStart).Round(time.Second)
	if o.tty {
		fmt.Fprintf(o.w, "%s    %s", clearEOL, o.style(dim, fmt.Sprintf("%s (%v)", o.status, elapsed)))
		o.drawn = true
		return
	}
	words := digitsRE.ReplaceAllString(o.status, "#") != digitsRE.ReplaceAllString(o.lastLine, "#")
	since := time.Since(o.lastAt)
	if (changed && (words || (o.status != o.lastLine && since >= numbersEvery))) || since >= statusEvery {
		fmt.Fprintf(o.w, "    %s (%v)\n", o.status, elapsed)
		o.lastLine, o.lastAt = o.status, time.Now()
	}
}

// End ends the current step, with its duration, or with err.
func (o *out) End(err error) {
	o.mu.Lock()
	stop, done := o.stop, o.done
	o.stop, o.done = nil, nil
	o.mu.Unlock()
	if stop == nil {
		return
	}
	close(stop)
	<-done
	o.mu.Lock()
	defer o.mu.Unlock()
	o.clearLocked()
	took := time.Since(o.stepStart).Round(100 * time.Millisecond)
	if err != nil {
		fmt.Fprintf(o.w, "    failed after %v: %v\n", took, err)
	} else {
		fmt.Fprintf(o.w, "    %s\n", o.style(dim, fmt.Sprintf("done in %v", took)))
	}
	o.status = ""
}

// Command shows a command run in a node, as an operator would type it
// there, and its output indented below.
func (o *out) Command(node, cmdline, output string) {
	var b strings.Builder
	fmt.Fprintf(&b, "    %s %s\n", o.style(bold, node+"#"), cmdline)
	for _, l := range strings.Split(strings.TrimRight(output, "\n"), "\n") {
		if strings.TrimSpace(l) != "" {
			fmt.Fprintf(&b, "      %s\n", o.style(dim, l))
		}
	}
	o.Printf("%s", b.String())
}
