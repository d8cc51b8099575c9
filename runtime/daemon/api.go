package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/safekit-oss/safekit/modules"
	"github.com/safekit-oss/safekit/runtime/modlog"
	"github.com/safekit-oss/safekit/runtime/module"
)

// ModuleInfo is one row of GET /v1/modules.
type ModuleInfo struct {
	Name       string `json:"name"`
	ID         int    `json:"id"`
	Mode       string `json:"mode"`
	Configured bool   `json:"configured"`
	// Running: the module process is up (every configured module has one).
	Running bool   `json:"running"`
	State   string `json:"state"`
	Ready   string `json:"ready"`
}

// Version of this implementation, shown by safekit level.
var Version = "0.1.0"

// localAPI is what the CLI uses, on the unix socket.
func (d *Daemon) localAPI() http.Handler {
	r := mux.NewRouter()
	r.HandleFunc("/v1/modules", d.handleModules).Methods(http.MethodGet)
	r.HandleFunc("/v1/modules/{name}/reload", d.handleReload).Methods(http.MethodPost)
	r.HandleFunc("/v1/shutdown", d.handleShutdown).Methods(http.MethodPost)
	r.HandleFunc("/v1/level", d.handleLevel).Methods(http.MethodGet)
	r.HandleFunc("/v1/cmdlog", d.handleCmdlog).Methods(http.MethodGet)
	r.HandleFunc("/v1/cmdlog/start", d.handleCmdlogStart).Methods(http.MethodPost)
	r.HandleFunc("/v1/cmdlog/end", d.handleCmdlogEnd).Methods(http.MethodPost)
	r.HandleFunc("/v1/node", d.handleNode).Methods(http.MethodGet)
	r.HandleFunc("/v1/cluster/reload", d.handleClusterReload).Methods(http.MethodPost)
	r.PathPrefix("/v1/modules/{name}/").HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		name := mux.Vars(req)["name"]
		d.proxy(w, req, name, strings.TrimPrefix(req.URL.Path, "/v1/modules/"+name))
	})
	return r
}

// webAPI is served on the node's TCP port: the console's web service
// (package console), with the distributed commands of remote.go.
func (d *Daemon) webAPI() http.Handler { return d.web.Handler() }

func (d *Daemon) handleModules(w http.ResponseWriter, r *http.Request) {
	infos, err := modules.NewManager(d.o.Roots, nil).List()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	out := []ModuleInfo{}
	for _, i := range infos {
		mi := ModuleInfo{Name: i.Name, ID: i.ID, Mode: string(i.Mode), Configured: i.Configured, State: "STOP", Ready: "NotReady"}
		if s, err := d.moduleState(r.Context(), i.Name); err == nil {
			mi.Running, mi.State, mi.Ready = true, string(s.State), string(s.Ready)
		}
		out = append(out, mi)
	}
	writeJSON(w, http.StatusOK, out)
}

// handleReload makes the module process match the active configuration:
// started for a newly configured module, restarted for a changed one (the
// module must be stopped), ended for a deconfigured one.
func (d *Daemon) handleReload(w http.ResponseWriter, r *http.Request) {
	name := mux.Vars(r)["name"]
	if s, err := d.moduleState(r.Context(), name); err == nil && (s.State != "STOP" || s.Busy) {
		writeErr(w, http.StatusConflict, fmt.Errorf("module %s is %s %s: stop it before applying a new configuration", name, s.State, s.Ready))
		return
	}
	d.stopProc(name)
	if d.o.Roots.Module(name).Configured() {
		d.spawn(name, false)
		if err := d.waitUp(r.Context(), name); err != nil {
			writeErr(w, http.StatusServiceUnavailable, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// waitUp waits until a new module process answers.
func (d *Daemon) waitUp(ctx context.Context, name string) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := d.moduleState(ctx, name); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("the process of module %s did not start (see the daemon's log)", name)
}

func (d *Daemon) handleShutdown(w http.ResponseWriter, r *http.Request) {
	by := r.URL.Query().Get("by")
	if by == "" {
		by = "root"
	}
	d.shutdownModules(r.Context(), by)
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// Level is GET /v1/level.
type Level struct {
	Host    string `json:"host"`
	OS      string `json:"os"`
	Version string `json:"version"`
	License string `json:"license"`
}

func (d *Daemon) handleLevel(w http.ResponseWriter, r *http.Request) {
	host, _ := os.Hostname()
	osName := runtime.GOOS
	if data, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				osName = strings.Trim(v, `"`)
			}
		}
	}
	writeJSON(w, http.StatusOK, Level{Host: host, OS: osName, Version: Version, License: "open source (no license key needed)"})
}

func (d *Daemon) handleCmdlog(w http.ResponseWriter, r *http.Request) {
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	if n <= 0 {
		n = 300
	}
	recs, err := d.cmdlog.Last(n)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	lines := make([]string, len(recs))
	for i, rec := range recs {
		lines[i] = rec.String()
	}
	writeJSON(w, http.StatusOK, lines)
}

// CmdlogStart is POST /v1/cmdlog/start.
type CmdlogStart struct {
	Kind   string   `json:"kind"`
	Module string   `json:"module"`
	Args   []string `json:"args"`
}

// CmdlogEnd is POST /v1/cmdlog/end.
type CmdlogEnd struct {
	ID   uint64 `json:"id"`
	Code int    `json:"code"`
}

func (d *Daemon) handleCmdlogStart(w http.ResponseWriter, r *http.Request) {
	var req CmdlogStart
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	id, err := d.cmdlog.Start(req.Kind, req.Module, req.Args)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]uint64{"id": id})
}

func (d *Daemon) handleCmdlogEnd(w http.ResponseWriter, r *http.Request) {
	var req CmdlogEnd
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	if err := d.cmdlog.End(req.ID, req.Code); err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// offline answers for a module without a process: installed but not
// configured, or not there at all. Its log can still be read and written
// (printi/printe from a config script).
func (d *Daemon) offline(w http.ResponseWriter, r *http.Request, name, path string) {
	mod := d.o.Roots.Module(name)
	if err := modules.CheckName(name); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	if !mod.Installed() && !mod.Configured() {
		writeErr(w, http.StatusNotFound, fmt.Errorf("module %s is not installed (see safekit module list)", name))
		return
	}
	switch {
	case path == "/print" && r.Method == http.MethodPost:
		var req module.PrintRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		if err := d.appendOffline(name, req); err != nil {
			writeErr(w, http.StatusInternalServerError, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	case path == "/log" && r.Method == http.MethodGet:
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		if n <= 0 {
			n = 300
		}
		entries, err := readOffline(name, d, n, r.URL.Query().Get("verbose") == "1")
		if err != nil {
			writeErr(w, http.StatusInternalServerError, err)
			return
		}
		writeJSON(w, http.StatusOK, entries)
	case mod.Configured():
		writeErr(w, http.StatusServiceUnavailable, fmt.Errorf("the process of module %s is not running: safekitd starts it again (see its log)", name))
	default:
		writeErr(w, http.StatusConflict, fmt.Errorf("module %s is not configured: run safekit config -m %s", name, name))
	}
}

func (d *Daemon) appendOffline(name string, req module.PrintRequest) error {
	mod := d.o.Roots.Module(name)
	if err := os.MkdirAll(mod.UserVar(), 0o755); err != nil {
		return err
	}
	s, err := modlog.Open(module.LogPath(mod), modlog.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	_, err = s.Append(modlog.Entry{Origin: "userplug", Level: req.Level, Msg: req.Msg})
	return err
}

func readOffline(name string, d *Daemon, n int, verbose bool) ([]modlog.Entry, error) {
	mod := d.o.Roots.Module(name)
	if _, err := os.Stat(module.LogPath(mod)); err != nil {
		return []modlog.Entry{}, nil
	}
	s, err := modlog.Open(module.LogPath(mod), modlog.Options{})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.Last(n, verbose)
}
