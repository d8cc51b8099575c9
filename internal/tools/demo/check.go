package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"time"

	"github.com/safekit-oss/safekit/internal/kvmtest"
)

// failoverTimeout bounds the failover: the graceful stop of the guest on
// node1, then node2 going ALONE and booting it.
const failoverTimeout = 2 * time.Minute

// check verifies what the demo promises, then makes the primary fail
// over, as the tests do with -check.
func (d *demo) check(ctx context.Context) error {
	checks := []struct {
		title string
		f     func(context.Context) error
	}{
		{"Check: both nodes Ready, the VM running on node1 only", d.checkUp},
		{"Check: the console URL and credentials the demo prints", d.checkConsole},
		{"Check: failover (stop the primary): the VM runs on node2 with all the data it synced on node1", d.checkFailover},
	}
	for _, c := range checks {
		if err := d.step(ctx, c.title, func() error { return c.f(ctx) }); err != nil {
			return err
		}
	}
	return nil
}

func (d *demo) checkUp(context.Context) error {
	s1, s2 := d.state(d.n1), d.state(d.n2)
	v1, v2 := d.domstate(d.n1), d.domstate(d.n2)
	d.logf("node1: %s, VM %s; node2: %s, VM %s", s1, v1, s2, v2)
	if s1 != "PRIM Ready" || s2 != "SECOND Ready" {
		return fmt.Errorf("states node1 %q, node2 %q, want PRIM Ready and SECOND Ready", s1, s2)
	}
	if v1 != "running" || v2 != "shut off" {
		return fmt.Errorf("VM %s on node1 and %s on node2, want running on node1 only", v1, v2)
	}
	return nil
}

// checkConsole logs in to node1's console with the printed credentials,
// loads the monitoring page, and reads the module's state on both nodes
// through node1 (node2's relayed), as the console's pages do.
func (d *demo) checkConsole(context.Context) error {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	base := "http://" + d.n1.Addr("default") + ":9010"
	get := func(path string) ([]byte, error) {
		resp, err := c.Get(base + path)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(b))
		}
		return b, err
	}
	page, err := get(consolePath)
	if err != nil {
		return err
	}
	if !bytes.Contains(page, []byte("<html")) && !bytes.Contains(page, []byte("<!DOCTYPE")) {
		return fmt.Errorf("GET %s is no HTML page: %.200s", consolePath, page)
	}
	body, _ := json.Marshal(map[string]string{"httpd_username": consoleUser, "httpd_password": d.pwd})
	resp, err := c.Post(base+"/login", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("login as %s: %s: %s", consoleUser, resp.Status, bytes.TrimSpace(b))
	}
	d.logf("POST %s/login as %s: %s", base, consoleUser, resp.Status)
	for _, n := range d.c.Nodes {
		// The connection node relays what concerns the others.
		path := "/api/v1.0/nodes/" + n.Name + "/modules"
		if n == d.n1 {
			path = "/api/v1.0/modules"
		}
		b, err := get(path)
		if err != nil {
			return err
		}
		var mods struct {
			Node    string `json:"node"`
			Modules []struct {
				Name  string `json:"name"`
				State string `json:"state"`
				Ready string `json:"ready"`
			} `json:"modules"`
		}
		if err := json.Unmarshal(b, &mods); err != nil {
			return fmt.Errorf("GET %s: %w: %.300s", path, err, b)
		}
		want := map[string]string{"node1": "PRIM", "node2": "SECOND"}[n.Name]
		found := ""
		for _, m := range mods.Modules {
			if m.Name == vmName {
				found = m.State + " " + m.Ready
			}
		}
		d.logf("GET %s%s: %s is %s on %s", base, path, vmName, found, mods.Node)
		if mods.Node != n.Name || found != want+" Ready" {
			return fmt.Errorf("GET %s: module %s is %q on node %q, want %s Ready on %s: %.300s", path, vmName, found, mods.Node, want, n.Name, b)
		}
	}
	return nil
}

// checkFailover stops the module on node1 (the graceful stop of the VM,
// whose last synced value is then on its disk), and checks that node2
// goes ALONE, boots the VM, and that the guest resumes there right after
// the last value it synced on node1: the replication lost nothing.
func (d *demo) checkFailover(ctx context.Context) error {
	since := time.Now()
	if _, err := d.sk(d.n1, "", "stop", "-m", vmName); err != nil {
		return err
	}
	err := d.waitFor(ctx, failoverTimeout, func() (bool, string, error) {
		s1, s2 := d.state(d.n1), d.state(d.n2)
		v1, v2 := d.domstate(d.n1), d.domstate(d.n2)
		status := fmt.Sprintf("node1: %s, VM %s; node2: %s, VM %s", s1, v1, s2, v2)
		return s1 == "STOP NotReady" && s2 == "ALONE Ready" && v1 == "shut off" && v2 == "running", status, nil
	})
	if err != nil {
		return err
	}
	d.logf("failover in %v", time.Since(since).Round(100*time.Millisecond))
	// The last boot on each node: a checker restart before the failover
	// would have added one on node1, and that is no failure.
	b1, err := d.vm.Boots(d.n1)
	if err != nil {
		return err
	}
	if len(b1) == 0 || !b1[len(b1)-1].Stopped {
		return fmt.Errorf("node1's serial log shows the boots %+v, want the last one ended on the power button", b1)
	}
	last := b1[len(b1)-1].Last
	d.o.Status("waiting for the guest to sync on node2")
	if _, err := d.vm.WaitSynced(d.n2, last, guestTimeout); err != nil {
		return err
	}
	b2, err := d.vm.Boots(d.n2)
	if err != nil {
		return err
	}
	if len(b2) != 1 || b2[0].Resumed != last || b2[0].First != last+1 {
		return fmt.Errorf("node2's serial log shows the boots %+v, want one that resumed after %d, node1's last synced value", b2, last)
	}
	d.logf("node1 synced the counter up to %d and stopped; on node2 the guest found %d on its disk and went on with %d", last, b2[0].Resumed, b2[0].First)
	if err := d.show1(d.n2, "safekit", "log", "-m", vmName, "-s", "8"); err != nil {
		return err
	}
	evs := d.w.Events()
	if err := kvmtest.CheckExclusive(evs, vmName); err != nil {
		return fmt.Errorf("%w\n%s", err, kvmtest.FormatEvents(evs))
	}
	var runs []string
	for _, iv := range kvmtest.Intervals(evs) {
		if iv.Domain == vmName {
			runs = append(runs, iv.String())
		}
	}
	d.logf("libvirt's events: %s ran %s, never on both nodes at once", vmName, strings.Join(runs, ", then "))
	return nil
}
