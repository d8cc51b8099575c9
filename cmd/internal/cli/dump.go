package cli

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/safekit-oss/safekit/modules"
	"github.com/safekit-oss/safekit/modules/clusterconf"
	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/runtime/cmdlog"
	"github.com/safekit-oss/safekit/runtime/daemon"
	"github.com/safekit-oss/safekit/runtime/modlog"
	"github.com/safekit-oss/safekit/runtime/module"
	"github.com/safekit-oss/safekit/runtime/webauth"
)

func init() {
	register(&command{
		name:  "dump",
		usage: "dump -m AM",
		help:  "write the state of AM and of this node (module log, resources, command log, script logs, processes, system) in SAFEVAR/snapshot/modules/AM/dump_<date>",
		flags: map[string]bool{"-m": true},
		run:   runDump,
	})
}

// A dump (User's Guide §7.18.2) is a directory
// SAFEVAR/snapshot/modules/AM/dump_YYYY_MM_DD_hh_mm_ss:
//
//	log.txt, logverbose.txt   the module log, main messages and verbose
//	state.json                the module state with its resources
//	commandlog.txt            the command log of the node
//	level.txt                 the version of safekit
//	heartplug                 the node: host, OS, kernel, disks, network, modules
//	healthcheck.txt           checks of the node, [OK] [WARN] [ERROR]
//	ps.txt                    the processes
//	last.txt, systemevt.txt   logins and reboots; the module's messages of the system journal
//	csv/                      logverbose.csv, resource.csv, commandlog.csv, modules.csv
//	userlog/                  the script logs
//	var/                      SAFEVAR/cluster/cluster.xml (not the key), the module's state record
//	web/                      httpd.conf and group.conf (no password hash)
//
// What cannot be collected (safekitd down, a command missing) is said in
// errors.txt; the rest is written anyway.

// dumpTime is the date in the names of dump and configuration directories.
const dumpTime = "2006_01_02_15_04_05"

// snapshotKeep is how many dumps (and configurations) a snapshot holds and
// SAFEVAR/snapshot/modules/AM keeps.
const snapshotKeep = 3

// dumpCmdTimeout bounds each system command of a dump.
const dumpCmdTimeout = 10 * time.Second

// snapshotDir is SAFEVAR/snapshot/modules/AM.
func snapshotDir(r layout.Roots, name string) string {
	return filepath.Join(r.SAFEVAR, "snapshot", "modules", name)
}

func runDump(e *Env, a *args) int {
	name, err := e.module(a)
	if err != nil {
		return e.usage(commands["dump"], "%v", err)
	}
	done := e.logCommand(name, a.raw)
	dir, err := e.dump(name)
	if err != nil {
		done(ExitFailure)
		return e.fail(err)
	}
	done(ExitOK)
	e.printf("Dump of module %s in %s\n", name, dir)
	return ExitOK
}

// dumper writes one dump.
type dumper struct {
	e        *Env
	dir      string
	mod      layout.Module
	problems []string
}

func (d *dumper) problem(format string, args ...any) {
	d.problems = append(d.problems, fmt.Sprintf(format, args...))
}

// write writes a file of the dump; a failure is a problem of the dump.
func (d *dumper) write(rel string, data []byte) {
	p := filepath.Join(d.dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		d.problem("%s: %v", rel, err)
		return
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		d.problem("%s: %v", rel, err)
	}
}

// copy copies a file into the dump when it exists.
func (d *dumper) copy(src, rel string) {
	data, err := os.ReadFile(src)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		d.problem("%s: %v", src, err)
		return
	}
	d.write(rel, data)
}

func (d *dumper) csv(rel string, rows [][]string) {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	_ = w.WriteAll(rows)
	d.write(rel, b.Bytes())
}

// dump writes a new dump of module name and returns its directory.
func (e *Env) dump(name string) (string, error) {
	if err := modules.CheckName(name); err != nil {
		return "", err
	}
	mod := e.Roots.Module(name)
	if !mod.Installed() && !mod.Configured() {
		return "", fmt.Errorf("%w: %s (see safekit module list)", modules.ErrNotInstalled, name)
	}
	base := snapshotDir(e.Roots, name)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", err
	}
	now := time.Now()
	dir := filepath.Join(base, "dump_"+now.Format(dumpTime))
	for n := 2; ; n++ {
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) {
			return "", err
		}
		dir = filepath.Join(base, fmt.Sprintf("dump_%s_%d", now.Format(dumpTime), n))
	}
	d := &dumper{e: e, dir: dir, mod: mod}
	d.moduleLog()
	d.state()
	d.commandLog()
	d.node()
	d.files()
	d.system()
	if len(d.problems) > 0 {
		d.write("errors.txt", []byte(strings.Join(d.problems, "\n")+"\n"))
		for _, p := range d.problems {
			fmt.Fprintf(e.Stderr, "warning: dump: %s\n", p)
		}
	}
	pruneDirs(base, "dump_", snapshotKeep)
	return dir, nil
}

// daemonGet reads the local API of safekitd.
func (d *dumper) daemonGet(path string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), dumpRequestTimeout)
	defer cancel()
	return d.e.daemon().do(ctx, http.MethodGet, path, nil, out)
}

// dumpRequestTimeout bounds a request of the dump to safekitd.
const dumpRequestTimeout = 30 * time.Second

// readModuleLog reads the module log through safekitd, or from its file
// when safekitd is down (its module processes, which hold the file, are
// down with it).
func (d *dumper) readModuleLog(verbose bool) ([]modlog.Entry, error) {
	var entries []modlog.Entry
	v := map[bool]string{false: "0", true: "1"}[verbose]
	err := d.daemonGet(fmt.Sprintf("/v1/modules/%s/log?n=%d&verbose=%s", d.mod.Name, modlog.DefaultMaxEntries, v), &entries)
	if !errors.Is(err, errDaemonDown) {
		return entries, err
	}
	s, err := modlog.Open(module.LogPath(d.mod), modlog.Options{})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.Last(modlog.DefaultMaxEntries, verbose)
}

func (d *dumper) moduleLog() {
	for _, verbose := range []bool{false, true} {
		entries, err := d.readModuleLog(verbose)
		file := map[bool]string{false: "log.txt", true: "logverbose.txt"}[verbose]
		if err != nil {
			d.problem("%s: module log: %v", file, err)
			continue
		}
		var b strings.Builder
		for _, en := range entries {
			b.WriteString(en.String() + "\n")
		}
		d.write(file, []byte(b.String()))
		if verbose {
			rows := [][]string{{"seq", "date", "origin", "level", "message"}}
			for _, en := range entries {
				rows = append(rows, []string{strconv.FormatUint(en.Seq, 10), en.Time.Format(time.RFC3339Nano), en.Origin, en.Level, en.Msg})
			}
			d.csv("csv/logverbose.csv", rows)
		}
	}
}

func (d *dumper) state() {
	var snap module.Snapshot
	if err := d.daemonGet("/v1/modules/"+d.mod.Name+"/state", &snap); err != nil {
		d.problem("state.json: %v", err)
	} else {
		data, _ := json.MarshalIndent(snap, "", "  ")
		d.write("state.json", append(data, '\n'))
		rows := [][]string{{"resource", "value"}}
		for _, r := range snap.Resources {
			rows = append(rows, []string{r[0], r[1]})
		}
		d.csv("csv/resource.csv", rows)
	}
	d.copy(filepath.Join(d.mod.UserVar(), "state.json"), "var/modules/"+d.mod.Name+"/state.json")
}

func (d *dumper) commandLog() {
	var lines []string
	err := d.daemonGet("/v1/cmdlog?n="+strconv.Itoa(cmdlog.MaxRecords), &lines)
	if errors.Is(err, errDaemonDown) {
		lines, err = readCmdlog(d.e.Roots)
	}
	if err != nil {
		d.problem("commandlog.txt: %v", err)
		return
	}
	d.write("commandlog.txt", []byte(strings.Join(lines, "\n")+"\n"))
	rows := [][]string{{"date", "kind", "module", "id", "op", "text"}}
	for _, l := range lines {
		f := strings.SplitN(strings.TrimPrefix(l, "| "), " | ", 6)
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		rows = append(rows, f)
	}
	d.csv("csv/commandlog.csv", rows)
}

// readCmdlog reads the command log file of a node whose daemon is down.
func readCmdlog(r layout.Roots) ([]string, error) {
	s, err := cmdlog.Open(filepath.Join(r.SAFEVAR, "cmdlog.db"))
	if err != nil {
		return nil, err
	}
	defer s.Close()
	recs, err := s.Last(cmdlog.MaxRecords)
	if err != nil {
		return nil, err
	}
	lines := make([]string, len(recs))
	for i, rec := range recs {
		lines[i] = rec.String()
	}
	return lines, nil
}

// node writes level.txt, csv/modules.csv and heartplug.
func (d *dumper) node() {
	var l daemon.Level
	if err := d.daemonGet("/v1/level", &l); err != nil {
		d.problem("level.txt: %v", err)
	} else {
		d.write("level.txt", []byte(fmt.Sprintf("Host: %s\nOS: %s\nSafeKit: %s (safekit-oss)\nLicense: %s\n", l.Host, l.OS, l.Version, l.License)))
	}
	var mods []daemon.ModuleInfo
	if err := d.daemonGet("/v1/modules", &mods); err != nil {
		d.problem("csv/modules.csv: %v", err)
	}
	rows := [][]string{{"name", "id", "mode", "configured", "running", "state", "ready"}}
	for _, m := range mods {
		rows = append(rows, []string{m.Name, strconv.Itoa(m.ID), m.Mode, strconv.FormatBool(m.Configured), strconv.FormatBool(m.Running), m.State, m.Ready})
	}
	d.csv("csv/modules.csv", rows)

	var b strings.Builder
	section := func(title, body string) { fmt.Fprintf(&b, "==== %s\n%s\n", title, strings.TrimRight(body, "\n")+"\n") }
	host, _ := os.Hostname()
	section("date", time.Now().Format(time.RFC3339))
	section("host", host)
	section("modules", tableOf(rows))
	var node daemon.Node
	if err := d.daemonGet("/v1/node", &node); err == nil {
		section("cluster node", fmt.Sprintf("name %s\naddresses %v\ncluster signature %s\n%s", node.Name, node.Addresses, node.ClusterSignature, node.Problem))
	}
	for _, c := range [][]string{
		{"uname", "-a"}, {"cat", "/etc/os-release"}, {"uptime"}, {"df", "-h", d.e.Roots.SAFE, d.e.Roots.SAFEVAR},
		{"cat", "/proc/meminfo"}, {"ip", "addr"}, {"ip", "route"},
	} {
		section(strings.Join(c, " "), runQuiet(c...))
	}
	d.write("heartplug", []byte(b.String()))
}

// tableOf renders csv rows as text.
func tableOf(rows [][]string) string {
	var b strings.Builder
	for _, r := range rows {
		b.WriteString(strings.Join(r, "\t") + "\n")
	}
	return b.String()
}

// files copies the userlogs, cluster.xml and the web service configuration.
func (d *dumper) files() {
	entries, err := os.ReadDir(d.mod.UserVar())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		d.problem("userlog: %v", err)
	}
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), "userlog_") && strings.HasSuffix(en.Name(), ".ulog") {
			d.copy(filepath.Join(d.mod.UserVar(), en.Name()), filepath.Join("userlog", en.Name()))
		}
	}
	d.copy(d.e.Roots.ClusterXML(), "var/cluster/cluster.xml")
	if info, err := clusterconf.ReadInfo(d.e.Roots); err == nil && info.Configured {
		d.write("var/cluster/confinfo.txt", []byte(fmt.Sprintf("signature %s\ndate %s\nlocked %v\nkeyed %v\n", info.Signature, info.Date.Format(time.RFC3339), info.Locked, info.Keyed)))
	}
	d.copy(webauth.HTTPDFile(d.e.Roots), "web/httpd.conf")
	d.copy(webauth.GroupFile(d.e.Roots), "web/group.conf")
}

// system writes the processes, the healthcheck and the system logs.
func (d *dumper) system() {
	d.write("ps.txt", []byte(runQuiet("ps", "-eo", "pid,ppid,pgid,user,lstart,stat,args", "--forest")))
	d.write("last.txt", []byte(runQuiet("last", "-x", "-n", "50")))
	d.write("systemevt.txt", []byte(runQuiet("journalctl", "--no-pager", "-t", "safekit", "-n", "2000")))
	d.write("healthcheck.txt", []byte(d.healthcheck()))
}

// healthcheck checks what a node needs, as SafeKit's healthcheck.sh
// reports it.
func (d *dumper) healthcheck() string {
	var b strings.Builder
	check := func(test, level, msg string) { fmt.Fprintf(&b, "[TEST] %s\n[%s] %s\n\n", test, level, msg) }
	var l daemon.Level
	if err := d.daemonGet("/v1/level", &l); err != nil {
		check("safekitd", "ERROR", err.Error())
	} else {
		check("safekitd", "OK", "running, version "+l.Version)
	}
	if _, err := webauth.ReadHTTPConf(d.e.Roots); err != nil {
		check("web service configuration", "ERROR", err.Error())
	} else {
		check("web service configuration", "OK", webauth.HTTPDFile(d.e.Roots))
	}
	switch cl, _, err := modules.LoadCluster(d.e.Roots); {
	case err != nil:
		check("cluster configuration", "ERROR", err.Error())
	case cl == nil:
		check("cluster configuration", "WARN", "no cluster.xml: safekit cluster config, then safekit -H \"*\" -G")
	default:
		check("cluster configuration", "OK", "nodes "+strings.Join(cl.NodeNames(), ", "))
	}
	active, current, err := modules.NewManager(d.e.Roots, nil).ConfInfo(d.mod.Name)
	switch {
	case err != nil:
		check("module "+d.mod.Name, "ERROR", err.Error())
	case active.Hash == "":
		check("module "+d.mod.Name, "WARN", "not configured: safekit config -m "+d.mod.Name)
	case active.Hash != current.Hash:
		check("module "+d.mod.Name, "WARN", "the installed configuration is not the active one: apply it with safekit config -m "+d.mod.Name)
	default:
		check("module "+d.mod.Name, "OK", "configured, signature "+active.Hash)
	}
	for _, dir := range []string{d.e.Roots.SAFE, d.e.Roots.SAFEVAR} {
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil {
			check("disk space of "+dir, "ERROR", err.Error())
			continue
		}
		free := float64(st.Bavail) / float64(st.Blocks) * 100
		level := "OK"
		if free < 10 {
			level = "WARN"
		}
		check("disk space of "+dir, level, fmt.Sprintf("%.0f%% free", free))
	}
	check("platform", "OK", runtime.GOOS+"/"+runtime.GOARCH)
	return b.String()
}

// runQuiet runs a system command for a dump and returns its output, or
// why there is none.
func runQuiet(args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), dumpCmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return string(out) + fmt.Sprintf("(%s: %v)\n", strings.Join(args, " "), err)
	}
	return string(out)
}

// pruneDirs keeps the keep newest entries of dir whose names start with
// prefix (their names sort by date).
func pruneDirs(dir, prefix string, keep int) {
	names := datedEntries(dir, prefix)
	for len(names) > keep {
		_ = os.RemoveAll(filepath.Join(dir, names[0]))
		names = names[1:]
	}
}

// datedEntries lists the entries of dir whose names start with prefix,
// oldest first.
func datedEntries(dir, prefix string) []string {
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, en := range entries {
		if en.IsDir() && strings.HasPrefix(en.Name(), prefix) {
			names = append(names, en.Name())
		}
	}
	sort.Slice(names, func(i, j int) bool { return dumpOrder(names[i]) < dumpOrder(names[j]) })
	return names
}

// dumpOrder sorts dump_<date> before dump_<date>_2, the second dump of
// the same second.
func dumpOrder(name string) string {
	parts := strings.Split(name, "_")
	n := 1
	if len(parts) == 8 {
		n, _ = strconv.Atoi(parts[7])
		parts = parts[:7]
	}
	return fmt.Sprintf("%s %04d", strings.Join(parts, "_"), n)
}
