// Command benchreport measures the performance targets of the project and
// prints one line per measurement, each target marked met or missed (`make
// bench`). A missed target is a finding, not a failure: the exit status is
// non-zero only when a measurement could not run.
//
// The machines are shared and noisy, so every figure is the median of
// several runs. The node measurements use a scratch safekitd (bin/safekitd,
// built by `make build`) with its own SAFE and SAFEVAR, stopped and removed
// at the end whatever happens. The two-node ones (failure detection, soak
// under load; $SAFEKIT_SOAK shortens the soak) run on a cluster of the
// test harness, made and torn down here, and need root. So do the file
// replication ones (rfs.go), which also need /dev/fuse, fio and rsync, and
// the kvm ones (kvm.go), which also need libvirt and qemu.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/safekit-oss/safekit/internal/testenv"
)

// row is one line of the report. Verdict is "met", "missed", or "-" for a
// figure without a target; note, when set, is printed below the table.
type row struct {
	name, result, target, verdict string
	note                          string
}

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "missed"
}

// groups are the measurements of the report, in the order they run; -only
// picks some of them.
var groups = []string{"config", "node", "cluster", "rfs", "kvm"}

func main() {
	runs := flag.Int("runs", 5, "runs of each measurement; the report shows their median")
	only := flag.String("only", "", "comma-separated groups to measure, of "+strings.Join(groups, ",")+" (default: all)")
	flag.Parse()
	*runs = max(*runs, 1)
	want, err := pickGroups(*only)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(2)
	}
	// A ^C ends the measurements early but still stops the scratch node.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	rows, err := run(ctx, *runs, want)
	stop()
	if len(rows) > 0 {
		printReport(os.Stdout, *runs, rows)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

// pickGroups reads -only.
func pickGroups(only string) (map[string]bool, error) {
	want := map[string]bool{}
	if only == "" {
		for _, g := range groups {
			want[g] = true
		}
		return want, nil
	}
	for _, g := range strings.Split(only, ",") {
		g = strings.TrimSpace(g)
		if !slices.Contains(groups, g) {
			return nil, fmt.Errorf("-only: unknown group %q: choose among %s", g, strings.Join(groups, ", "))
		}
		want[g] = true
	}
	return want, nil
}

// run takes the measurements of the groups in want and returns the rows
// measured so far with the first error.
func run(ctx context.Context, runs int, want map[string]bool) (rows []row, err error) {
	root := testenv.RepoRoot()
	if want["config"] {
		r, err := measureConfig(ctx, corpusDir(root), runs)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r)
	}
	if want["node"] {
		n, err := startNode(ctx, filepath.Join(root, "bin"))
		if err != nil {
			return rows, err
		}
		for _, m := range []func(context.Context, *node, int) ([]row, error){measureState, measureLog, measureMemory, measureConsole} {
			more, err := m(ctx, n, runs)
			rows = append(rows, more...)
			if err != nil {
				return rows, errors.Join(err, n.stop())
			}
		}
		if err := n.stop(); err != nil {
			return rows, err
		}
	}
	for _, g := range []struct {
		name    string
		measure func() ([]row, error)
	}{
		{"cluster", func() ([]row, error) { return measureCluster(ctx, root) }},
		{"rfs", func() ([]row, error) { return measureRFS(ctx, root, runs) }},
		{"kvm", func() ([]row, error) { return measureKVM(ctx, root) }},
	} {
		if !want[g.name] {
			continue
		}
		more, err := g.measure()
		rows = append(rows, more...)
		if err != nil {
			return rows, err
		}
	}
	return rows, nil
}

// corpusDir is $SAFEKIT_CORPUS, or the compat corpus next to the repository.
func corpusDir(root string) string {
	if dir := os.Getenv("SAFEKIT_CORPUS"); dir != "" {
		return dir
	}
	return filepath.Join(root, "..", "shared", "compat-corpus")
}

func printReport(w io.Writer, runs int, rows []row) {
	fmt.Fprintf(w, "benchreport: median of %d runs each; %s, %d CPUs\n\n", runs, goruntime.Version(), goruntime.NumCPU())
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "measurement\tresult\ttarget\tverdict")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.name, r.result, r.target, r.verdict)
	}
	tw.Flush()
	for _, r := range rows {
		if r.note != "" {
			fmt.Fprintf(w, "\nnote: %s", r.note)
		}
	}
	fmt.Fprintln(w)
}

// timePerOp calls op for at least budget (and at least once) and returns
// the mean duration of a call.
func timePerOp(ctx context.Context, budget time.Duration, op func() error) (time.Duration, error) {
	n := 0
	start := time.Now()
	for {
		if err := op(); err != nil {
			return 0, err
		}
		n++
		if elapsed := time.Since(start); elapsed >= budget {
			return elapsed / time.Duration(n), nil
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
}

// medianPerOp warms op up with one call, then returns the median of runs
// timePerOp figures.
func medianPerOp(ctx context.Context, runs int, budget time.Duration, op func() error) (time.Duration, error) {
	if err := op(); err != nil {
		return 0, err
	}
	times := make([]time.Duration, runs)
	for i := range times {
		d, err := timePerOp(ctx, budget, op)
		if err != nil {
			return 0, err
		}
		times[i] = d
	}
	return median(times), nil
}

// median of a non-empty list; the upper middle one for an even length.
func median[T cmp.Ordered](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
