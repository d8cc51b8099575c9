package console

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
)

// CommandResult is the outcome of a safekit command run for the caller:
// 200 when it succeeded, 409 when it failed (Output says why).
type CommandResult struct {
	OK     bool   `json:"ok"`
	Code   int    `json:"code"`
	Output string `json:"output"`
}

// by names the caller of a request in the command log and the module log.
func by(r *http.Request) string {
	c, _ := CallerFrom(r.Context())
	return c.String()
}

// runCommand runs a safekit command for the caller of r.
func (s *Server) runCommand(r *http.Request, args ...string) CommandResult {
	res := s.b.Run(args, by(r))
	return CommandResult{OK: res.Code == 0, Code: res.Code, Output: res.Stdout + res.Stderr}
}

// answerCommand runs a safekit command and answers with its outcome.
func (s *Server) answerCommand(w http.ResponseWriter, r *http.Request, args ...string) {
	res := s.runCommand(r, args...)
	code := http.StatusOK
	if !res.OK {
		code = http.StatusConflict
	}
	writeJSON(w, code, res)
}

// Command is the body of POST /api/v1.0/modules/AM/command.
type Command struct {
	Action string `json:"action"`
	// Arg is fullsync (prim, primforce, second: copy all the data again)
	// or nosync (swap), else empty.
	Arg string `json:"arg"`
}

// actionArgs are the actions of the console and the arguments each takes.
var actionArgs = map[string][]string{
	"start": nil, "stop": nil, "restart": nil, "stopstart": nil, "forcestop": nil,
	"prim": {"fullsync"}, "primforce": {"fullsync"}, "second": {"fullsync"}, "swap": {"nosync"},
}

func (s *Server) handleCommand(w http.ResponseWriter, r *http.Request) {
	name, ok := moduleName(w, r)
	if !ok {
		return
	}
	var c Command
	if !decodeJSON(w, r, &c) {
		return
	}
	allowed, known := actionArgs[c.Action]
	if !known {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("unknown action %q (start, stop, restart, stopstart, forcestop, prim, primforce, second, swap)", c.Action))
		return
	}
	args := []string{c.Action}
	if c.Arg != "" {
		if !slices.Contains(allowed, c.Arg) {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("%s does not take %q", c.Action, c.Arg))
			return
		}
		args = append(args, c.Arg)
	}
	s.answerCommand(w, r, append(args, "-m", name)...)
}

// Setting is the body of POST /api/v1.0/modules/AM/settings.
type Setting struct {
	// Name is boot (start at boot), checker (every checker), errd
	// (process monitoring) or failover (automatic failover).
	Name string `json:"name"`
	On   bool   `json:"on"`
}

func (s *Server) handleSetting(w http.ResponseWriter, r *http.Request) {
	name, ok := moduleName(w, r)
	if !ok {
		return
	}
	var st Setting
	if !decodeJSON(w, r, &st) {
		return
	}
	if !slices.Contains([]string{"boot", "checker", "errd", "failover"}, st.Name) {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("unknown setting %q (boot, checker, errd, failover)", st.Name))
		return
	}
	onOff := "off"
	if st.On {
		onOff = "on"
	}
	s.answerCommand(w, r, st.Name, onOff, "-m", name)
}

func (s *Server) handleDump(w http.ResponseWriter, r *http.Request) {
	if name, ok := moduleName(w, r); ok {
		s.answerCommand(w, r, "dump", "-m", name)
	}
}

// handleSnapshot makes a snapshot with `safekit snapshot` and sends it as
// snapshot_<node>_<AM>.zip, the name SafeKit's console gives it.
func (s *Server) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	mod, ok := s.installedModule(w, r)
	if !ok {
		return
	}
	dir, err := os.MkdirTemp("", "safekit-snapshot-")
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	defer os.RemoveAll(dir)
	node := s.selfName(r.Context())
	if node == "" {
		node, _ = os.Hostname()
	}
	name := fmt.Sprintf("snapshot_%s_%s.zip", node, mod.Name)
	file := filepath.Join(dir, name)
	if res := s.runCommand(r, "snapshot", "-m", mod.Name, file); !res.OK {
		writeJSON(w, http.StatusInternalServerError, res)
		return
	}
	serveFile(w, r, file, "application/zip", name)
}
