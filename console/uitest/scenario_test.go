package uitest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// target is a two-node cluster whose console the scenario drives.
type target struct {
	url      string // the connection node's console: http://addr:port
	netns    string // the network namespace the browser runs in
	password string // of the console user admin
	// setPasswords gives admin its password on every node: before, the
	// nodes have no console user.
	setPasswords func()
	nodes        [2]string // node1, node2
	addrs        [2]string
	mirror       string // path of the published mirror.safe
	// userconfig reads SAFE/modules/<module>/conf/userconfig.xml on a node.
	userconfig func(node, module string) (string, error)
}

const module = "mirror"

// markValue is what the wizard sets in the macro the scenario adds.
const markValue = "set-by-the-console"

// scenario is what an operator does in a first session: log in, configure
// the cluster, deploy mirror.safe with the wizard, start it, swap, restart
// while reading the application log, stop the primary and log out.
func scenario(t *testing.T, tg target) {
	b := newBrowser(t, tg.netns)
	n1, n2 := tg.nodes[0], tg.nodes[1]
	panel := func(node string) string {
		return fmt.Sprintf(`.node-panel[data-module=%q][data-node=%q]`, module, node)
	}
	waitState := func(node, state, ready string) {
		t.Helper()
		b.wait(fmt.Sprintf("%s %s %s", node, state, ready),
			fmt.Sprintf(`(p => !!p && p.dataset.state === %q && p.dataset.ready === %q)(%s)`, state, ready, q(panel(node))))
	}
	confirm := func() {
		t.Helper()
		b.wait("the confirmation dialog", q("dialog[open] button[type=submit]"))
		b.click("dialog[open] button[type=submit]")
		b.wait("the dialog to close", "!"+q("dialog[open]"))
	}
	nodeMenu := func(node string, items ...string) {
		t.Helper()
		b.click(panel(node) + " button.nodemenu")
		for _, it := range items {
			sel := fmt.Sprintf(`.menu button[data-item^=%q]`, it)
			b.wait("menu item "+it, fmt.Sprintf(`(x => !!x && !x.disabled)(%s)`, q(sel)))
			b.click(sel)
		}
	}
	step := func(name string) { t.Logf("--- %s (%s)", name, time.Now().Format("15:04:05.000")) }

	step("without a console user, the login page says how to make one")
	b.do(chromedp.Navigate(tg.url + "/console/en/monitoring"))
	b.wait("the login form", q("#password"))
	if p := eval[string](b, "location.pathname"); p != "/console/en/login" {
		t.Errorf("an anonymous visit of the monitoring page shows %s, want the login page", p)
	}
	b.wait("the way to set a password", q(".setup:not([hidden])")+"?.textContent.includes('safekit webservercfg -passwd')")
	b.shot("00-login-no-user")

	step("the console refuses a wrong password")
	tg.setPasswords()
	b.do(chromedp.Reload())
	b.wait("the login form without the hint", q("#password")+" && "+q(".setup[hidden]"))
	b.setValue("#password", "not-the-password")
	b.click("#login")
	b.wait("the refusal", q(".login-card .err")+".textContent !== ''")
	b.shot("01-login")

	step("log in")
	b.setValue("#username", "admin")
	b.setValue("#password", tg.password)
	b.click("#login")
	b.wait("the application shell", q(".topbar")+" && "+q(`.sidebar a[data-section="configuration"]`))

	step("configure the cluster: the wizard checks, saves and applies")
	b.click(`.sidebar a[data-section="configuration"]`)
	b.wait("the cluster wizard", `document.querySelectorAll('.card.lan .noderow').length === 2`)
	setRow := func(i int, addr, name string) {
		js := fmt.Sprintf(`(() => { const r = document.querySelectorAll('.card.lan .noderow')[%d];
			for (const [sel, v] of [['.field.addr input', %q], ['.field.name input', %q]]) {
				const el = r.querySelector(sel); el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }
			return true; })()`, i, addr, name)
		eval[bool](b, js)
	}
	setRow(0, tg.addrs[0], n1)
	setRow(1, "", n2)
	b.click("#save-apply")
	b.wait("the error about node2's missing address", q(".field.invalid")+" || "+q(".errors:not([hidden]) div"))
	setRow(1, tg.addrs[1], n2)
	b.shot("02-cluster-wizard")
	b.click("#save-apply")
	b.wait("a result per node", `document.querySelectorAll('.results [data-result]').length === 2`)
	if bad := eval[int](b, `document.querySelectorAll('.results [data-result="failure"]').length`); bad != 0 {
		b.fail(fmt.Errorf("applying the cluster failed on %d node(s): %s", bad, eval[string](b, q(".results")+".textContent")))
	}
	b.wait("the connection node chip", q(".chip .self")+fmt.Sprintf("?.textContent === %q", n1))
	b.shot("03-cluster-result")

	step("the nodes of the cluster")
	b.click(`.tabs a[href$="configuration/cluster"]`)
	b.wait("the nodes list", fmt.Sprintf(`(x => !!x && x.textContent.includes('Applied on'))(%s)`, q(fmt.Sprintf(`.expander[data-node=%q] .applied`, n1))))
	b.click(fmt.Sprintf(`.expander[data-node=%q] .head`, n1))
	b.wait("node1's details", q(".expander.open table.kv")+".textContent.includes('SafeKit')")
	b.shot("04-cluster-home")

	step("new module: upload mirror.safe and name it")
	b.click(`.tabs a[href$="configuration/modules"]`)
	b.wait("the templates of Application_Modules", q(`details[data-section="Main modules"] input[value="generic/mirror.safe"]`))
	b.shot("05-new-module")
	b.click(`details[data-section="Upload a module"] > summary`)
	b.do(chromedp.SetUploadFiles(chromedp.CSS("#upload-file"), []string{tg.mirror}))
	b.click("button.upload")
	b.wait("the module name dialog", q(`dialog[open] input[name="module-name"]`)+fmt.Sprintf(".value === %q", module))
	b.click("dialog[open] button[type=submit]")
	b.wait("the wizard", q(`details[data-panel="macros"]`))

	step("wizard step 1: a macro added as text, values set in the form, an error shown at its field")
	b.click("#advanced")
	b.wait("the userconfig.xml editor", q("#userconfig")+".value.includes('<safe>')")
	eval[bool](b, `(() => { const ta = document.querySelector('#userconfig');
		ta.value = ta.value.replace('<safe>', '<safe>\n <macro name="CONSOLE_MARK" value="x"/>');
		ta.dispatchEvent(new Event('input', {bubbles: true})); return true; })()`)
	b.click("#advanced")
	b.wait("the macro in the form", q(`input[name="macro-CONSOLE_MARK"]`))
	b.setValue(`input[name="macro-CONSOLE_MARK"]`, markValue)
	b.setValue(`input[name="macro-SERVICES"]`, "%SERVICES%")
	b.click("#next")
	b.wait("the check error", "("+q(".field.invalid")+" || "+q(".errors:not([hidden]) div")+") && "+q("#next")+".disabled")
	b.shot("06-wizard-error")
	if txt := eval[string](b, `[...document.querySelectorAll('.err, .errors div')].map(e => e.textContent).join(' | ')`); !strings.Contains(txt, "SERVICES") {
		t.Errorf("the check error does not name the macro: %q", txt)
	}
	b.setValue(`input[name="macro-SERVICES"]`, "")
	if eval[bool](b, q("#next")+".disabled") {
		t.Error("Next step stays disabled after the field was corrected")
	}
	b.click("#next")

	step("wizard step 2: the scripts")
	b.wait("the main scripts", q(`.scripts nav a[data-file="bin/start_prim"]`)+" && "+q(`.scripts nav a[data-file="bin/stop_prim"]`))
	if eval[bool](b, "!!"+q(`.scripts nav a[data-file="bin/prestart"]`)) {
		t.Error("step 2 lists bin/prestart without Advanced configuration")
	}
	b.wait("start_prim in the editor", q("#script")+"?.value.includes('start')")
	b.shot("07-wizard-scripts")
	b.click("#advanced")
	b.wait("every bin/ file", q(`.scripts nav a[data-file="bin/prestart"]`))
	b.click("#next")

	step("wizard steps 3 and 4: encryption, nodes")
	b.wait("step 3", q(".stepper .step.current")+"?.textContent.includes('encryption')")
	b.click("#next")
	b.wait("the node checklist", fmt.Sprintf(`document.querySelectorAll('.nodes-check label[data-node] input').length === 2 && !%s.disabled`, q("#save-apply")))
	if !eval[bool](b, fmt.Sprintf(`(x => x.checked && x.disabled)(%s)`, q(fmt.Sprintf(`.nodes-check label[data-node=%q] input`, n1)))) {
		t.Error("the connection node is not checked and locked in the node checklist")
	}
	b.shot("08-wizard-nodes")
	b.click("#save-apply")

	step("wizard step 5: the result on both nodes, the macro on both nodes")
	b.wait("a result per node", `document.querySelectorAll('.results [data-result]').length === 2`)
	if bad := eval[int](b, `document.querySelectorAll('.results [data-result="failure"]').length`); bad != 0 {
		b.fail(fmt.Errorf("applying the module failed on %d node(s): %s", bad, eval[string](b, q(".results")+".textContent")))
	}
	b.shot("09-wizard-result")
	for _, n := range tg.nodes {
		uc, err := tg.userconfig(n, module)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if !strings.Contains(uc, `name="CONSOLE_MARK" value="`+markValue+`"`) || !strings.Contains(uc, `name="SERVICES" value=""`) {
			t.Errorf("%s: the macros set in the wizard are not in userconfig.xml:\n%s", n, uc)
		}
	}
	b.click("#monitor")

	step("monitoring: both nodes STOP, force start node1 as primary, start node2")
	waitState(n1, "STOP", "NotReady")
	waitState(n2, "STOP", "NotReady")
	b.shot("10-monitoring-stop")
	nodeMenu(n1, "Force start")
	b.wait("the Force start submenu", q(`.menu button[data-item="As primary"]`))
	b.shot("11-node-menu-force-start")
	b.click(`.menu button[data-item="As primary"]`)
	confirm()
	waitState(n1, "ALONE", "Ready")
	nodeMenu(n2, "Start")
	waitState(n2, "SECOND", "Ready")
	waitState(n1, "PRIM", "Ready")
	b.shot("12-monitoring-prim-second")
	b.click(fmt.Sprintf(`.mod-card[data-module=%q] > header button`, module))
	b.click(`.menu button[data-item="Debug"]`)
	b.wait("the Debug submenu", q(`.menu button[data-item="Download the snapshots"]`))
	b.shot("13-module-menu-debug")
	eval[bool](b, "document.body.click(), true")

	step("swap")
	nodeMenu(n1, "Swap")
	confirm()
	waitState(n1, "SECOND", "Ready")
	waitState(n2, "PRIM", "Ready")
	eval[bool](b, "window.__sameDocument = true")

	step("the module log of the primary, live during a restart; the script log of start_prim")
	b.click(panel(n2) + " button.details")
	b.wait("the module log", `document.querySelectorAll('.details-pane table.log tbody tr[data-seq]').length > 0 && `+q(".toolbar .status")+".textContent === 'live'")
	before := eval[int](b, `Math.max(...[...document.querySelectorAll('.details-pane table.log tbody tr[data-seq]')].map(r => +r.dataset.seq))`)
	nodeMenu(n2, "Restart")
	confirm()
	newRow := func(re string) string {
		return fmt.Sprintf(`[...document.querySelectorAll('.details-pane table.log tbody tr[data-seq]')].find(r => +r.dataset.seq > %d && /%s/.test(r.textContent))`, before, re)
	}
	b.wait("the restart in the module log", newRow(`Action restart called by`))
	b.wait("the start_prim run in the module log", newRow(`Script start_prim\b.*> userlog_\S+\.ulog`))
	eval[bool](b, "("+newRow(`Script start_prim\b.*> userlog_\S+\.ulog`)+").id = 'restart-start-prim', true")
	waitState(n2, "PRIM", "Ready")
	b.click("#restart-start-prim")
	b.wait("the output of start_prim in the script log", q(".script-log")+"?.textContent.includes('Running start_prim')")
	if !eval[bool](b, "window.__sameDocument === true") {
		t.Error("the page was reloaded: the log must update in place")
	}
	b.shot("14-module-log-script")

	step("resources and information of node2")
	b.click(`.tabs a[data-tab="resources"]`)
	b.wait("the resources", q(`table.resources tr[data-name="state.local"]`))
	b.shot("15-resources")
	b.click(`.tabs a[data-tab="information"]`)
	b.wait("the information", q(`table.info tr[data-key="Hostname"] td:last-child`)+"?.textContent !== ''")
	b.shot("16-information")

	step("stop the primary: node1 takes over")
	nodeMenu(n2, "Stop")
	confirm()
	waitState(n2, "STOP", "NotReady")
	waitState(n1, "ALONE", "Ready")
	b.shot("17-failover")

	step("the installed modules")
	b.click(`.sidebar a[data-section="configuration"]`)
	b.click(`.tabs a[href$="configuration/modules"]`)
	b.wait("the module card applied on both nodes", fmt.Sprintf(`document.querySelectorAll('.card.module[data-module=%q] .applied .success').length === 2`, module))
	b.shot("18-modules-installed")

	step("log out")
	b.click(".topbar > button:last-child")
	b.click(`.menu button[data-item="Logout"]`)
	b.wait("the login form", q("#password"))
	b.do(chromedp.Navigate(tg.url + "/console/en/monitoring"))
	b.wait("the login form again", q("#password")+" && location.pathname === '/console/en/login'")
}
