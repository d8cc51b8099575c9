package modules

import (
	"fmt"
	"io"

	"github.com/safekit-oss/safekit/safe"
)

// Fixed ports of a node (User's Guide §10.2).
const (
	SafeadminPort = 4800 // UDP, cluster membership
	WebPort       = 9010 // TCP, console, API, distributed commands
)

// HeartPort is the UDP heartbeat port of module id: 8888+(id-1).
func HeartPort(id int) int { return 8888 + id - 1 }

// RFSPort is the TCP replication port of module id: 5600+(id-1)*4.
func RFSPort(id int) int { return 5600 + (id-1)*4 }

// FarmPort is the UDP farm membership port of module id: 4803+(id-1)*3.
func FarmPort(id int) int { return 4803 + (id-1)*3 }

// Ports are the ports a module uses.
type Ports struct {
	Mode  safe.Mode
	Heart int // mirror
	RFS   int // mirror with <rfs>
	Farm  int // farm
	Web   int
}

// PortsOf computes the ports of a module with id and configuration cfg
// (nil when unknown: the mirror ports are shown). Ports written in the
// configuration win over the defaults.
func PortsOf(id int, cfg *safe.Config, web int) Ports {
	p := Ports{Mode: safe.ModeMirror, Web: web}
	if cfg != nil && cfg.Service.Mode != "" {
		p.Mode = cfg.Service.Mode
	}
	switch p.Mode {
	case safe.ModeMirror:
		p.Heart = HeartPort(id)
		if cfg != nil && cfg.Heart != nil && cfg.Heart.Port != 0 {
			p.Heart = cfg.Heart.Port
		}
		if cfg == nil || cfg.RFS != nil {
			p.RFS = RFSPort(id)
		}
	case safe.ModeFarm:
		p.Farm = FarmPort(id)
		if cfg != nil && cfg.Farm != nil && cfg.Farm.Port != 0 {
			p.Farm = cfg.Farm.Port
		}
	}
	return p
}

// Print writes the ports in the format of `safekit module getports`.
func (p Ports) Print(w io.Writer) {
	fmt.Fprintf(w, "List of the ports used by SafeKit\n")
	fmt.Fprintf(w, "Process         Ports\n")
	fmt.Fprintf(w, "safeadmin\nport    UDP %d\n", SafeadminPort)
	fmt.Fprintf(w, "webconsole\nport    TCP %d\n", p.Web)
	if p.Heart != 0 {
		fmt.Fprintf(w, "heart\nport    UDP %d\n", p.Heart)
	}
	if p.RFS != 0 {
		fmt.Fprintf(w, "rfs\nsafenfs_port    TCP %d\n", p.RFS)
	}
	if p.Farm != 0 {
		fmt.Fprintf(w, "farm\nport    UDP %d\n", p.Farm)
	}
}
