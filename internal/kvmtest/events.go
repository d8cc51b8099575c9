package kvmtest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/safekit-oss/safekit/internal/testcluster"
)

// Event is a libvirt lifecycle event of a domain on a node, as `virsh
// event --timestamp` printed it, or one the Watcher adds (Running, Lost).
type Event struct {
	// Time is virsh's timestamp (the node's clock, which is the host's).
	Time time.Time
	Node string
	// Domain is "" for Lost, which concerns every domain of the node.
	Domain string
	// Event is libvirt's word: Defined, Undefined, Started, Suspended,
	// Resumed, Stopped, Shutdown, PMSuspended, Crashed; or Running (the
	// domain already ran when the watch started) or Lost (the watch
	// ended: Detail is "node killed" when the node died with its
	// processes, else why).
	Event string
	// Detail is libvirt's reason: Booted, Shutdown, Destroyed, Failed...
	Detail string
}

func (e Event) String() string {
	d := e.Domain
	if d == "" {
		d = "*"
	}
	return fmt.Sprintf("%s %s %s: %s %s", e.Time.Format("15:04:05.000"), e.Node, d, e.Event, e.Detail)
}

// Words of the events the Watcher adds.
const (
	EventRunning = "Running"
	EventLost    = "Lost"
	// LostKilled is the Detail of a Lost event when the node was killed:
	// its domains died with it.
	LostKilled = "node killed"
)

// virshTimeLayout is how virsh event --timestamp prints the time.
const virshTimeLayout = "2006-01-02 15:04:05.000-0700"

var eventLineRE = regexp.MustCompile(`^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+[+-]\d{4}): event 'lifecycle' for domain '(.*)': (\S+)\s*(.*)$`)

// parseEventLine reads one line of `virsh event --loop --timestamp
// --event lifecycle`.
func parseEventLine(node, line string) (Event, bool) {
	m := eventLineRE.FindStringSubmatch(strings.TrimSpace(line))
	if m == nil {
		return Event{}, false
	}
	t, err := time.Parse(virshTimeLayout, m[1])
	if err != nil {
		return Event{}, false
	}
	return Event{Time: t, Node: node, Domain: m[2], Event: m[3], Detail: m[4]}, true
}

// probePrefix names the throwaway domains that Watch defines to know that
// its stream receives events.
const probePrefix = "kvmtest-watch-"

// Watcher collects the lifecycle events of every domain on the nodes it
// watches, from libvirt's event stream (one `virsh event` per node), not by
// polling.
type Watcher struct {
	mu      sync.Mutex
	events  []Event
	changed chan struct{} // closed and replaced on each new event
	streams []*exec.Cmd
	closed  bool
	wg      sync.WaitGroup
}

// NewWatcher returns a Watcher that watches no node yet.
func NewWatcher() *Watcher { return &Watcher{changed: make(chan struct{})} }

// watchReadyTimeout bounds how long Watch waits for its stream to work.
const watchReadyTimeout = 30 * time.Second

// Watch starts collecting n's events and returns once the stream receives
// them (a throwaway domain is defined and undefined to see it), after
// recording a Running event for each domain that already runs. Watch a
// node again after Node.Start and StartLibvirt: a stream ends with its
// node or its libvirtd, with a Lost event.
func (w *Watcher) Watch(n *testcluster.Node) error {
	cmd := n.Command("virsh", "-c", URI, "event", "--loop", "--timestamp", "--event", "lifecycle")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return errors.New("watcher closed")
	}
	if err := cmd.Start(); err != nil {
		w.mu.Unlock()
		return fmt.Errorf("%s: virsh event: %w", n.Name, err)
	}
	w.streams = append(w.streams, cmd)
	w.mu.Unlock()
	w.wg.Add(1)
	go w.read(n.Name, cmd, out, &stderr)

	probe := fmt.Sprintf("%s%s-%d", probePrefix, n.Name, time.Now().UnixNano())
	def := n.Command("virsh", "-c", URI, "define", "/dev/stdin")
	def.Stdin = strings.NewReader("<domain type='qemu'><name>" + probe + "</name><memory unit='MiB'>16</memory><os><type arch='x86_64'>hvm</type></os></domain>")
	if b, err := def.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: define the watch probe: %w: %s", n.Name, err, strings.TrimSpace(string(b)))
	}
	_, werr := w.Wait(watchReadyTimeout, func(e Event) bool { return e.Node == n.Name && (e.Domain == probe || e.Event == EventLost) })
	if _, err := Virsh(n, "undefine", probe); err != nil {
		return err
	}
	if werr != nil {
		return fmt.Errorf("%s: the event stream shows nothing: %w", n.Name, werr)
	}
	running, err := Virsh(n, "list", "--name", "--state-running")
	if err != nil {
		return err
	}
	for _, d := range strings.Fields(running) {
		w.add(Event{Time: time.Now(), Node: n.Name, Domain: d, Event: EventRunning, Detail: "when the watch started"})
	}
	return nil
}

// read collects the events of one stream until it ends, then adds Lost.
func (w *Watcher) read(node string, cmd *exec.Cmd, out io.Reader, stderr *strings.Builder) {
	defer w.wg.Done()
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if e, ok := parseEventLine(node, sc.Text()); ok {
			w.add(e)
		}
	}
	err := cmd.Wait()
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	if closed {
		return
	}
	// nsenter dies of the signal that killed its command: SIGKILL is
	// what a node's processes get when the node's init is killed.
	detail := fmt.Sprintf("virsh event ended: %v: %s", err, strings.TrimSpace(stderr.String()))
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			detail = LostKilled
		}
	}
	w.add(Event{Time: time.Now(), Node: node, Event: EventLost, Detail: detail})
}

func (w *Watcher) add(e Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events = append(w.events, e)
	close(w.changed)
	w.changed = make(chan struct{})
}

// Events returns the events so far, in time order (the watch probes left
// out).
func (w *Watcher) Events() []Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Event
	for _, e := range w.events {
		if !strings.HasPrefix(e.Domain, probePrefix) {
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

// Wait waits until an event, among all collected so far or to come,
// matches, and returns the first that does.
func (w *Watcher) Wait(timeout time.Duration, match func(Event) bool) (Event, error) {
	deadline := time.After(timeout)
	seen := 0
	for {
		w.mu.Lock()
		evs, changed := w.events[seen:], w.changed
		seen = len(w.events)
		w.mu.Unlock()
		for _, e := range evs {
			if match(e) {
				return e, nil
			}
		}
		select {
		case <-changed:
		case <-deadline:
			return Event{}, fmt.Errorf("no such event within %v", timeout)
		}
	}
}

// WaitFor waits for event ev (with detail, unless "") of domain on node,
// collected at or after since.
func (w *Watcher) WaitFor(node, domain, ev, detail string, since time.Time, timeout time.Duration) (Event, error) {
	e, err := w.Wait(timeout, func(e Event) bool {
		return e.Node == node && e.Domain == domain && e.Event == ev && (detail == "" || e.Detail == detail) && !e.Time.Before(since)
	})
	if err != nil {
		return e, fmt.Errorf("%s: domain %s: no event %q %q since %s: %w\nevents:\n%s", node, domain, ev, detail, since.Format("15:04:05.000"), err, FormatEvents(w.Events()))
	}
	return e, nil
}

// Close ends the streams and waits for their readers.
func (w *Watcher) Close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	streams := w.streams
	w.mu.Unlock()
	for _, cmd := range streams {
		// virsh runs in the node, child of nsenter: end it, nsenter
		// follows.
		for _, pid := range childPids(cmd.Process.Pid) {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	w.wg.Wait()
}

// FormatEvents prints events one a line, for test failures.
func FormatEvents(evs []Event) string {
	var b strings.Builder
	for _, e := range evs {
		b.WriteString("  " + e.String() + "\n")
	}
	return b.String()
}

// Interval is a time during which a domain ran on a node: from the event
// that showed its qemu process (Started, Resumed or Running) to the one
// that showed it gone (Stopped, or Lost with LostKilled). To is zero while
// it still runs, or when the watch was lost otherwise (its state is then
// unknown, and counted as running).
type Interval struct {
	Node, Domain string
	From, To     time.Time
}

func (iv Interval) String() string {
	to := "..."
	if !iv.To.IsZero() {
		to = iv.To.Format("15:04:05.000")
	}
	return fmt.Sprintf("%s on %s from %s to %s", iv.Domain, iv.Node, iv.From.Format("15:04:05.000"), to)
}

// Intervals computes from events (in time order) when each domain ran on
// each node.
func Intervals(events []Event) []Interval {
	type key struct{ node, domain string }
	open := map[key]int{} // index in out
	var out []Interval
	for _, e := range events {
		switch e.Event {
		case "Started", "Resumed", "Suspended", "PMSuspended", "Crashed", "Shutdown", EventRunning:
			// Anything but Stopped means a qemu process.
			k := key{e.Node, e.Domain}
			if _, ok := open[k]; !ok {
				open[k] = len(out)
				out = append(out, Interval{Node: e.Node, Domain: e.Domain, From: e.Time})
			}
		case "Stopped":
			k := key{e.Node, e.Domain}
			if i, ok := open[k]; ok {
				out[i].To = e.Time
				delete(open, k)
			}
		case EventLost:
			if e.Detail != LostKilled {
				continue
			}
			for k, i := range open {
				if k.node == e.Node {
					out[i].To = e.Time
					delete(open, k)
				}
			}
		}
	}
	return out
}

// CheckExclusive returns an error naming the overlaps if domain ever ran on
// two nodes at once, according to events (Intervals).
func CheckExclusive(events []Event, domain string) error {
	var ivs []Interval
	for _, iv := range Intervals(events) {
		if iv.Domain == domain {
			ivs = append(ivs, iv)
		}
	}
	var errs []error
	for i := range ivs {
		for j := i + 1; j < len(ivs); j++ {
			a, b := ivs[i], ivs[j]
			if a.Node != b.Node && overlap(a, b) {
				errs = append(errs, fmt.Errorf("domain %s ran on two nodes at once: %v and %v", domain, a, b))
			}
		}
	}
	return errors.Join(errs...)
}

func overlap(a, b Interval) bool {
	before := func(x, y Interval) bool { return !x.To.IsZero() && !x.To.After(y.From) }
	return !before(a, b) && !before(b, a)
}

// RunningAt lists the nodes where domain ran at time t, according to
// events.
func RunningAt(events []Event, domain string, t time.Time) []string {
	var out []string
	for _, iv := range Intervals(events) {
		if iv.Domain == domain && !iv.From.After(t) && (iv.To.IsZero() || iv.To.After(t)) {
			out = append(out, iv.Node)
		}
	}
	return out
}

// childPids lists the children of pid.
func childPids(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}
