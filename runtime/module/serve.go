package module

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/safekit-oss/safekit/modules"
	"github.com/safekit-oss/safekit/modules/clusterconf"
	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/runtime/automaton"
	"github.com/safekit-oss/safekit/runtime/heart"
	"github.com/safekit-oss/safekit/runtime/localsock"
	"github.com/safekit-oss/safekit/runtime/modlog"
	"github.com/safekit-oss/safekit/safe"
)

// Options of a module process.
type Options struct {
	Roots layout.Roots
	Name  string
	// Boot applies the boot setting once recovery is done (daemon start).
	Boot bool
	// ShAsBash: see runtime/scripts.
	ShAsBash bool
	// Syslog sends main messages to syslog/journald.
	Syslog bool
	// Node is this node's name in cluster.xml ("": found from the
	// addresses).
	Node string
}

// SocketName is where the module process of name listens.
func SocketName(roots layout.Roots, name string) string {
	return localsock.AbstractName(roots.SAFEVAR, "module-"+name)
}

// LogPath is the module log store of a module.
func LogPath(m layout.Module) string { return filepath.Join(m.UserVar(), "log.db") }

// Main runs the module process until ctx ends or it fails to start.
func Main(ctx context.Context, o Options) error {
	mod := o.Roots.Module(o.Name)
	if err := os.MkdirAll(mod.UserVar(), 0o755); err != nil {
		return err
	}
	store, err := modlog.Open(LogPath(mod), modlog.Options{})
	if err != nil {
		return fmt.Errorf("module %s: cannot open its log: %w", o.Name, err)
	}
	defer store.Close()
	var sys modlog.Syslog = modlog.NopSyslog{}
	if o.Syslog {
		sys = modlog.DialSyslog()
	}
	log := modlog.NewLogger(o.Name, store, sys)

	cfg, err := activeConfig(o.Roots, mod)
	if err != nil {
		modlog.Log(log, "heart", "C", "Cannot load the active configuration: %v", err)
		return err
	}
	recordPath := filepath.Join(mod.UserVar(), "state.json")
	rec, _, err := loadRecord(recordPath)
	if err != nil {
		modlog.Log(log, "heart", "C", "%v", err)
	}
	pg := newPGTracker(filepath.Join(mod.UserVar(), "pgids"))
	for _, k := range pg.killLeftovers() {
		modlog.Log(log, "heart", "E", "Process group %d of the previous run (%s) was still running: killed", k.pgid, k.what)
	}
	_ = os.Remove(pg.path)
	wasRunning := rec.Running
	crashed := rec.State != automaton.Stop

	node, peer, hc, perr := mirrorPeering(o, mod, cfg)
	if perr != nil {
		modlog.Log(log, "heart", "C", "%v", perr)
	}
	d := NewDriver(mod, cfg, node, peer, rec, store, log, o.ShAsBash)
	if hc != nil {
		if err := d.startPeering(*hc); err != nil {
			modlog.Log(log, "heart", "C", "Heartbeats not started: %v", err)
		}
	}
	defer d.stopPeering()
	if cfg.Service.Mode == safe.ModeMirror && cfg.RFS != nil {
		if node == "" {
			modlog.Log(log, "rfsplug", "C", "File replication not started: this node's name is not known (see above)")
		} else if err := d.openReplication(o, cfg, node); err != nil {
			modlog.Log(log, "rfsplug", "C", "File replication not started: %v", err)
		}
	}
	defer func() {
		if d.replication != nil {
			d.replication.close()
		}
	}()
	if cfg.Service.Mode == safe.ModeFarm && node != "" {
		if err := d.joinFarm(o, cfg, node); err != nil {
			modlog.Log(log, "vipd", "C", "Farm membership not started: %v", err)
		}
	}
	defer d.leaveFarm()
	d.reloadCluster = func() error {
		_, _, hc, err := mirrorPeering(o, mod, cfg)
		if err != nil {
			return err
		}
		if hc == nil {
			d.stopPeering()
			return nil
		}
		return d.startPeering(*hc)
	}
	runCtx, stop := context.WithCancel(context.Background())
	loopDone := make(chan struct{})
	go func() { d.Run(runCtx); close(loopDone) }()
	defer func() { stop(); <-loopDone }()
	// The recovery begins before the first request is answered, so that
	// nobody sees the STOP of a module whose application may still run.
	if crashed {
		_ = d.Post(ctx, automaton.Recover{From: rec.State})
	}

	l, err := localsock.Listen(SocketName(o.Roots, o.Name), localsock.DefaultPolicy(), func(c *syscall.Ucred) {
		modlog.Log(log, "heart", "W", "Refused a connection from uid %d pid %d", c.Uid, c.Pid)
	})
	if err != nil {
		return fmt.Errorf("module %s: %w", o.Name, err)
	}
	srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()

	if crashed {
		d.idle(ctx)
	}
	if o.Boot && bootStarts(cfg.Service.Boot, rec.Boot, wasRunning) {
		go func() {
			if delay := cfg.Service.BootDelay.D(); delay > 0 {
				modlog.Log(log, "heart", "I", "Start at boot in %s (boot_delay)", delay)
				select {
				case <-time.After(delay):
				case <-ctx.Done():
					return
				}
			}
			if err := d.Post(ctx, automaton.Command{Action: "start", By: "boot"}); err != nil {
				modlog.Log(log, "heart", "E", "Start at boot not applied: %v", err)
			}
		}()
	}
	<-ctx.Done()
	// The daemon stops modules before it ends; an abrupt end leaves the
	// state recorded so that the next process recovers.
	return nil
}

// bootStarts is the boot rule, the same for a machine boot and a daemon
// restart: on; auto and it was running; ignore and `safekit boot on`.
func bootStarts(boot string, bootOn, wasRunning bool) bool {
	switch boot {
	case "on":
		return true
	case "auto":
		return wasRunning
	case "ignore", "":
		return bootOn
	}
	return false
}

// activeConfig reads the active configuration of a module: safeconf.xml,
// expanded when it was applied, so that the environment of the daemon
// cannot give macros another value than `safekit config` saw.
func activeConfig(roots layout.Roots, mod layout.Module) (*safe.Config, error) {
	data, err := os.ReadFile(mod.SafeConf())
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("module %s is not configured (run safekit config -m %s)", mod.Name, mod.Name)
	}
	if err != nil {
		return nil, err
	}
	cl, _, err := modules.LoadCluster(roots)
	if err != nil {
		return nil, err
	}
	u := safe.ParseUserconfig(data, safe.Options{File: mod.SafeConf(), Cluster: cl})
	if err := u.Diags.Err(); err != nil {
		return nil, err
	}
	return u.Config, nil
}

// mirrorPeering finds this node, its peer and the heartbeat configuration of
// a mirror module. hc is nil for other modes; err says why heartbeats cannot
// run (the module then behaves as if alone).
func mirrorPeering(o Options, mod layout.Module, cfg *safe.Config) (node, peer string, hc *heart.Config, err error) {
	cl, _, err := modules.LoadCluster(o.Roots)
	if err != nil || cl == nil {
		if err == nil && cfg.Service.Mode == safe.ModeMirror {
			err = fmt.Errorf("no cluster.xml: the heartbeats of module %s cannot start (safekit cluster config, then -G)", mod.Name)
		}
		return "", "", nil, err
	}
	node = o.Node
	if node == "" {
		if node, err = clusterconf.FindNode(cl, clusterconf.LocalIPs()); err != nil {
			return "", "", nil, err
		}
	}
	peer = peerNode(cl, node)
	if cfg.Service.Mode != safe.ModeMirror || cfg.Heart == nil {
		return node, peer, nil, nil
	}
	id, err := modules.NewManager(o.Roots, nil).ID(mod.Name)
	if err != nil || id == 0 {
		return node, peer, nil, fmt.Errorf("module %s has no id: reinstall it", mod.Name)
	}
	key, err := clusterconf.Key(o.Roots)
	if err != nil {
		return node, peer, nil, err
	}
	c, err := heartConfig(cfg, cl, node, id, key)
	if err != nil {
		return node, peer, nil, err
	}
	return node, peer, &c, nil
}

// joinFarm starts the farm membership of a farm module.
func (d *Driver) joinFarm(o Options, cfg *safe.Config, node string) error {
	cl, _, err := modules.LoadCluster(o.Roots)
	if err != nil || cl == nil {
		return fmt.Errorf("no usable cluster.xml: %v", err)
	}
	fc, err := farmConfig(o, cfg, cl, node)
	if err != nil {
		return err
	}
	return d.startFarming(fc)
}

// leaveFarm leaves the farm cleanly, so that the others recompute their
// shares at once.
func (d *Driver) leaveFarm() {
	if d.farming != nil {
		_ = d.farming.m.Leave(time.Second)
		_ = d.farming.m.Stop()
	}
}
