package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/safekit-oss/safekit/runtime/modlog"
	"github.com/safekit-oss/safekit/runtime/module"
)

// The console measurements: how long a line of the module log takes to
// reach a websocket viewer of the console (GET .../ws/log), and what 100
// viewers of one module cost the daemon.
const (
	// logLatencyTarget is the most a line may take, at the 99th
	// percentile, from its append to a viewer.
	logLatencyTarget = 100 * time.Millisecond
	// latencySamples are the lines timed in each run, one at a time.
	latencySamples = 100
	// cliSamples are the lines timed through a `safekit printi` process.
	cliSamples = 30
	// viewers watch the module log at once while viewerLines lines are
	// written at viewerRate per second.
	viewers     = 100
	viewerLines = 250
	viewerRate  = 50
	// consolePassword is the password of the console user of the scratch
	// node.
	consolePassword = "benchreport"
)

// clockTicks is USER_HZ, the unit of the CPU times of /proc/pid/stat.
const clockTicks = 100

func measureConsole(ctx context.Context, n *node, runs int) ([]row, error) {
	if _, err := n.cli(ctx, "webservercfg", "-passwd", consolePassword); err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	cookie, err := n.login(ctx)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	var api, apiWrite []time.Duration
	for run := range runs {
		d, w, err := n.logLatency(ctx, cookie, fmt.Sprintf("api-%d", run), latencySamples, func(msg string) error {
			body, _ := json.Marshal(module.PrintRequest{Level: "E", Msg: msg})
			_, err := n.call(ctx, http.MethodPost, "/v1/modules/"+benchModule+"/print", body)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("console: %w", err)
		}
		api, apiWrite = append(api, d...), append(apiWrite, w...)
	}
	cli, cliWrite, err := n.logLatency(ctx, cookie, "cli", cliSamples, func(msg string) error {
		_, err := n.cli(ctx, "printe", "-m", benchModule, msg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	rows := []row{
		latencyRow(fmt.Sprintf("log line to websocket, append (%d lines)", len(api)), api, apiWrite),
		latencyRow(fmt.Sprintf("log line to websocket, safekit printe (%d lines)", len(cli)), cli, cliWrite),
	}
	rows[1].note = ""
	r, err := n.viewersCPU(ctx, cookie)
	if err != nil {
		return rows, fmt.Errorf("console: %w", err)
	}
	return append(rows, r), nil
}

// p99 is the 99th percentile of samples.
func p99(samples []time.Duration) time.Duration {
	s := slices.Clone(samples)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*99/100)]
}

// latencyRow reports the median and the 99th percentile of samples, and
// those of the writes alone (the same lines, until the append returned).
func latencyRow(name string, samples, writes []time.Duration) row {
	return row{
		name: name,
		result: fmt.Sprintf("median %s, p99 %s (the write alone: median %s, p99 %s)",
			ms(median(samples)), ms(p99(samples)), ms(median(writes)), ms(p99(writes))),
		target:  "p99 < " + ms(logLatencyTarget),
		verdict: verdict(p99(samples) < logLatencyTarget),
		note: "log line to websocket: from the start of the write (POST /v1/modules/b1/print, or the safekit printe process a script runs; " +
			"it returns once the module log is fsync'd) to the line read by a console websocket (GET /api/v1.0/modules/b1/ws/log)",
	}
}

// login opens a console session and returns its cookie.
func (n *node) login(ctx context.Context) (*http.Cookie, error) {
	form := url.Values{"httpd_username": {"admin"}, "httpd_password": {consolePassword}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+n.web+"/login", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "sessionSK" {
			return c, nil
		}
	}
	return nil, fmt.Errorf("login: %s, no session cookie", resp.Status)
}

// viewer opens a websocket on the log of the bench module.
func (n *node) viewer(ctx context.Context, cookie *http.Cookie) (*websocket.Conn, error) {
	h := http.Header{}
	h.Set("Cookie", cookie.String())
	h.Set("Origin", "http://"+n.web)
	conn, resp, err := websocket.DefaultDialer.DialContext(ctx, "ws://"+n.web+"/api/v1.0/modules/"+benchModule+"/ws/log", h)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("websocket: %s: %w", resp.Status, err)
		}
		return nil, fmt.Errorf("websocket: %w", err)
	}
	return conn, nil
}

// readLines hands each log line a viewer receives to got, with the time it
// arrived, until the connection ends.
func readLines(conn *websocket.Conn, got func(msg string, at time.Time)) error {
	for {
		var m struct {
			Entry  *modlog.Entry `json:"entry"`
			Missed uint64        `json:"missed"`
		}
		if err := conn.ReadJSON(&m); err != nil {
			return err
		}
		if m.Missed > 0 {
			return fmt.Errorf("the viewer missed %d lines", m.Missed)
		}
		if m.Entry != nil {
			got(m.Entry.Msg, time.Now())
		}
	}
}

// logLatency writes samples lines with write, one at a time, and returns
// how long each took to reach a websocket viewer, and how long each write
// took.
func (n *node) logLatency(ctx context.Context, cookie *http.Cookie, tag string, samples int, write func(msg string) error) (seen, writes []time.Duration, err error) {
	conn, err := n.viewer(ctx, cookie)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	type arrival struct {
		msg string
		at  time.Time
	}
	arrived := make(chan arrival, samples)
	go readLines(conn, func(msg string, at time.Time) {
		if strings.HasPrefix(msg, "latency "+tag+" ") {
			arrived <- arrival{msg, at}
		}
	})
	for i := range samples {
		msg := fmt.Sprintf("latency %s %d", tag, i)
		start := time.Now()
		if err := write(msg); err != nil {
			return nil, nil, err
		}
		writes = append(writes, time.Since(start))
		select {
		case got := <-arrived:
			if got.msg != msg {
				return nil, nil, fmt.Errorf("the viewer got %q, want %q", got.msg, msg)
			}
			seen = append(seen, got.at.Sub(start))
		case <-time.After(10 * time.Second):
			return nil, nil, fmt.Errorf("line %q not seen by the viewer within 10 s", msg)
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	return seen, writes, nil
}

// viewersCPU opens viewers websockets on the bench module, writes
// viewerLines lines at viewerRate, and reports the CPU of safekitd and of
// the module process, and whether every viewer got every line.
func (n *node) viewersCPU(ctx context.Context, cookie *http.Cookie) (row, error) {
	name := fmt.Sprintf("%d websocket viewers, %d lines/s", viewers, viewerRate)
	var counts [viewers]int
	var mu sync.Mutex
	var conns []*websocket.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range viewers {
		conn, err := n.viewer(ctx, cookie)
		if err != nil {
			return row{}, fmt.Errorf("viewer %d: %w", i+1, err)
		}
		conns = append(conns, conn)
		go readLines(conn, func(msg string, _ time.Time) {
			if strings.HasPrefix(msg, "viewers ") {
				mu.Lock()
				counts[i]++
				mu.Unlock()
			}
		})
	}
	daemonPid, modulePid, err := n.pids(benchModule)
	if err != nil {
		return row{}, err
	}
	d0, m0 := cpuTicks(daemonPid), cpuTicks(modulePid)
	start := time.Now()
	body := func(i int) []byte {
		b, _ := json.Marshal(module.PrintRequest{Level: "E", Msg: "viewers " + strconv.Itoa(i)})
		return b
	}
	tick := time.NewTicker(time.Second / viewerRate)
	defer tick.Stop()
	for i := range viewerLines {
		<-tick.C
		if _, err := n.call(ctx, http.MethodPost, "/v1/modules/"+benchModule+"/print", body(i)); err != nil {
			return row{}, err
		}
	}
	complete := func() int {
		mu.Lock()
		defer mu.Unlock()
		k := 0
		for _, c := range counts {
			if c == viewerLines {
				k++
			}
		}
		return k
	}
	deadline := time.Now().Add(10 * time.Second)
	for complete() < viewers && time.Now().Before(deadline) {
		time.Sleep(pollInterval)
	}
	elapsed := time.Since(start)
	d1, m1 := cpuTicks(daemonPid), cpuTicks(modulePid)
	pct := func(ticks int64) float64 {
		return float64(ticks) / clockTicks / elapsed.Seconds() * 100
	}
	got := complete()
	return row{
		name: name,
		result: fmt.Sprintf("safekitd %.1f%% of a CPU, module process %.1f%%; %d/%d viewers got all %d lines",
			pct(d1-d0), pct(m1-m0), got, viewers, viewerLines),
		target:  "every viewer gets every line",
		verdict: verdict(got == viewers),
		note: fmt.Sprintf("%d viewers: one console session with %d websockets on the log of b1, while %d lines are appended at %d per second; "+
			"CPU is user+system time of the processes over the %s of the run", viewers, viewers, viewerLines, viewerRate, elapsed.Round(time.Millisecond)),
	}, nil
}

// pids returns the pids of safekitd and of the process of module name.
func (n *node) pids(name string) (daemon, mod int, err error) {
	procs, err := nodeProcs(n.roots.SAFEVAR)
	if err != nil {
		return 0, 0, err
	}
	for _, p := range procs {
		switch p.module {
		case "":
			daemon = p.pid
		case name:
			mod = p.pid
		}
	}
	if daemon == 0 || mod == 0 {
		return 0, 0, errors.New("safekitd or the process of module " + name + " not found")
	}
	return daemon, mod, nil
}

// cpuTicks is the user and system time of pid, in clock ticks.
func cpuTicks(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return utime + stime
}
