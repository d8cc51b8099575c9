package uitest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/internal/testcluster"
	"github.com/safekit-oss/safekit/internal/testenv"
)

// firefoxPath is Debian's Firefox ESR (apt-get install firefox-esr;
// .ci/run installs it).
const firefoxPath = "/usr/bin/firefox-esr"

// bidiLine is what Firefox prints once its WebDriver BiDi server listens.
var bidiLine = regexp.MustCompile(`WebDriver BiDi listening on (ws://\S+)`)

// firefoxStopTimeout bounds the exit of Firefox after browser.close, before
// it is killed.
const firefoxStopTimeout = 15 * time.Second

// TestConsoleFirefox is a smoke test of the console in Firefox, driven
// with WebDriver BiDi: two real nodes with a mirror started from the
// command line, then in the browser the login form, the states on
// Monitoring, a swap, the module log and the logout. TestConsoleCluster
// goes through every page, in Chromium.
func TestConsoleFirefox(t *testing.T) {
	if _, err := os.Stat(firefoxPath); err != nil {
		testenv.Need(t, firefoxPath+" (apt-get install firefox-esr)")
	}
	mirror := filepath.Join(testenv.CorpusDir(t), "modules", "linux", "mirror.safe")
	c, n1, n2 := newPair(t)
	must := func(n *testcluster.Node, args ...string) {
		t.Helper()
		if stdout, stderr, err := n.Safekit(args...); err != nil {
			t.Fatalf("%v\n%s%s", err, stdout, stderr)
		}
	}
	lan := c.Lans[0]
	for _, n := range c.Nodes {
		must(n, "webservercfg", "-passwd", consolePassword)
	}
	must(n1, "cluster", "create", n1.Addr(lan), n2.Addr(lan))
	must(n1, "cluster", "config")
	must(n1, "-H", "*", "-G")
	must(n1, "module", "install", "-m", module, mirror)
	must(n1, "config", "-m", module)
	must(n1, "-H", "*", "-E", module)
	must(n1, "prim", "-m", module)
	must(n2, "start", "-m", module)

	f := newFirefox(t, n1.Netns())
	url := "http://" + n1.Addr(lan) + ":9010"
	panel := func(node string) string {
		return fmt.Sprintf(`.node-panel[data-module=%q][data-node=%q]`, module, node)
	}
	// waitState waits for a Ready state as the panel shows it: its label,
	// and the green of Ready (--ready: #75d09d in app.css) as Firefox
	// renders it.
	waitState := func(node, state string) {
		t.Helper()
		f.wait(node+" "+state+" Ready, in green", fmt.Sprintf(`(p => !!p && p.dataset.state === %q && p.dataset.ready === 'Ready'
			&& p.querySelector('.synth .label')?.textContent === %q
			&& getComputedStyle(p.querySelector('.synth')).color === 'rgb(117, 208, 157)')(%s)`, state, state, q(panel(node))))
	}
	step := func(name string) { t.Logf("--- %s (%s)", name, time.Now().Format("15:04:05.000")) }

	step("log in with the form")
	f.navigate(url + "/console/en/login")
	f.typeInto(`input[name="httpd_username"]`, "admin")
	f.typeInto(`input[name="httpd_password"]`, consolePassword)
	f.shot("firefox-00-login")
	f.click("#login")
	f.wait("Monitoring", `location.pathname === '/console/en/monitoring' && `+q(`.sidebar a[data-section="monitoring"]`))

	step("monitoring: node1 PRIM, node2 SECOND")
	waitState(n1.Name, "PRIM")
	waitState(n2.Name, "SECOND")
	f.shot("firefox-01-monitoring")

	step("swap from node1's menu, confirmed")
	f.click(panel(n1.Name) + " button.nodemenu")
	f.click(`.menu button[data-item="Swap"]`)
	f.wait("the confirmation dialog", q("dialog[open]")+"?.textContent.includes('Swap the primary and the secondary')")
	f.shot("firefox-02-swap-confirm")
	f.click("dialog[open] button[type=submit]")
	waitState(n1.Name, "SECOND")
	waitState(n2.Name, "PRIM")
	f.shot("firefox-03-swapped")

	step("node1's module log says who asked for the swap: admin, from the browser's address")
	f.click(panel(n1.Name) + " button.details")
	f.wait("the swap in node1's module log", q(".toolbar .status")+fmt.Sprintf(`?.textContent === 'live' &&
		[...document.querySelectorAll('.details-pane table.log tbody tr[data-seq]')].some(r => r.textContent.includes(%q))`,
		"Action swap called by admin@"+n1.Addr(lan)))
	f.shot("firefox-04-module-log")

	step("log out")
	f.click(".topbar > button:last-child")
	f.click(`.menu button[data-item="Logout"]`)
	f.wait("the login page", `location.pathname === '/console/en/login' && `+q(`input[name="httpd_password"]`))
	f.shot("firefox-05-logged-out")
	f.navigate(url + "/console/en/monitoring")
	f.wait("the login page again: the session ended", `location.pathname === '/console/en/login' && `+q(`input[name="httpd_password"]`))
}

// firefox is one headless Firefox for a test, driven over WebDriver BiDi,
// with the JavaScript errors its page reported.
type firefox struct {
	t     *testing.T
	bidi  *bidi
	tab   string // the browsing context of the page
	shots string

	mu     sync.Mutex
	errors []string
}

// newFirefox starts Firefox with a fresh profile in the network namespace
// netns (/run/netns/<netns>), as newBrowser does Chromium, and opens a
// BiDi session on its only tab. Firefox is closed, or killed, and its
// profile removed, when the test ends.
func newFirefox(t *testing.T, netns string) *firefox {
	t.Helper()
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		testenv.Need(t, "nsenter (apt-get install util-linux)")
	}
	// The profile and the output of Firefox, removed after Firefox ends
	// (the cleanups run last registered first).
	dir, err := os.MkdirTemp("", "safekit-firefox-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing Firefox's profile: %v", err)
		}
	})
	profile, logFile := filepath.Join(dir, "profile"), filepath.Join(dir, "firefox.log")
	if err := os.Mkdir(profile, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(nsenter, "--net=/run/netns/"+netns, "--", firefoxPath,
		"--headless", "--no-remote", "--remote-debugging-port=0", "--profile", profile, "about:blank")
	cmd.Stdout, cmd.Stderr = out, out
	// Firefox and its content processes are one process group, killed
	// together; Firefox ends with the test binary, whatever kills it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", firefoxPath, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	f := &firefox{t: t, shots: shotsDir(t)}
	t.Cleanup(func() {
		if f.bidi != nil {
			ctx, cancel := context.WithTimeout(context.Background(), firefoxStopTimeout)
			if err := f.bidi.call(ctx, "browser.close", map[string]any{}, nil); err != nil {
				t.Logf("closing Firefox: %v", err)
			}
			cancel()
			f.bidi.close()
			select {
			case <-exited:
			case <-time.After(firefoxStopTimeout):
				t.Logf("Firefox still runs %v after browser.close: killing it", firefoxStopTimeout)
			}
		}
		// Whatever the close did, no process of the group may outlive the
		// test.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("Firefox's output:\n%s", b)
		}
	})

	ws := waitLogLine(t, logFile, bidiLine) + "/session"
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if f.bidi, err = dialBiDi(ctx, netns, ws, f.event); err != nil {
		t.Fatal(err)
	}
	if err := f.bidi.call(ctx, "session.new", map[string]any{"capabilities": map[string]any{}}, nil); err != nil {
		t.Fatal(err)
	}
	var tree struct {
		Contexts []struct {
			Context string `json:"context"`
		} `json:"contexts"`
	}
	if err := f.bidi.call(ctx, "browsingContext.getTree", map[string]any{}, &tree); err != nil {
		t.Fatal(err)
	}
	if len(tree.Contexts) != 1 {
		t.Fatalf("Firefox has %d tabs, want 1: %+v", len(tree.Contexts), tree)
	}
	f.tab = tree.Contexts[0].Context
	// Every error the page reports fails the test at its end: a broken page
	// must not pass because the waits happened to succeed.
	if err := f.bidi.call(ctx, "session.subscribe", map[string]any{"events": []string{"log.entryAdded"}}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.checkErrors)
	if err := f.bidi.call(ctx, "browsingContext.setViewport", map[string]any{
		"context": f.tab, "viewport": map[string]any{"width": 1440, "height": 900}}, nil); err != nil {
		t.Fatal(err)
	}
	return f
}

// event keeps the errors of the page: log.entryAdded with level error,
// from the console API or an uncaught exception. BiDi reports those of web
// pages only, not Firefox's own, and the only tab loads only the console.
func (f *firefox) event(method string, params json.RawMessage) {
	if method != "log.entryAdded" {
		return
	}
	var e struct {
		Level      string `json:"level"`
		Text       string `json:"text"`
		StackTrace struct {
			CallFrames []struct {
				URL        string `json:"url"`
				LineNumber int    `json:"lineNumber"`
			} `json:"callFrames"`
		} `json:"stackTrace"`
	}
	if json.Unmarshal(params, &e) != nil || e.Level != "error" {
		return
	}
	where := "(no stack)"
	if fr := e.StackTrace.CallFrames; len(fr) > 0 {
		where = fmt.Sprintf("%s:%d", fr[0].URL, fr[0].LineNumber+1)
	}
	f.mu.Lock()
	f.errors = append(f.errors, fmt.Sprintf("%s: %s", where, e.Text))
	f.mu.Unlock()
}

func (f *firefox) checkErrors() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.errors {
		f.t.Errorf("the page logged an error: %s", e)
	}
}

// call sends a BiDi command with the wait timeout; a failure ends the test.
func (f *firefox) call(method string, params, result any) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := f.bidi.call(ctx, method, params, result); err != nil {
		f.fail(err)
	}
}

// fail saves a screenshot and ends the test, naming the page.
func (f *firefox) fail(err error) {
	f.t.Helper()
	f.shot("firefox-failed")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url, _ := f.bidi.evaluate(ctx, f.tab, "location.href")
	f.t.Fatalf("%v (page %s)", err, url.Value)
}

// navigate loads url and waits for its load event.
func (f *firefox) navigate(url string) {
	f.t.Helper()
	f.call("browsingContext.navigate", map[string]any{"context": f.tab, "url": url, "wait": "complete"}, nil)
}

// wait polls a JavaScript condition until it is true; what says what was
// awaited, for the failure message. Errors while the page changes (its
// document goes away during a navigation) count as false.
func (f *firefox) wait(what, cond string) {
	f.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		v, err := f.bidi.evaluate(ctx, f.tab, "!!("+cond+")")
		cancel()
		if err == nil && string(v.Value) == "true" {
			return
		}
		if time.Now().After(deadline) {
			f.fail(fmt.Errorf("waiting for %s (%s): %v", what, cond, err))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// click waits for the element css to be shown and enabled, then clicks its
// centre with the mouse, as a user does: the click lands on whatever
// element is on top there.
func (f *firefox) click(css string) {
	f.t.Helper()
	f.wait(css+" shown and enabled", fmt.Sprintf(`(e => !!e && e.getClientRects().length > 0 && !e.disabled)(%s)`, q(css)))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	el, err := f.bidi.evaluate(ctx, f.tab, fmt.Sprintf(`(e => (e.scrollIntoView({block: 'center'}), e))(%s)`, q(css)))
	if err != nil || el.SharedID == "" {
		f.fail(fmt.Errorf("finding %s to click: %v (got a %s)", css, err, el.Type))
	}
	f.call("input.performActions", map[string]any{"context": f.tab, "actions": []any{map[string]any{
		"type": "pointer", "id": "mouse", "parameters": map[string]any{"pointerType": "mouse"},
		"actions": []any{
			map[string]any{"type": "pointerMove", "x": 0, "y": 0, "origin": map[string]any{"type": "element", "element": map[string]any{"sharedId": el.SharedID}}},
			map[string]any{"type": "pointerDown", "button": 0},
			map[string]any{"type": "pointerUp", "button": 0},
		},
	}}}, nil)
}

// typeInto replaces the text of the field css with text, typed key by key.
func (f *firefox) typeInto(css, text string) {
	f.t.Helper()
	f.click(css)
	f.wait(css+" focused, its text selected", fmt.Sprintf(`(e => (e.select(), document.activeElement === e))(%s)`, q(css)))
	var keys []any
	for _, r := range text {
		keys = append(keys, map[string]any{"type": "keyDown", "value": string(r)}, map[string]any{"type": "keyUp", "value": string(r)})
	}
	f.call("input.performActions", map[string]any{"context": f.tab, "actions": []any{map[string]any{
		"type": "key", "id": "keyboard", "actions": keys,
	}}}, nil)
	f.wait(css+" holding the typed text", fmt.Sprintf(`%s.value === %q`, q(css), text))
}

// shot saves a screenshot of the page as <name>.png.
func (f *firefox) shot(name string) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var r struct {
		Data string `json:"data"`
	}
	err := f.bidi.call(ctx, "browsingContext.captureScreenshot", map[string]any{"context": f.tab}, &r)
	var png []byte
	if err == nil {
		png, err = base64.StdEncoding.DecodeString(r.Data)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(f.shots, name+".png"), png, 0o644)
	}
	if err != nil {
		f.t.Logf("screenshot %s: %v", name, err)
	}
}
