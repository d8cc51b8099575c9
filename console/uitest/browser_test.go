package uitest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/safekit-oss/safekit/internal/testenv"
)

// chromiumPath is Debian's chromium (apt-get install chromium
// chromium-driver; .ci/run installs them).
const chromiumPath = "/usr/bin/chromium"

// Bounds of the browser steps: one wait for the page (a state change, a
// log line) and the whole scenario.
const (
	waitTimeout     = 90 * time.Second
	scenarioTimeout = 12 * time.Minute
)

// browser is one headless Chromium tab for a test, with the screenshots it
// saves and the JavaScript errors the page raised.
type browser struct {
	t     *testing.T
	ctx   context.Context
	shots string

	mu     sync.Mutex
	errors []string
}

// shotsDir is where screenshots go: $SAFEKIT_UI_SHOTS, else a new
// temporary directory, printed in the test log and kept.
func shotsDir(t *testing.T) string {
	dir := os.Getenv("SAFEKIT_UI_SHOTS")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "safekit-console-shots-"); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s (set SAFEKIT_UI_SHOTS to choose)", dir)
	return dir
}

// newBrowser starts Chromium with a fresh profile in the network
// namespace netns (/run/netns/<netns>), and skips the test without
// Chromium (fails it in CI).
//
// In a node's namespace the browser is a machine of the node's lan, and it
// sees none of the interfaces that other tests create and remove on the
// host meanwhile: Chromium aborts its requests (net::ERR_NETWORK_CHANGED)
// whenever the addresses of its machine change.
func newBrowser(t *testing.T, netns string) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		testenv.Need(t, chromiumPath+" (apt-get install chromium chromium-driver)")
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		testenv.Need(t, "nsenter (apt-get install util-linux)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 900),
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			cmd.Args = append([]string{nsenter, "--net=/run/netns/" + netns, "--", cmd.Path}, cmd.Args[1:]...)
			cmd.Path = nsenter
			// The browser ends with the test binary, whatever kills it.
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		}),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	b := &browser{t: t, ctx: ctx, shots: shotsDir(t)}
	// Every exception and console error of the page fails the test at
	// its end: a broken page must not pass because the waits happened to
	// succeed.
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == chromedp.ConsoleError {
				b.mu.Lock()
				b.errors = append(b.errors, fmt.Sprintf("%s:%d: %s", m.URL, m.Line+1, m.Text))
				b.mu.Unlock()
			}
		}
	}()
	t.Cleanup(b.checkErrors)
	return b
}

// allowedErrors are console messages that are not page bugs: the browser
// logs the answer of every failed request, and some steps expect a refusal.
var allowedErrors = []string{"401 (Unauthorized)", "WebSocket connection to", "favicon"}

func (b *browser) checkErrors() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.errors {
		allowed := false
		for _, a := range allowedErrors {
			allowed = allowed || strings.Contains(e, a)
		}
		if !allowed {
			b.t.Errorf("the page logged an error: %s", e)
		}
	}
}

// do runs steps with the wait timeout; a failure saves a screenshot and
// ends the test.
func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.fail(err)
	}
}

func (b *browser) fail(err error) {
	b.t.Helper()
	b.shot("failed")
	url, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`location.href`))
	b.t.Fatalf("%v (page %s)", err, url)
}

// eval returns the value of a JavaScript expression.
func eval[T any](b *browser, js string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		b.fail(fmt.Errorf("evaluating %s: %w", js, err))
	}
	return v
}

// wait polls a JavaScript condition until it is true; what says what was
// awaited, for the failure message. Errors while the page changes (its
// JavaScript context goes away during a navigation) count as false.
func (b *browser) wait(what, cond string) {
	b.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+cond+")"))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.fail(fmt.Errorf("waiting for %s (%s): %v", what, cond, err))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (b *browser) click(css string) {
	b.t.Helper()
	b.do(chromedp.Click(chromedp.CSS(css)))
}

// setValue sets a field as typing would: value, then input and change.
func (b *browser) setValue(css, value string) {
	b.t.Helper()
	js := fmt.Sprintf(`(() => { const el = document.querySelector(%q); if (!el) return false;
		el.value = %q; el.dispatchEvent(new Event('input', {bubbles: true})); el.dispatchEvent(new Event('change', {bubbles: true})); return true; })()`, css, value)
	if !eval[bool](b, js) {
		b.fail(fmt.Errorf("no element %s to set", css))
	}
}

// shot saves a screenshot of the window as <name>.png.
func (b *browser) shot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
	}
}

// q is a JavaScript expression that finds one element.
func q(css string) string { return fmt.Sprintf("document.querySelector(%q)", css) }
