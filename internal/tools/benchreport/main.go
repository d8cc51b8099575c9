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
// replication ones (rfs.go), which also need /dev/fuse, fio and rsync.
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

func main() {
	runs := flag.Int("runs", 5, "runs of each measurement; the report shows their median")
	flag.Parse()
	*runs = max(*runs, 1)
	// A ^C ends the measurements early but still stops the scratch node.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	rows, err := run(ctx, *runs)
	stop()
	if len(rows) > 0 {
		printReport(os.Stdout, *runs, rows)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

// run takes every measurement and returns the rows measured so far with
// the first error.
func run(ctx context.Context, runs int) (rows []row, err error) {
	root := testenv.RepoRoot()
	r, err := measureConfig(ctx, corpusDir(root), runs)
	if err != nil {
		return nil, err
	}
	rows = append(rows, r)
	n, err := startNode(ctx, filepath.Join(root, "bin"))
	if err != nil {
		return rows, err
	}
	defer func() { err = errors.Join(err, n.stop()) }()
	for _, m := range []func(context.Context, *node, int) ([]row, error){measureState, measureLog, measureMemory, measureConsole} {
		more, err := m(ctx, n, runs)
		rows = append(rows, more...)
		if err != nil {
			return rows, err
		}
	}
	more, err := measureCluster(ctx, root)
	rows = append(rows, more...)
	if err != nil {
		return rows, err
	}
	more, err = measureRFS(ctx, root, runs)
	return append(rows, more...), err
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
