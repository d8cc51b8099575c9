package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/safekit-oss/safekit/internal/atomicfile"
	"github.com/safekit-oss/safekit/runtime/module"
	"github.com/safekit-oss/safekit/safe"
)

// Limits of configuration requests.
const (
	// maxModuleFile is the most a file of bin/ or userconfig.xml may weigh.
	maxModuleFile = 16 << 20
	// maxUpload is the most an uploaded .safe may weigh, as the archive
	// reader accepts once decompressed.
	maxUpload = 1 << 30
)

// ClusterXML is the body of the cluster checks and writes.
type ClusterXML struct {
	XML string `json:"xml"`
}

func checkCluster(xml string) Check {
	_, diags := safe.ParseCluster([]byte(xml), "cluster.xml")
	return Check{Valid: !diags.HasErrors(), Diagnostics: diagnosticsOf(diags, "")}
}

func (s *Server) handleClusterCheck(w http.ResponseWriter, r *http.Request) {
	var c ClusterXML
	if decodeJSON(w, r, &c) {
		writeJSON(w, http.StatusOK, checkCluster(c.XML))
	}
}

// handleClusterPut writes cluster.xml (JSON, from the console), or applies
// the cluster configuration of `safekit -H -G` (a zip).
func (s *Server) handleClusterPut(w http.ResponseWriter, r *http.Request) {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		s.remoteHandler(s.remote.Cluster).ServeHTTP(w, r)
		return
	}
	var c ClusterXML
	if !decodeJSON(w, r, &c) {
		return
	}
	check := checkCluster(c.XML)
	if !check.Valid {
		writeJSON(w, http.StatusUnprocessableEntity, check)
		return
	}
	if err := atomicfile.WriteFile(s.roots().ClusterXML(), []byte(c.XML), 0o644); err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	s.log.Infof("cluster.xml written by %s (apply it with safekit cluster config)", by(r))
	writeJSON(w, http.StatusOK, check)
}

// handleClusterApply applies SAFEVAR/cluster/cluster.xml here with a new
// key (safekit cluster config), then copies the configuration to every
// other node (safekit -H node -G).
func (s *Server) handleClusterApply(w http.ResponseWriter, r *http.Request) {
	self := s.selfLabel(r.Context())
	local := s.runCommand(r, "cluster", "config")
	results := []NodeResult{{Node: self, OK: local.OK, Output: local.Output}}
	others, err := s.onOthers(r, func(n nodeRef) NodeResult {
		if !local.OK {
			return NodeResult{Node: n.Name, Output: fmt.Sprintf("not applied: the configuration failed on %s\n", self)}
		}
		res := s.runCommand(r, "-H", n.Name, "-G")
		return NodeResult{Node: n.Name, OK: res.OK, Output: res.Output}
	})
	if err != nil {
		results = append(results, NodeResult{Node: "cluster.xml", Output: err.Error()})
	}
	writeJSON(w, http.StatusOK, append(results, others...))
}

// handleClusterDeconfig unconfigures the cluster on nodes ({nodes} or
// ?nodes=; none: this node), as `safekit cluster deconfig` on each. The
// other nodes go first, at once, with -H: that needs this node's
// cluster.xml, which the deconfiguration of this node removes last.
func (s *Server) handleClusterDeconfig(w http.ResponseWriter, r *http.Request) {
	names, ok := targetNodes(w, r)
	if !ok {
		return
	}
	self := s.selfName(r.Context())
	if len(names) == 0 {
		names = []string{s.selfLabel(r.Context())}
		self = names[0]
	}
	var others, here []int
	for i, n := range names {
		if n == self {
			here = append(here, i)
		} else {
			others = append(others, i)
		}
	}
	results := make([]NodeResult, len(names))
	for k, res := range forNodes(others, func(i int) NodeResult {
		if _, err := s.node(names[i]); err != nil {
			return NodeResult{Node: names[i], Output: err.Error() + "\n"}
		}
		res := s.runCommand(r, "-H", names[i], "cluster", "deconfig")
		return NodeResult{Node: names[i], OK: res.OK, Output: res.Output}
	}) {
		results[others[k]] = res
	}
	for _, i := range here {
		res := s.runCommand(r, "cluster", "deconfig")
		results[i] = NodeResult{Node: names[i], OK: res.OK, Output: res.Output}
	}
	writeJSON(w, http.StatusOK, results)
}

// remoteHandler is one of the daemon's handlers of distributed commands.
func (s *Server) remoteHandler(h http.Handler) http.Handler {
	if h == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeErr(w, http.StatusNotImplemented, errors.New("this safekitd does not run commands for other nodes"))
		})
	}
	return h
}

func (s *Server) handleRemoteCLI(w http.ResponseWriter, r *http.Request) {
	s.remoteHandler(s.remote.CLI).ServeHTTP(w, r)
}

func (s *Server) handleModulePush(w http.ResponseWriter, r *http.Request) {
	s.remoteHandler(s.remote.Module).ServeHTTP(w, r)
}

// Install is the JSON body of POST /api/v1.0/modules/AM/install.
type Install struct {
	// Source is a file of SAFE/Application_Modules: "generic/mirror.safe".
	Source string `json:"source"`
	// Reinstall replaces an installed module (its id is kept).
	Reinstall bool `json:"reinstall"`
}

func (s *Server) handleInstall(w http.ResponseWriter, r *http.Request) {
	name, ok := moduleName(w, r)
	if !ok {
		return
	}
	var in Install
	var file string
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "multipart/form-data" {
		tmp, reinstall, err := s.receiveUpload(w, r)
		if err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		defer os.Remove(tmp)
		file, in.Reinstall = tmp, reinstall
	} else {
		if !decodeJSON(w, r, &in) {
			return
		}
		p, err := s.appModulePath(in.Source)
		if err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		file = p
	}
	args := []string{"module", "install", "-m", name}
	if in.Reinstall {
		args = append(args, "-r")
	}
	s.answerCommand(w, r, append(args, file)...)
}

// receiveUpload saves the file of a multipart upload (field "file") and
// returns its path and the reinstall field.
func (s *Server) receiveUpload(w http.ResponseWriter, r *http.Request) (string, bool, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxUpload)
	reader, err := r.MultipartReader()
	if err != nil {
		return "", false, err
	}
	var path string
	reinstall := false
	for {
		part, err := reader.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", false, cleanup(path, err)
		}
		switch part.FormName() {
		case "reinstall":
			v, _ := io.ReadAll(io.LimitReader(part, 16))
			reinstall = string(v) == "1" || string(v) == "true" || string(v) == "on"
		case "file":
			ext := strings.ToLower(filepath.Ext(part.FileName()))
			if ext != ".safe" && ext != ".zip" {
				return "", false, cleanup(path, fmt.Errorf("%q is not a .safe or .zip file", part.FileName()))
			}
			if err := os.MkdirAll(s.roots().SAFEVAR, 0o755); err != nil {
				return "", false, err
			}
			f, err := os.CreateTemp(s.roots().SAFEVAR, ".upload-*.safe")
			if err != nil {
				return "", false, err
			}
			path = f.Name()
			_, err = io.Copy(f, part)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return "", false, cleanup(path, fmt.Errorf("receiving %s: %w", part.FileName(), err))
			}
		}
	}
	if path == "" {
		return "", false, errors.New("no file in the upload (multipart field \"file\")")
	}
	return path, reinstall, nil
}

func cleanup(path string, err error) error {
	if path != "" {
		os.Remove(path)
	}
	return err
}

func (s *Server) handleFilePut(w http.ResponseWriter, r *http.Request) {
	mod, p, ok := s.moduleFile(w, r)
	if !ok {
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxModuleFile))
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	mode := os.FileMode(0o644)
	if strings.HasPrefix(p, mod.Bin()+string(os.PathSeparator)) {
		mode = 0o755
	}
	if st, err := os.Stat(p); err == nil {
		mode = st.Mode().Perm()
	}
	if err := atomicfile.WriteFile(p, data, mode); err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	rel, _ := filepath.Rel(mod.Dir(), p)
	s.log.Infof("module %s: %s written by %s", mod.Name, filepath.ToSlash(rel), by(r))
	check, _ := s.checkModule(mod)
	writeJSON(w, http.StatusOK, check)
}

func (s *Server) handleFileDelete(w http.ResponseWriter, r *http.Request) {
	mod, p, ok := s.moduleFile(w, r)
	if !ok {
		return
	}
	if p == mod.Userconfig() {
		writeErr(w, http.StatusBadRequest, errors.New("conf/userconfig.xml cannot be deleted: uninstall the module instead"))
		return
	}
	if err := os.Remove(p); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, os.ErrNotExist) {
			code = http.StatusNotFound
		}
		writeErr(w, code, err)
		return
	}
	s.log.Infof("module %s: bin/%s deleted by %s", mod.Name, filepath.Base(p), by(r))
	writeJSON(w, http.StatusOK, done{OK: true})
}

func (s *Server) handleMacros(w http.ResponseWriter, r *http.Request) {
	mod, ok := s.installedModule(w, r)
	if !ok {
		return
	}
	var ms []Macro
	if !decodeJSON(w, r, &ms) {
		return
	}
	data, err := os.ReadFile(mod.Userconfig())
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	out, err := setMacros(data, ms)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	if err := atomicfile.WriteFile(mod.Userconfig(), out, 0o644); err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	s.log.Infof("module %s: macros of userconfig.xml set by %s", mod.Name, by(r))
	check, _ := s.checkModule(mod)
	writeJSON(w, http.StatusOK, check)
}

func (s *Server) handleCheck(w http.ResponseWriter, r *http.Request) {
	if mod, ok := s.installedModule(w, r); ok {
		check, _ := s.checkModule(mod)
		writeJSON(w, http.StatusOK, check)
	}
}

// Nodes is the body of the operations on several nodes.
type Nodes struct {
	// Nodes are names of cluster.xml; empty: this node only.
	Nodes []string `json:"nodes"`
}

// targetNodes reads the nodes of a request ({nodes}, or ?nodes=a,b).
func targetNodes(w http.ResponseWriter, r *http.Request) ([]string, bool) {
	var n Nodes
	if q := r.URL.Query().Get("nodes"); q != "" {
		for _, name := range strings.Split(q, ",") {
			if name = strings.TrimSpace(name); name != "" {
				n.Nodes = append(n.Nodes, name)
			}
		}
		return n.Nodes, true
	}
	if r.ContentLength == 0 {
		return nil, true
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody)).Decode(&n); err != nil && !errors.Is(err, io.EOF) {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("bad request body: %w", err))
		return nil, false
	}
	return n.Nodes, true
}

// selfLabel names this node: its name in cluster.xml, else the host name.
func (s *Server) selfLabel(ctx context.Context) string {
	if n := s.selfName(ctx); n != "" {
		return n
	}
	h, _ := os.Hostname()
	return h
}

// onNodes runs here on this node and there on the others of names, the
// others at once and after this one, and returns the results in the order
// of names (this node alone when names is empty).
func (s *Server) onNodes(r *http.Request, names []string, here func(self string) NodeResult, there func(nodeRef) NodeResult) []NodeResult {
	self := s.selfName(r.Context())
	if len(names) == 0 {
		names = []string{s.selfLabel(r.Context())}
		self = names[0]
	}
	results := make([]NodeResult, len(names))
	for i, n := range names {
		if n == self {
			results[i] = here(n)
		}
	}
	idx := []int{}
	for i, n := range names {
		if n != self {
			idx = append(idx, i)
		}
	}
	for k, res := range forNodes(idx, func(i int) NodeResult {
		ref, err := s.node(names[i])
		if err != nil {
			return NodeResult{Node: names[i], Output: err.Error()}
		}
		return there(ref)
	}) {
		results[idx[k]] = res
	}
	return results
}

// stopRequired tells whether a module state forbids a new configuration.
func stopRequired(state, ready string, busy bool) bool {
	return state != "STOP" || ready == "Transient" || busy
}

// handleApply applies the installed configuration on nodes, as the
// console's Save and apply: `safekit config` here, `safekit -H node -E AM`
// (install with the same id, and configure) on the others. A node where
// the module runs is refused.
func (s *Server) handleApply(w http.ResponseWriter, r *http.Request) {
	mod, ok := s.installedModule(w, r)
	if !ok {
		return
	}
	names, ok := targetNodes(w, r)
	if !ok {
		return
	}
	stopMsg := func(node string) string { return fmt.Sprintf("%s stop required on %s\n", mod.Name, node) }
	results := s.onNodes(r, names, func(self string) NodeResult {
		var snap module.Snapshot
		if err := s.localGet(r.Context(), "/v1/modules/"+mod.Name+"/state", &snap); err == nil && stopRequired(string(snap.State), string(snap.Ready), snap.Busy) {
			return NodeResult{Node: self, Output: stopMsg(self)}
		}
		res := s.runCommand(r, "config", "-m", mod.Name)
		return NodeResult{Node: self, OK: res.OK, Output: res.Output}
	}, func(n nodeRef) NodeResult {
		var st CheckState
		err := s.nodes.do(r.Context(), http.MethodGet, n.URL+"/api/v1.0/modules/"+mod.Name+"/checkstate", "", nil, &st)
		var se *statusError
		switch {
		case errors.As(err, &se) && se.code == http.StatusNotFound:
			// Not installed there yet: -E installs it.
		case err != nil:
			return NodeResult{Node: n.Name, Output: err.Error() + "\n"}
		case stopRequired(st.State, st.Ready, false):
			return NodeResult{Node: n.Name, Output: stopMsg(n.Name)}
		}
		res := s.runCommand(r, "-H", n.Name, "-E", mod.Name)
		return NodeResult{Node: n.Name, OK: res.OK, Output: res.Output}
	})
	writeJSON(w, http.StatusOK, results)
}

// onNodesCommand runs a safekit command on nodes: here directly, elsewhere
// with -H.
func (s *Server) onNodesCommand(w http.ResponseWriter, r *http.Request, args ...string) {
	names, ok := targetNodes(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.onNodes(r, names, func(self string) NodeResult {
		res := s.runCommand(r, args...)
		return NodeResult{Node: self, OK: res.OK, Output: res.Output}
	}, func(n nodeRef) NodeResult {
		res := s.runCommand(r, append([]string{"-H", n.Name}, args...)...)
		return NodeResult{Node: n.Name, OK: res.OK, Output: res.Output}
	}))
}

func (s *Server) handleDeconfig(w http.ResponseWriter, r *http.Request) {
	if name, ok := moduleName(w, r); ok {
		s.onNodesCommand(w, r, "deconfig", "-m", name)
	}
}

func (s *Server) handleUninstall(w http.ResponseWriter, r *http.Request) {
	if name, ok := moduleName(w, r); ok {
		s.onNodesCommand(w, r, "module", "uninstall", "-m", name)
	}
}

// Restore is the body of POST /api/v1.0/modules/AM/restore.
type Restore struct {
	// File is a configuration of GET .../lastconfig.
	File string `json:"file"`
}

func (s *Server) handleRestore(w http.ResponseWriter, r *http.Request) {
	name, ok := moduleName(w, r)
	if !ok {
		return
	}
	var in Restore
	if !decodeJSON(w, r, &in) {
		return
	}
	kept, err := lastConfigs(s.roots(), name)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	if !slices.ContainsFunc(kept, func(c LastConfig) bool { return c.File == in.File }) {
		writeErr(w, http.StatusNotFound, fmt.Errorf("no configuration %q of module %s in SAFE/modules/lastconfig", in.File, name))
		return
	}
	s.answerCommand(w, r, "module", "install", "-m", name, "-r", filepath.Join(s.roots().LastConfig(), in.File))
}
