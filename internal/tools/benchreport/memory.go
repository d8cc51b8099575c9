package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// memoryTarget is the most that safekitd and its module processes may take
// together, counted in PSS.
const memoryTarget = 100 << 20

// memoryModules is how many light modules run while memory is sampled.
const memoryModules = 25

// sampleInterval separates two memory samples.
const sampleInterval = 200 * time.Millisecond

// measureMemory starts light modules up to b25 (ids 1 to 25; b1 runs
// already) and sums the resident memory of safekitd and its module
// processes, in RSS and in PSS. The verdict is on PSS: RSS counts the pages
// the processes share (the binary's text) once in each of them.
func measureMemory(ctx context.Context, n *node, runs int) ([]row, error) {
	for id := 2; id <= memoryModules; id++ {
		if err := n.addLightModule(ctx, fmt.Sprintf("b%d", id), id); err != nil {
			return nil, fmt.Errorf("memory: %w", err)
		}
	}
	var rss, pss []int64
	for i := range runs {
		if i > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(sampleInterval):
			}
		}
		r, p, err := sampleMemory(n)
		if err != nil {
			return nil, fmt.Errorf("memory: %w", err)
		}
		rss, pss = append(rss, r), append(pss, p)
	}
	return []row{{
		name:    fmt.Sprintf("memory, safekitd + %d modules", memoryModules),
		result:  fmt.Sprintf("PSS %s (RSS %s)", mib(median(pss)), mib(median(rss))),
		target:  fmt.Sprintf("PSS < %d MiB", memoryTarget>>20),
		verdict: verdict(median(pss) < memoryTarget),
		note: fmt.Sprintf("memory: safekitd and its %d module processes, sampled after the round trips above; "+
			"the verdict is on PSS, which divides shared pages between the processes, where RSS counts them in each", memoryModules),
	}}, nil
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// sampleMemory sums VmRSS and PSS over safekitd and its modules b1 to b25,
// checking that each of them runs exactly once.
func sampleMemory(n *node) (rss, pss int64, err error) {
	procs, err := nodeProcs(n.roots.SAFEVAR)
	if err != nil {
		return 0, 0, err
	}
	var got, want []string
	want = append(want, "safekitd")
	for id := 1; id <= memoryModules; id++ {
		want = append(want, fmt.Sprintf("b%d", id))
	}
	for _, p := range procs {
		if p.module == "" && p.pid != n.daemon.Process.Pid {
			return 0, 0, fmt.Errorf("process %d has the command line and SAFEVAR of the scratch safekitd, which is process %d", p.pid, n.daemon.Process.Pid)
		}
		got = append(got, cmp.Or(p.module, "safekitd"))
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
		if err != nil {
			return 0, 0, err
		}
		rollup, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", p.pid))
		if err != nil {
			return 0, 0, err
		}
		r, err := kbField(status, "VmRSS")
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status: %w", p.pid, err)
		}
		s, err := kbField(rollup, "Pss")
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/smaps_rollup: %w", p.pid, err)
		}
		rss, pss = rss+r, pss+s
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return 0, 0, fmt.Errorf("the scratch node runs %v; want %v", got, want)
	}
	return rss, pss, nil
}

// kbField reads a "Name:   1234 kB" line of a /proc file and returns the
// value in bytes.
func kbField(data []byte, name string) (int64, error) {
	for line := range bytes.Lines(data) {
		rest, ok := bytes.CutPrefix(line, []byte(name+":"))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("%s: unexpected %q", name, bytes.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no %s line", name)
}

// nodeProc is a process of a node: safekitd (module "") or the process of
// one module.
type nodeProc struct {
	pid    int
	module string
}

// nodeProcs finds the processes of the node whose SAFEVAR is safevar by
// their command line (safekitd, or safekitd module --name AM) and their
// environment. Zombies have neither and are left out.
func nodeProcs(safevar string) ([]nodeProc, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var out []nodeProc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// A process may end at any moment: unreadable files mean it is gone.
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
		if filepath.Base(args[0]) != "safekitd" {
			continue
		}
		environ, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if !slices.Contains(strings.Split(string(environ), "\x00"), "SAFEVAR="+safevar) {
			continue
		}
		p := nodeProc{pid: pid}
		if len(args) >= 4 && args[1] == "module" && args[2] == "--name" {
			p.module = args[3]
		}
		out = append(out, p)
	}
	return out, nil
}
