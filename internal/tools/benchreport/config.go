package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/safekit-oss/safekit/safe"
	"github.com/safekit-oss/safekit/safe/archive"
)

// configTarget is the most that parsing and validating one module's
// userconfig.xml may take.
const configTarget = 2 * time.Millisecond

// configBudget is how long each module is parsed again and again in one run.
const configBudget = 20 * time.Millisecond

// benchClusterXML is the cluster the corpus modules are checked against:
// lans default and private, nodes node1 and node2 (as safe's tests).
const benchClusterXML = `<cluster>
 <lans>
  <lan name="default"><node name="node1" addr="192.168.1.10"/><node name="node2" addr="192.168.1.20"/></lan>
  <lan name="private"><node name="node1" addr="10.0.0.10"/><node name="node2" addr="10.0.0.20"/></lan>
 </lans>
</cluster>`

// corpusModule is the input of one timed check: what the archive holds,
// read once before timing.
type corpusModule struct {
	key     string // linux/kvm
	conf    []byte
	scripts []string
}

// measureConfig times safe.ParseUserconfig on every module of the corpus.
// It reports the median module and the slowest one; the target holds for
// each module, so the verdict follows the slowest.
func measureConfig(ctx context.Context, corpus string, runs int) (row, error) {
	mods, err := readCorpus(corpus)
	if err != nil {
		return row{}, err
	}
	cl, diags := safe.ParseCluster([]byte(benchClusterXML), "cluster.xml")
	if diags.HasErrors() {
		return row{}, fmt.Errorf("config: the benchmark cluster.xml: %w", diags.Err())
	}
	perRun := make([][]time.Duration, len(mods))
	// Modules take turns within a run, so that a noisy moment of the
	// machine spreads over all of them.
	for range runs {
		for i, m := range mods {
			d, err := timePerOp(ctx, configBudget, func() error {
				safe.ParseUserconfig(m.conf, safe.Options{Cluster: cl, Scripts: m.scripts})
				return nil
			})
			if err != nil {
				return row{}, fmt.Errorf("config: %w", err)
			}
			perRun[i] = append(perRun[i], d)
		}
	}
	perModule := make([]time.Duration, len(mods))
	slowest := 0
	for i := range mods {
		perModule[i] = median(perRun[i])
		if perModule[i] > perModule[slowest] {
			slowest = i
		}
	}
	return row{
		name: "config parse+validate",
		result: fmt.Sprintf("median %s/module (slowest %s %s; %d modules)",
			ms(median(perModule)), mods[slowest].key, ms(perModule[slowest]), len(mods)),
		target:  fmt.Sprintf("< %g ms each", float64(configTarget)/float64(time.Millisecond)),
		verdict: verdict(perModule[slowest] < configTarget),
		note:    "config: safe.ParseUserconfig of each corpus module as shipped; the target holds for each module, so the verdict follows the slowest",
	}, nil
}

// readCorpus reads conf/userconfig.xml and the names under bin/ of every
// <corpus>/modules/{linux,windows}/*.safe.
func readCorpus(corpus string) ([]corpusModule, error) {
	files, err := filepath.Glob(filepath.Join(corpus, "modules", "*", "*.safe"))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("config: no modules/*/*.safe in the compat corpus %s (set SAFEKIT_CORPUS)", corpus)
	}
	var mods []corpusModule
	for _, f := range files {
		a, err := archive.ReadFile(f, archive.Limits{})
		if err != nil {
			return nil, fmt.Errorf("config: %s: %w", f, err)
		}
		m := corpusModule{
			key:  filepath.Base(filepath.Dir(f)) + "/" + strings.TrimSuffix(filepath.Base(f), ".safe"),
			conf: a.Userconfig(),
		}
		if m.conf == nil {
			return nil, fmt.Errorf("config: %s has no conf/userconfig.xml", f)
		}
		for _, af := range a.Files {
			if name, ok := strings.CutPrefix(af.Name, "bin/"); ok && !af.Mode.IsDir() && !strings.Contains(name, "/") {
				m.scripts = append(m.scripts, name)
			}
		}
		mods = append(mods, m)
	}
	return mods, nil
}
