package console

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gorilla/mux"

	"github.com/safekit-oss/safekit/modules"
	"github.com/safekit-oss/safekit/modules/clusterconf"
	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/runtime/modlog"
	"github.com/safekit-oss/safekit/runtime/module"
	"github.com/safekit-oss/safekit/safe"
)

// Node is this node in cluster.xml (GET /api/v1.0/node).
type Node struct {
	// Name is "" when the node is not found in cluster.xml: Problem says
	// why.
	Name             string            `json:"name"`
	Addresses        map[string]string `json:"addresses"`
	ClusterSignature string            `json:"cluster_signature"`
	Problem          string            `json:"problem,omitempty"`
}

// Level is GET /api/v1.0/level.
type Level struct {
	Node    string `json:"node"`
	Host    string `json:"host"`
	OS      string `json:"os"`
	Version string `json:"version"`
	License string `json:"license"`
}

func (s *Server) handleLevel(w http.ResponseWriter, r *http.Request) {
	var l Level
	if err := s.localGet(r.Context(), "/v1/level", &l); err != nil {
		writeLocalErr(w, err)
		return
	}
	l.Node = s.selfName(r.Context())
	writeJSON(w, http.StatusOK, l)
}

func (s *Server) handleNode(w http.ResponseWriter, r *http.Request) {
	s.relayLocal(w, r, "/v1/node")
}

// ClusterInfo is GET /api/v1.0/cluster.
type ClusterInfo struct {
	// Configured: there is a cluster.xml.
	Configured bool `json:"configured"`
	// XML is the text of SAFEVAR/cluster/cluster.xml.
	XML string `json:"xml"`
	// Cluster is the typed configuration, nil when the file is unusable.
	Cluster     *safe.Cluster `json:"cluster"`
	Diagnostics []Diagnostic  `json:"diagnostics"`
	// Signature and Date are those of `safekit cluster confinfo`: equal
	// signatures on every node mean the same configuration.
	Signature string     `json:"signature"`
	Date      *time.Time `json:"date"`
	Locked    bool       `json:"locked"`
	// Keyed: the cluster traffic is encrypted with a cluster key.
	Keyed bool `json:"keyed"`
	// Self is this node.
	Self  string    `json:"self"`
	Nodes []nodeRef `json:"nodes"`
}

func (s *Server) handleCluster(w http.ResponseWriter, r *http.Request) {
	info, err := clusterconf.ReadInfo(s.roots())
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	out := ClusterInfo{Configured: info.Configured, Signature: info.Signature, Locked: info.Locked, Keyed: info.Keyed,
		Self: s.selfName(r.Context()), Diagnostics: []Diagnostic{}, Nodes: []nodeRef{}}
	if info.Configured {
		out.Date = &info.Date
		data, err := os.ReadFile(s.roots().ClusterXML())
		if err != nil {
			writeErr(w, http.StatusInternalServerError, err)
			return
		}
		out.XML = string(data)
		cl, diags := safe.ParseCluster(data, "cluster.xml")
		out.Diagnostics = diagnosticsOf(diags, "")
		if !diags.HasErrors() {
			out.Cluster = cl
			if nodes, err := s.clusterNodes(); err == nil && nodes != nil {
				out.Nodes = nodes
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// ModuleRow is one module of GET /api/v1.0/modules.
type ModuleRow struct {
	Name       string `json:"name"`
	ID         int    `json:"id"`
	Mode       string `json:"mode"`
	Configured bool   `json:"configured"`
	// Running: the module has a process (every configured module has one).
	Running bool   `json:"running"`
	State   string `json:"state"`
	Ready   string `json:"ready"`
	// Remote is the peer of a mirror module as its heartbeats see it.
	Remote *module.Remote `json:"remote"`
	// Signature and Date of the active configuration (zero when not
	// configured); the same on every node when the configuration is.
	Signature string    `json:"signature"`
	Date      time.Time `json:"date"`
	// Saved is the date of the installed configuration (SAFE/modules/AM:
	// conf/userconfig.xml and bin/, its newest file) when it differs from
	// the active one: saved, not applied yet. Absent when they are the
	// same.
	Saved *time.Time `json:"saved,omitempty"`
}

// Modules is GET /api/v1.0/modules.
type Modules struct {
	Node    string      `json:"node"`
	Modules []ModuleRow `json:"modules"`
}

func (s *Server) handleModules(w http.ResponseWriter, r *http.Request) {
	mgr := modules.NewManager(s.roots(), nil)
	infos, err := mgr.List()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	out := Modules{Node: s.selfName(r.Context()), Modules: []ModuleRow{}}
	for _, i := range infos {
		row := ModuleRow{Name: i.Name, ID: i.ID, Mode: string(i.Mode), Configured: i.Configured, State: "STOP", Ready: "NotReady"}
		if active, current, err := mgr.ConfInfo(i.Name); err == nil {
			if active.Hash != "" {
				row.Signature, row.Date = active.Hash, active.Date
			}
			if current.Hash != "" && current.Hash != active.Hash {
				row.Saved = &current.Date
			}
		}
		var snap module.Snapshot
		if i.Configured && s.localGet(r.Context(), "/v1/modules/"+i.Name+"/state", &snap) == nil {
			row.Running, row.State, row.Ready, row.Remote = true, string(snap.State), string(snap.Ready), snap.Remote
		}
		out.Modules = append(out.Modules, row)
	}
	writeJSON(w, http.StatusOK, out)
}

// moduleName is the {AM} of a request, refused (400) when it cannot be a
// module name.
func moduleName(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := mux.Vars(r)["AM"]
	if err := modules.CheckName(name); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return "", false
	}
	return name, true
}

// installedModule is the {AM} of a request, refused (404) when it is not
// installed.
func (s *Server) installedModule(w http.ResponseWriter, r *http.Request) (layout.Module, bool) {
	name, ok := moduleName(w, r)
	if !ok {
		return layout.Module{}, false
	}
	mod := s.roots().Module(name)
	if !mod.Installed() {
		writeErr(w, http.StatusNotFound, fmt.Errorf("module %s is not installed on this node", name))
		return mod, false
	}
	return mod, true
}

func (s *Server) handleState(w http.ResponseWriter, r *http.Request) {
	if name, ok := moduleName(w, r); ok {
		s.relayLocal(w, r, "/v1/modules/"+name+"/state")
	}
}

// CheckState is the state of a module as a <module> checker polls it
// (runtime/checkers.ModuleState reads it).
type CheckState struct {
	State string `json:"state"`
	Ready string `json:"ready"`
	// Started is when the module's application last started (after
	// start_prim in a mirror, start_both otherwise): a checker that sees
	// it change knows the module restarted, even between two polls.
	Started time.Time `json:"started,omitzero"`
}

// handleCheckState answers the state of an installed module, STOP
// NotReady when it has no process.
func (s *Server) handleCheckState(w http.ResponseWriter, r *http.Request) {
	mod, ok := s.installedModule(w, r)
	if !ok {
		return
	}
	st := CheckState{State: "STOP", Ready: "NotReady"}
	var snap module.Snapshot
	if err := s.localGet(r.Context(), "/v1/modules/"+mod.Name+"/state", &snap); err == nil {
		st = CheckState{State: string(snap.State), Ready: string(snap.Ready), Started: snap.Started}
	}
	writeJSON(w, http.StatusOK, st)
}

// handleReady is the health probe of cloud load balancers (User's Guide
// §13.6.3): OK on the node where the application runs.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	name, ok := moduleName(w, r)
	if !ok {
		return
	}
	var snap module.Snapshot
	err := s.localGet(r.Context(), "/v1/modules/"+name+"/state", &snap)
	if err == nil && snap.Ready == "Ready" && (snap.State == "PRIM" || snap.State == "ALONE" || snap.State == "UP") {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "OK")
		return
	}
	http.NotFound(w, r)
}

// Bounds of GET /log.
const (
	defaultLogCount = 300
	// maxLogAfter is the most messages one GET /log?after= returns.
	maxLogAfter = 100000
)

func (s *Server) handleLog(w http.ResponseWriter, r *http.Request) {
	name, ok := moduleName(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	n := defaultLogCount
	if v := q.Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 0 {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("n needs a number of messages, not %q", v))
			return
		}
	}
	verbose := "0"
	if q.Get("verbose") == "1" {
		verbose = "1"
	}
	base := "/v1/modules/" + name + "/log"
	if q.Get("after") == "" {
		s.relayLocal(w, r, fmt.Sprintf("%s?n=%d&verbose=%s", base, n, verbose))
		return
	}
	after, err := strconv.ParseUint(q.Get("after"), 10, 64)
	if err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("after needs the seq of a message, not %q", q.Get("after")))
		return
	}
	limit := maxLogAfter
	if q.Get("n") != "" {
		limit = n
	}
	out, err := s.logAfter(r.Context(), name, after, verbose == "1", limit)
	if err != nil {
		writeLocalErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// wholeLog is the count of messages that GET log.txt asks for: more than a
// module log keeps (modlog.DefaultMaxEntries, plus what waits for pruning).
const wholeLog = 1 << 20

// handleLogText streams the whole module log as text, one line per message
// as `safekit log` and `safekit logview` print them (modlog.Entry.String),
// oldest first, for a download. The messages are decoded and written one by
// one: a log of a hundred thousand lines is never held here as text.
func (s *Server) handleLogText(w http.ResponseWriter, r *http.Request) {
	name, ok := moduleName(w, r)
	if !ok {
		return
	}
	verbose, kind := "0", ""
	if r.URL.Query().Get("verbose") == "1" {
		verbose, kind = "1", "verbose_"
	}
	resp, err := s.local(r.Context(), http.MethodGet, fmt.Sprintf("/v1/modules/%s/log?n=%d&verbose=%s", name, wholeLog, verbose))
	if err != nil {
		writeLocalErr(w, err)
		return
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		writeErr(w, http.StatusBadGateway, fmt.Errorf("the log of module %s: safekitd answered no list of messages", name))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", fmt.Sprintf("%s_%s_%slog.txt", name, s.selfLabel(r.Context()), kind)))
	out := bufio.NewWriterSize(w, 64<<10)
	for dec.More() {
		var e modlog.Entry
		if err := dec.Decode(&e); err != nil {
			// The status is sent: the download ends short, and says why.
			fmt.Fprintf(out, "(the log could not be read further: %v)\n", err)
			break
		}
		if _, err := out.WriteString(e.String() + "\n"); err != nil {
			return
		}
	}
	_ = out.Flush()
}

// Userlog is a script log file, SAFEVAR/modules/AM/userlog_<date>T<time>_<script>.ulog.
type Userlog struct {
	Name   string `json:"name"`
	Script string `json:"script"`
	// Time the script started (in the file name, local time).
	Time time.Time `json:"time"`
	Size int64     `json:"size"`
}

// userlogTime is the date in userlog names.
const userlogTime = "2006-01-02T150405"

// parseUserlog reads a userlog file name: userlog_<date>_<script>.ulog, or
// _<script>_<n>.ulog for the n-th run in the same second.
func parseUserlog(name string) (script string, t time.Time, ok bool) {
	rest, found := strings.CutPrefix(name, "userlog_")
	if !found || !strings.HasSuffix(rest, ".ulog") || strings.ContainsAny(name, "/\\") || len(rest) < len(userlogTime)+len("_x.ulog") {
		return "", time.Time{}, false
	}
	t, err := time.ParseInLocation(userlogTime, rest[:len(userlogTime)], time.Local)
	if err != nil || rest[len(userlogTime)] != '_' {
		return "", time.Time{}, false
	}
	script = strings.TrimSuffix(rest[len(userlogTime)+1:], ".ulog")
	if i := strings.LastIndexByte(script, '_'); i > 0 {
		if n, err := strconv.Atoi(script[i+1:]); err == nil && n > 1 {
			script = script[:i]
		}
	}
	return script, t, script != ""
}

// userlogs lists the script logs of a module, newest first.
func userlogs(mod layout.Module) ([]Userlog, error) {
	entries, err := os.ReadDir(mod.UserVar())
	if errors.Is(err, fs.ErrNotExist) {
		return []Userlog{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := []Userlog{}
	for _, e := range entries {
		script, t, ok := parseUserlog(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, Userlog{Name: e.Name(), Script: script, Time: t, Size: info.Size()})
	}
	// Names sort by date, and the n-th run of a second after the first.
	sort.Slice(out, func(i, j int) bool { return runOrder(out[i].Name) > runOrder(out[j].Name) })
	return out, nil
}

// runOrder sorts userlog names by date, then run number.
func runOrder(name string) string {
	base := strings.TrimSuffix(name, ".ulog")
	n := 1
	if i := strings.LastIndexByte(base, '_'); i > 0 {
		if k, err := strconv.Atoi(base[i+1:]); err == nil && k > 1 {
			n = k
		}
	}
	return fmt.Sprintf("%s %06d", name[:min(len(name), len("userlog_")+len(userlogTime))], n)
}

func (s *Server) handleUserlogs(w http.ResponseWriter, r *http.Request) {
	mod, ok := s.installedModule(w, r)
	if !ok {
		return
	}
	out, err := userlogs(mod)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// userlogPath is the file of a userlog name, refused when the name is not
// one.
func userlogPath(mod layout.Module, name string) (string, error) {
	if _, _, ok := parseUserlog(name); !ok {
		return "", fmt.Errorf("%q is not a script log name (userlog_<date>T<time>_<script>.ulog)", name)
	}
	return filepath.Join(mod.UserVar(), name), nil
}

func (s *Server) handleUserlog(w http.ResponseWriter, r *http.Request) {
	mod, ok := s.installedModule(w, r)
	if !ok {
		return
	}
	p, err := userlogPath(mod, mux.Vars(r)["file"])
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	serveFile(w, r, p, "text/plain; charset=utf-8", "")
}

// serveFile sends a file, with Range support; attachment names the
// download ("" to show it).
func serveFile(w http.ResponseWriter, r *http.Request, path, contentType, attachment string) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		writeErr(w, http.StatusNotFound, fmt.Errorf("no file %s", filepath.Base(path)))
		return
	}
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		writeErr(w, http.StatusNotFound, fmt.Errorf("no file %s", filepath.Base(path)))
		return
	}
	w.Header().Set("Content-Type", contentType)
	if attachment != "" {
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", attachment))
	}
	http.ServeContent(w, r, "", st.ModTime(), f)
}

// Diagnostic is a problem of a configuration file, positioned.
type Diagnostic struct {
	// File is conf/userconfig.xml for the file of an installed module.
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Element string `json:"element,omitempty"`
	// Attribute is the attribute of Element the problem is about, when it
	// is about one: the field an editor points at.
	Attribute string `json:"attribute,omitempty"`
	Severity  string `json:"severity"` // error or warning
	Message   string `json:"message"`
}

// diagnosticsOf converts diagnostics; those of file are shown as
// conf/userconfig.xml.
func diagnosticsOf(ds safe.Diagnostics, file string) []Diagnostic {
	out := []Diagnostic{}
	for _, d := range ds {
		sev := "error"
		if d.Severity == safe.Warning {
			sev = "warning"
		}
		f := d.File
		if file != "" && f == file {
			f = "conf/userconfig.xml"
		}
		out = append(out, Diagnostic{File: f, Line: d.Pos.Line, Column: d.Pos.Col, Element: d.Element, Attribute: d.Attr, Severity: sev, Message: d.Msg})
	}
	return out
}

// Check is the outcome of a check: valid when there is no error.
type Check struct {
	Valid       bool         `json:"valid"`
	Diagnostics []Diagnostic `json:"diagnostics"`
	// Error is a problem that is not in the file (cluster.xml broken, file
	// missing).
	Error string `json:"error,omitempty"`
}

// checkModule runs confcheck on an installed module; u is nil when the file
// could not be checked.
func (s *Server) checkModule(mod layout.Module) (Check, *safe.Userconfig) {
	u, err := modules.NewManager(s.roots(), nil).Check(mod.Name)
	c := Check{Valid: err == nil, Diagnostics: []Diagnostic{}}
	if u != nil {
		c.Diagnostics = diagnosticsOf(u.Diags, mod.Userconfig())
	}
	var de *safe.DiagnosticsError
	if err != nil && !errors.As(err, &de) {
		c.Error = err.Error()
	}
	return c, u
}

// ModuleConfig is GET /api/v1.0/modules/AM/config.
type ModuleConfig struct {
	Module     string `json:"module"`
	Configured bool   `json:"configured"`
	// Userconfig is the text of SAFE/modules/AM/conf/userconfig.xml.
	Userconfig string `json:"userconfig"`
	// Macros are the <macro> of userconfig.xml as written.
	Macros []Macro      `json:"macros"`
	Bin    []BinFile    `json:"bin"`
	Check  Check        `json:"check"`
	Config *safe.Config `json:"config"`
}

// BinFile is a file of SAFE/modules/AM/bin.
type BinFile struct {
	Name       string `json:"name"`
	Size       int64  `json:"size"`
	Mode       string `json:"mode"`
	Executable bool   `json:"executable"`
}

func binFiles(mod layout.Module) ([]BinFile, error) {
	entries, err := os.ReadDir(mod.Bin())
	if errors.Is(err, fs.ErrNotExist) {
		return []BinFile{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := []BinFile{}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		out = append(out, BinFile{Name: e.Name(), Size: info.Size(), Mode: fmt.Sprintf("%04o", info.Mode().Perm()), Executable: info.Mode().Perm()&0o111 != 0})
	}
	return out, nil
}

func (s *Server) handleConfig(w http.ResponseWriter, r *http.Request) {
	mod, ok := s.installedModule(w, r)
	if !ok {
		return
	}
	data, err := os.ReadFile(mod.Userconfig())
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	out := ModuleConfig{Module: mod.Name, Configured: mod.Configured(), Userconfig: string(data), Macros: []Macro{}}
	if ms, err := readMacros(data); err == nil {
		out.Macros = ms
	}
	if out.Bin, err = binFiles(mod); err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	var u *safe.Userconfig
	out.Check, u = s.checkModule(mod)
	if u != nil {
		out.Config = u.Config
	}
	writeJSON(w, http.StatusOK, out)
}

// moduleFile is the {path} of a request in the installed module.
func (s *Server) moduleFile(w http.ResponseWriter, r *http.Request) (layout.Module, string, bool) {
	mod, ok := s.installedModule(w, r)
	if !ok {
		return mod, "", false
	}
	rel := mux.Vars(r)["path"]
	name := strings.TrimPrefix(rel, "bin/")
	if name == "." || name == ".." {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("%q is not a file of bin/", rel))
		return mod, "", false
	}
	return mod, filepath.Join(mod.Dir(), filepath.FromSlash(rel)), true
}

func (s *Server) handleFileGet(w http.ResponseWriter, r *http.Request) {
	_, p, ok := s.moduleFile(w, r)
	if !ok {
		return
	}
	ct := "application/octet-stream"
	if data, err := os.ReadFile(p); err == nil && utf8.Valid(data) {
		ct = "text/plain; charset=utf-8"
	}
	serveFile(w, r, p, ct, "")
}

// Signature identifies a configuration.
type Signature struct {
	Signature string     `json:"signature"`
	Date      *time.Time `json:"date"`
}

// ConfInfo is GET /api/v1.0/modules/AM/confinfo.
type ConfInfo struct {
	// Active is the applied configuration (SAFE/private/modules/AM),
	// Current the installed one (SAFE/modules/AM); empty when none.
	Active  Signature `json:"active"`
	Current Signature `json:"current"`
	// Applied: the installed configuration is the active one.
	Applied bool `json:"applied"`
}

func signatureOf(sig modules.Signature) Signature {
	if sig.Hash == "" {
		return Signature{}
	}
	d := sig.Date
	return Signature{Signature: sig.Hash, Date: &d}
}

func (s *Server) handleConfInfo(w http.ResponseWriter, r *http.Request) {
	mod, ok := s.installedModule(w, r)
	if !ok {
		return
	}
	active, current, err := modules.NewManager(s.roots(), nil).ConfInfo(mod.Name)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, ConfInfo{Active: signatureOf(active), Current: signatureOf(current), Applied: active.Hash != "" && active.Hash == current.Hash})
}

// LastConfig is a configuration kept in SAFE/modules/lastconfig.
type LastConfig struct {
	File string    `json:"file"`
	Date time.Time `json:"date"`
	Size int64     `json:"size"`
}

// lastConfigTime is the date in the names of SAFE/modules/lastconfig.
const lastConfigTime = "2006-01-02_150405"

// lastConfigs lists the kept configurations of module name, newest first.
func lastConfigs(roots layout.Roots, name string) ([]LastConfig, error) {
	entries, err := os.ReadDir(roots.LastConfig())
	if errors.Is(err, fs.ErrNotExist) {
		return []LastConfig{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := []LastConfig{}
	for _, e := range entries {
		date, found := strings.CutPrefix(e.Name(), name+"_")
		date, isSafe := strings.CutSuffix(date, ".safe")
		t, err := time.ParseInLocation(lastConfigTime, date, time.Local)
		if !found || !isSafe || err != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, LastConfig{File: e.Name(), Date: t, Size: info.Size()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Date.After(out[j].Date) })
	return out, nil
}

func (s *Server) handleLastConfig(w http.ResponseWriter, r *http.Request) {
	name, ok := moduleName(w, r)
	if !ok {
		return
	}
	out, err := lastConfigs(s.roots(), name)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// AppModule is a .safe file of SAFE/Application_Modules.
type AppModule struct {
	Name string `json:"name"`
	// Path is relative to SAFE/Application_Modules: "generic/mirror.safe",
	// what POST /modules/AM/install takes as source.
	Path string    `json:"path"`
	Size int64     `json:"size"`
	Date time.Time `json:"date"`
}

// appSections are the sections of SAFE/Application_Modules; a file
// elsewhere is listed under other.
var appSections = []string{"generic", "demo", "published", "other", "backup"}

func (s *Server) handleAppModules(w http.ResponseWriter, r *http.Request) {
	root := s.roots().ApplicationModules()
	out := map[string][]AppModule{}
	for _, sec := range appSections {
		out[sec] = []AppModule{}
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		ext := strings.ToLower(filepath.Ext(p))
		if d.IsDir() || (ext != ".safe" && ext != ".zip") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		sec, _, _ := strings.Cut(rel, "/")
		if _, known := out[sec]; !known || !strings.Contains(rel, "/") {
			sec = "other"
		}
		out[sec] = append(out[sec], AppModule{Name: d.Name(), Path: rel, Size: info.Size(), Date: info.ModTime()})
		return nil
	})
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// appModulePath resolves a path relative to SAFE/Application_Modules,
// refusing one that leaves it.
func (s *Server) appModulePath(rel string) (string, error) {
	clean := filepath.Clean("/" + filepath.FromSlash(rel))
	if rel == "" || clean == "/" || clean != "/"+filepath.FromSlash(rel) {
		return "", fmt.Errorf("%q is not a file of SAFE/Application_Modules (e.g. generic/mirror.safe)", rel)
	}
	return filepath.Join(s.roots().ApplicationModules(), clean), nil
}

func (s *Server) handleAppModule(w http.ResponseWriter, r *http.Request) {
	v := mux.Vars(r)
	p, err := s.appModulePath(v["section"] + "/" + v["file"])
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	serveFile(w, r, p, "application/zip", v["file"])
}

func (s *Server) handleDownload(w http.ResponseWriter, r *http.Request) {
	mod, ok := s.installedModule(w, r)
	if !ok {
		return
	}
	dir, err := os.MkdirTemp("", "safekit-download-")
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, mod.Name+".safe")
	if err := modules.NewManager(s.roots(), nil).Package(mod.Name, file); err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	serveFile(w, r, file, "application/zip", mod.Name+".safe")
}

// relayLocal copies the answer of the daemon's local API.
func (s *Server) relayLocal(w http.ResponseWriter, r *http.Request, path string) {
	resp, err := s.local(r.Context(), http.MethodGet, path)
	if err != nil {
		writeLocalErr(w, err)
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.Copy(w, resp.Body)
}

// writeLocalErr answers with the error of the daemon's local API.
func writeLocalErr(w http.ResponseWriter, err error) {
	var se *statusError
	if errors.As(err, &se) {
		writeErr(w, se.code, err)
		return
	}
	writeErr(w, http.StatusServiceUnavailable, err)
}
