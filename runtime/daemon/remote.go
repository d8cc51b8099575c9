package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/safekit-oss/safekit/console"
	"github.com/safekit-oss/safekit/modules"
	"github.com/safekit-oss/safekit/modules/clusterconf"
	"github.com/safekit-oss/safekit/runtime/cmdlog"
	"github.com/safekit-oss/safekit/runtime/webauth"
)

// The web service runs the distributed commands of `safekit -H` for the
// other nodes (and for this one): any safekit command (POST /api/v1.0/cli),
// the cluster configuration of -G (PUT /api/v1.0/cluster), the module of
// -E (PUT /api/v1.0/modules/AM). The console authenticates their callers
// (Admin) and serves the module list of `safekit cluster state` (GET
// /api/v1.0/modules). Each is recorded in the command log with the caller,
// "rcmdadmin@10.0.0.1".

// Runner runs a safekit command in this process for a remote caller (by:
// "rcmdadmin@10.0.0.1") and returns its exit code. The daemon cannot import
// the command line, which imports it: safekitd gives it.
type Runner func(args []string, by string, stdout, stderr io.Writer) int

// RemoteCommand is the body of POST /api/v1.0/cli.
type RemoteCommand struct {
	// Args is the command line after "safekit".
	Args []string `json:"args"`
}

// RemoteResult is the answer of a distributed command: its output and exit
// code on this node.
type RemoteResult struct {
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	Code   int    `json:"code"`
}

// NodeModules is what `safekit cluster state` reads of GET
// /api/v1.0/modules (console.Modules): the modules installed on a node.
type NodeModules struct {
	// Node is this node's name in cluster.xml ("" when unknown).
	Node    string       `json:"node"`
	Modules []ModuleConf `json:"modules"`
}

// ModuleConf is one installed module and its active configuration.
type ModuleConf struct {
	Name       string `json:"name"`
	Mode       string `json:"mode"`
	ID         int    `json:"id"`
	Configured bool   `json:"configured"`
	// Signature and Date of the active configuration; empty when the
	// module is not configured.
	Signature string    `json:"signature"`
	Date      time.Time `json:"date"`
}

// Limits of the bodies of remote requests.
const (
	maxCommandBody = 1 << 20
	// maxModuleBody is the most a .safe may weigh, as the archive reader
	// accepts once decompressed.
	maxModuleBody = 1 << 30
)

// LocalOnly refuses the commands that cannot be distributed: they follow
// or act on the terminal of the caller (User's Guide §9.8).
func LocalOnly(args []string) error {
	if len(args) == 0 {
		return errors.New("no command")
	}
	switch args[0] {
	case "logview", "-p", "-r":
		return fmt.Errorf("safekit %s is not supported with -H: run it on the node itself", args[0])
	case "-H", "-G", "-E":
		return fmt.Errorf("%s cannot be sent to another node: run safekit -H \"<hosts>\" %s on this one", args[0], args[0])
	}
	return nil
}

// secretOptions are the options whose values the logs never show.
var secretOptions = map[string]bool{"-passwd": true, "-rcmdpasswd": true}

// Redact returns args with the values of password options masked, for the
// logs.
func Redact(args []string) []string {
	out := append([]string(nil), args...)
	for i := 0; i+1 < len(out); i++ {
		if secretOptions[out[i]] {
			out[i+1] = "********"
			i++
		}
	}
	return out
}

func optionOf(args []string, opt string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == opt {
			return args[i+1]
		}
	}
	return ""
}

// caller is the authenticated caller of a request, as commands record it.
func caller(r *http.Request) string {
	if c, ok := console.CallerFrom(r.Context()); ok {
		return c.String()
	}
	return "unknown@" + r.RemoteAddr
}

// record runs a remote operation between the START and END records of the
// command log, args being what the caller asked, with "-u <caller>".
func (d *Daemon) record(by string, args []string, run func() int) int {
	logged := append(Redact(args), "-u", by)
	id, err := d.cmdlog.Start(cmdlog.KindSafekit, optionOf(args, "-m"), logged)
	if err != nil {
		d.log.Warnf("%v", err)
	}
	code := run()
	if err == nil {
		if err := d.cmdlog.End(id, code); err != nil {
			d.log.Warnf("%v", err)
		}
	}
	d.log.Infof("distributed command from %s: safekit %s: exit code %d", by, strings.Join(Redact(args), " "), code)
	return code
}

func (d *Daemon) handleRemoteCLI(w http.ResponseWriter, r *http.Request) {
	var req RemoteCommand
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxCommandBody)).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("bad request: %w", err))
		return
	}
	if err := LocalOnly(req.Args); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	if d.o.Runner == nil {
		writeErr(w, http.StatusNotImplemented, errors.New("this safekitd cannot run commands for other nodes"))
		return
	}
	by := caller(r)
	var out, errb bytes.Buffer
	code := d.record(by, req.Args, func() int { return d.o.Runner(req.Args, by, &out, &errb) })
	writeJSON(w, http.StatusOK, RemoteResult{Stdout: out.String(), Stderr: errb.String(), Code: code})
}

// handleClusterPush applies the cluster configuration of -G: cluster.xml
// is checked first, and a broken one changes nothing.
func (d *Daemon) handleClusterPush(w http.ResponseWriter, r *http.Request) {
	by := caller(r)
	var res RemoteResult
	res.Code = d.record(by, []string{"-G"}, func() int {
		data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, clusterconf.MaxBundle+1))
		if err != nil {
			res.Stderr = fmt.Sprintf("Error: %v\n", err)
			return 1
		}
		b, err := clusterconf.ReadZip(data)
		if err != nil {
			res.Stderr = fmt.Sprintf("Error: %v; nothing changed on this node\n", err)
			d.log.Errorf("cluster configuration from %s rejected: %v", by, err)
			return 1
		}
		_, diags, err := b.Check("cluster.xml")
		var msgs strings.Builder
		for _, dg := range diags {
			msgs.WriteString(dg.String() + "\n")
		}
		if err != nil {
			res.Stderr = msgs.String() + fmt.Sprintf("Error: cluster configuration rejected: %v; nothing changed on this node\n", err)
			d.log.Errorf("cluster configuration from %s rejected, nothing changed: %v\n%s", by, err, strings.TrimSpace(msgs.String()))
			return 1
		}
		res.Stderr = msgs.String()
		if err := clusterconf.Apply(d.o.Roots, b); err != nil {
			res.Stderr += fmt.Sprintf("Error: %v\n", err)
			return 1
		}
		n := d.clusterApplied(by)
		name := n.Name
		if name == "" {
			name = "(unknown: " + n.Problem + ")"
		}
		res.Stdout = fmt.Sprintf("Cluster configuration applied (signature %s); this node is %s\n", n.ClusterSignature, name)
		return 0
	})
	writeJSON(w, http.StatusOK, res)
}

// handleModulePush installs the module of -E with the id it has on the
// sending node, and configures it when it is configured there
// (?id=N&configure=1).
func (d *Daemon) handleModulePush(w http.ResponseWriter, r *http.Request) {
	name := mux.Vars(r)["AM"]
	if err := modules.CheckName(name); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	id, err := strconv.Atoi(r.URL.Query().Get("id"))
	if err != nil || id < 1 {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("-E needs the module id (?id=N), not %q", r.URL.Query().Get("id")))
		return
	}
	configure := r.URL.Query().Get("configure") == "1"
	if d.o.Runner == nil {
		writeErr(w, http.StatusNotImplemented, errors.New("this safekitd cannot run commands for other nodes"))
		return
	}
	by := caller(r)
	var out, errb bytes.Buffer
	code := d.record(by, []string{"-E", name}, func() int {
		tmp, err := os.CreateTemp(d.o.Roots.SAFEVAR, "."+name+"-export-*.safe")
		if err != nil {
			fmt.Fprintf(&errb, "Error: %v\n", err)
			return 1
		}
		defer os.Remove(tmp.Name())
		_, err = io.Copy(tmp, http.MaxBytesReader(w, r.Body, maxModuleBody))
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			fmt.Fprintf(&errb, "Error: receiving the module: %v\n", err)
			return 1
		}
		if code := d.o.Runner([]string{"module", "install", "-m", name, "-M", strconv.Itoa(id), "-r", tmp.Name()}, by, &out, &errb); code != 0 || !configure {
			return code
		}
		return d.o.Runner([]string{"config", "-m", name}, by, &out, &errb)
	})
	writeJSON(w, http.StatusOK, RemoteResult{Stdout: out.String(), Stderr: errb.String(), Code: code})
}

// checkWebService prepares the web service when the daemon starts: a
// password for the private user of distributed commands when there is none
// yet, and a loud line when the node does not authenticate.
func (d *Daemon) checkWebService() {
	r := d.o.Roots
	conf, err := webauth.ReadHTTPConf(r)
	if err != nil {
		d.log.Errorf("%v; the web service refuses every request until it is fixed", err)
	}
	if conf.Unsecure {
		d.log.Warnf("UNSECURE web service: %s says \"Define unsecure\": anyone who reaches the web service runs any safekit command as Admin, without a password; keep it for a lab cluster (safekit webservercfg -secure requires passwords again)", webauth.HTTPDFile(r))
	}
	pwd, created, err := webauth.EnsureRcmd(r)
	switch {
	case err != nil:
		d.log.Warnf("distributed commands: %v", err)
	case created:
		d.log.Warnf("distributed commands: generated the password of the private user %s of this node; give every other node the same with: safekit webservercfg -rcmdpasswd %s",
			webauth.DefaultRcmdUser, pwd)
	}
}
