package automaton

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// The script execution table of the User's Guide (§14.4) as data. Every row
// must be run, in exactly this order and with these arguments, by some
// scenario of testdata/ whose module has every script (`new` without
// scripts= or nouser): deleting the section that shows a row fails
// TestScriptTableCovered, naming the row.

// segment is a run of scripts with the same FROM, TO and action arguments.
type segment struct {
	from, to State
	action   string
	// scripts in order; "stop_prim force" is the forced call.
	scripts []string
}

func seg(from, to State, action string, scripts ...string) segment {
	return segment{from: from, to: to, action: action, scripts: scripts}
}

type tableRow struct {
	// name is the row as the guide's table names it.
	name string
	mode Mode
	// path is what our automaton runs for it, one segment or several
	// contiguous ones.
	path []segment
	// guide, when set, is the guide's order, which our automaton does not
	// follow; doc names the page that explains the choice.
	guide, doc string
}

var forcedStop = []string{"stop_sec force", "stop_prim force", "stop_second force", "stop_both force", "poststop", "transition"}

// restartSegs: a restart runs each stop script graceful then forced, then
// the start scripts, in the same state.
func restartSegs(s State, stops, starts []string) []segment {
	var twice []string
	for _, x := range stops {
		twice = append(twice, x, x+" force")
	}
	return []segment{seg(s, s, "stop", twice...), seg(s, s, "start", starts...)}
}

func scriptTable() []tableRow {
	rows := []tableRow{
		{name: "STOP → WAIT", path: []segment{seg(Stop, Wait, "start", "transition", "prestart")}},
		{name: "WAIT → ALONE", path: []segment{seg(Wait, Alone, "start", "transition", "start_both", "start_prim", "start_sec")}},
		{name: "WAIT → PRIM", path: []segment{
			seg(Wait, Alone, "start", "transition", "start_both", "start_prim", "start_sec"),
			seg(Alone, Prim, "start", "stop_sec", "transition")},
			guide: "transition, start_both, start_prim", doc: "docs/scripts.md: a starting node is primary through ALONE"},
		{name: "WAIT → SECOND", path: []segment{seg(Wait, Second, "start", "transition", "start_both", "start_second", "start_sec")}},
		{name: "restart in ALONE", path: restartSegs(Alone, []string{"stop_sec", "stop_prim", "stop_both"}, []string{"start_both", "start_prim", "start_sec"})},
		{name: "restart in PRIM", path: restartSegs(Prim, []string{"stop_prim", "stop_both"}, []string{"start_both", "start_prim"})},
		{name: "restart in SECOND", path: restartSegs(Second, []string{"stop_sec", "stop_second", "stop_both"}, []string{"start_both", "start_second", "start_sec"})},
		{name: "ALONE → PRIM (remote start)", path: []segment{seg(Alone, Prim, "start", "stop_sec", "transition")}},
		{name: "PRIM → ALONE (remote stop)", path: []segment{seg(Prim, Alone, "start", "transition", "start_sec")}},
		{name: "ALONE → SECOND (remote start), split-brain recovery", path: []segment{
			seg(Alone, Wait, "stopstart", "stop_sec", "stop_prim", "stop_both", "transition"),
			seg(Wait, Stop, "stopstart", forcedStop...),
			seg(Stop, Wait, "start", "transition", "prestart"),
			seg(Wait, Second, "start", "transition", "start_both", "start_second", "start_sec")},
			guide: "stop_prim twice, transition, start_second", doc: "docs/scripts.md: an ALONE node never becomes SECOND directly"},
		{name: "ALONE → SECOND (remote start), defaultprim names the peer", path: []segment{
			seg(Alone, Prim, "start", "stop_sec", "transition"),
			seg(Prim, Second, "swap", "stop_prim", "stop_prim force", "transition", "start_second", "start_sec")},
			guide: "stop_prim twice, transition, start_second", doc: "docs/scripts.md: an ALONE node never becomes SECOND directly"},
		{name: "SECOND → ALONE (failover)", path: []segment{seg(Second, Alone, "start", "stop_second", "transition", "start_prim")}},
		{name: "PRIM → SECOND (swap)", path: []segment{seg(Prim, Second, "swap", "stop_prim", "stop_prim force", "transition", "start_second", "start_sec")}},
		{name: "SECOND → PRIM (swap)", path: []segment{seg(Second, Prim, "swap", "stop_sec", "stop_second", "transition", "start_prim")}},
		{name: "ALONE → WAIT (stop)", path: []segment{seg(Alone, Wait, "stop", "stop_sec", "stop_prim", "stop_both", "transition")}},
		{name: "PRIM → WAIT (stop)", path: []segment{seg(Prim, Wait, "stop", "stop_prim", "stop_both", "transition")}},
		{name: "SECOND → WAIT (stop)", path: []segment{seg(Second, Wait, "stop", "stop_sec", "stop_second", "stop_both", "transition")}},
		{name: "WAIT → STOP", path: []segment{seg(Wait, Stop, "stop", forcedStop...)},
			guide: "transition in italics", doc: "docs/scripts.md: transition runs once"},
	}
	for i := range rows {
		rows[i].mode = Mirror
	}
	// A farm and a light module run only the both scripts in UP.
	for _, mode := range []Mode{Farm, Light} {
		rows = append(rows,
			tableRow{name: "STOP → WAIT", mode: mode, path: []segment{seg(Stop, Wait, "start", "transition", "prestart")}},
			tableRow{name: "WAIT → UP", mode: mode, path: []segment{seg(Wait, Up, "start", "transition", "start_both")},
				guide: "transition, start_both, start_prim, start_sec", doc: "docs/scripts.md: UP runs the both scripts only"},
			tableRow{name: "restart in UP", mode: mode, path: restartSegs(Up, []string{"stop_both"}, []string{"start_both"}),
				guide: "stop_sec, stop_prim, stop_both twice, then start_both, start_prim, start_sec", doc: "docs/scripts.md: UP runs the both scripts only"},
			tableRow{name: "UP → WAIT (stop)", mode: mode, path: []segment{seg(Up, Wait, "stop", "stop_both", "transition")},
				guide: "stop_sec, stop_prim, stop_both, transition", doc: "docs/scripts.md: UP runs the both scripts only"},
			tableRow{name: "WAIT → STOP", mode: mode, path: []segment{seg(Wait, Stop, "stop", forcedStop...)}})
	}
	return rows
}

// lines is the path as the harness prints the scripts it runs, without
// "run " and the timeout.
func (r tableRow) lines() []string {
	var out []string
	for _, s := range r.path {
		for _, script := range s.scripts {
			out = append(out, strings.Join([]string{script, string(s.from), string(s.to), s.action}, " "))
		}
	}
	return out
}

// recordedRuns returns, for each module of the scenarios in dir that has
// every script, its mode and the scripts it ran in order.
func recordedRuns(t *testing.T, dir string) (modes []Mode, runs [][]string) {
	files, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all := false
		datadriven.RunTestFromStringAny(quiet{t}, string(data), func(_ testing.TB, d *datadriven.TestData) string {
			if d.Cmd == "new" {
				all = !d.HasArg("scripts") && !d.HasArg("nouser")
				if all {
					mode := Mirror
					if arg, ok := d.Arg("mode"); ok && len(arg.Vals) > 0 {
						mode = Mode(arg.Vals[0])
					}
					modes, runs = append(modes, mode), append(runs, nil)
				}
			}
			if all {
				for _, l := range strings.Split(d.Expected, "\n") {
					if run, ok := strings.CutPrefix(l, "run "); ok {
						run, _, _ = strings.Cut(run, " (timeout ")
						runs[len(runs)-1] = append(runs[len(runs)-1], run)
					}
				}
			}
			return d.Expected
		})
	}
	return modes, runs
}

// quiet reads scenario files without echoing each directive under -v
// (TestScenarios already does).
type quiet struct{ testing.TB }

func (quiet) Logf(string, ...any) {}

func containsRun(runs, want []string) bool {
	for i := 0; i+len(want) <= len(runs); i++ {
		match := true
		for j := range want {
			if runs[i+j] != want[j] {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}

func TestScriptTableCovered(t *testing.T) {
	modes, runs := recordedRuns(t, "testdata")
	for _, row := range scriptTable() {
		want := row.lines()
		found := false
		for i := range runs {
			if modes[i] == row.mode && containsRun(runs[i], want) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("row %s (%s) of the script table is not exercised: no %s module with every script in testdata/ runs, in this order:\n\t%s",
				row.name, row.mode, row.mode, strings.Join(want, "\n\t"))
		}
	}
}
