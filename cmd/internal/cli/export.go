package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"

	"github.com/safekit-oss/safekit/modules"
	"github.com/safekit-oss/safekit/modules/clusterconf"
	"github.com/safekit-oss/safekit/runtime/daemon"
)

// exportCluster is `safekit -H "<hosts>" -G`: SAFEVAR/cluster (cluster.xml,
// the key, the lock flag) goes to every host, which checks cluster.xml
// before it writes anything.
func (e *Env) exportCluster(c *remoteClient, targets []target) int {
	b, err := clusterconf.Collect(e.Roots)
	if err != nil {
		return e.fail(err)
	}
	data, err := b.Zip()
	if err != nil {
		return e.fail(err)
	}
	return e.onEach(targets, func(ctx context.Context, t target) (*daemon.RemoteResult, error) {
		var res daemon.RemoteResult
		err := c.call(ctx, http.MethodPut, t.URL+"/api/v1.0/cluster", "application/zip", func() (io.Reader, error) { return bytes.NewReader(data), nil }, &res)
		return &res, err
	})
}

// exportModule is `safekit -H "<hosts>" -E AM`: SAFE/modules/AM, packed,
// is installed on every host with the module id it has here, and its
// configuration applied there, whether or not it is configured here: "-E
// AM to (re)install the module AM and apply its configuration" (User's
// Guide §9.9.3), and Evidian's scripts run install, edit, -E, prim with no
// config in between (k3sconfig.sh).
func (e *Env) exportModule(c *remoteClient, targets []target, name string) int {
	if err := modules.CheckName(name); err != nil {
		return e.fail(err)
	}
	mod := e.Roots.Module(name)
	if !mod.Installed() {
		return e.fail(fmt.Errorf("%w: %s: -E exports a module installed on this node (safekit module install -m %s file.safe)", modules.ErrNotInstalled, name, name))
	}
	mgr := modules.NewManager(e.Roots, nil)
	id, err := mgr.ID(name)
	if err != nil {
		return e.fail(err)
	}
	if id == 0 {
		return e.fail(fmt.Errorf("module %s has no id on this node: reinstall it with safekit module install -r -m %s", name, name))
	}
	dir, err := os.MkdirTemp("", "safekit-export-")
	if err != nil {
		return e.fail(err)
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, name+".safe")
	if err := mgr.Package(name, file); err != nil {
		return e.fail(err)
	}
	q := url.Values{"id": {strconv.Itoa(id)}, "configure": {"1"}}
	return e.onEach(targets, func(ctx context.Context, t target) (*daemon.RemoteResult, error) {
		var res daemon.RemoteResult
		err := c.call(ctx, http.MethodPut, t.URL+"/api/v1.0/modules/"+name+"?"+q.Encode(), "application/zip", func() (io.Reader, error) { return os.Open(file) }, &res)
		return &res, err
	})
}
