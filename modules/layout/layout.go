// Package layout names the files and directories of a SafeKit node, as the
// User's Guide (§10.1) lays them out under SAFE and SAFEVAR. It does no I/O
// beyond reading the environment, so every other package can depend on it.
package layout

import (
	"os"
	"path/filepath"
)

// Defaults of the roots on Linux.
const (
	DefaultSAFE    = "/opt/safekit"
	DefaultSAFEVAR = "/var/safekit"
)

// Roots are the two trees of a node: SAFE (installation: binaries, modules,
// their active configuration) and SAFEVAR (working data: logs, state,
// cluster.xml). Several nodes can live on one machine with different roots.
type Roots struct {
	SAFE    string
	SAFEVAR string
}

// FromEnv reads SAFE and SAFEVAR, with the Linux defaults.
func FromEnv() Roots {
	r := Roots{SAFE: os.Getenv("SAFE"), SAFEVAR: os.Getenv("SAFEVAR")}
	if r.SAFE == "" {
		r.SAFE = DefaultSAFE
	}
	if r.SAFEVAR == "" {
		r.SAFEVAR = DefaultSAFEVAR
	}
	return r
}

// SafekitCmd is $SAFE/safekit, the command scripts call.
func (r Roots) SafekitCmd() string { return filepath.Join(r.SAFE, "safekit") }

// SAFEBIN holds the special commands scripts call (xpathGet, boundcmd...).
func (r Roots) SAFEBIN() string { return filepath.Join(r.SAFE, "private", "bin") }

// ApplicationModules holds installable .safe files.
func (r Roots) ApplicationModules() string { return filepath.Join(r.SAFE, "Application_Modules") }

// Backups holds the .safe copies made before an uninstall.
func (r Roots) Backups() string { return filepath.Join(r.ApplicationModules(), "backup") }

// ModulesDir holds the installed (editable) modules.
func (r Roots) ModulesDir() string { return filepath.Join(r.SAFE, "modules") }

// LastConfig holds the last successful configurations as .safe files.
func (r Roots) LastConfig() string { return filepath.Join(r.ModulesDir(), "lastconfig") }

// PrivateModulesDir holds the active configurations.
func (r Roots) PrivateModulesDir() string { return filepath.Join(r.SAFE, "private", "modules") }

// IDsFile records the module ids of this node.
func (r Roots) IDsFile() string { return filepath.Join(r.SAFE, "private", "modules.ids") }

// ClusterDir is SAFEVAR/cluster, what `safekit -G` copies to every node.
func (r Roots) ClusterDir() string { return filepath.Join(r.SAFEVAR, "cluster") }

// ClusterXML is the cluster configuration.
func (r Roots) ClusterXML() string { return filepath.Join(r.ClusterDir(), "cluster.xml") }

// Module returns the paths of module name.
func (r Roots) Module(name string) Module { return Module{Roots: r, Name: name} }

// Module is the set of paths of one module.
type Module struct {
	Roots
	Name string
}

// Dir is SAFE/modules/AM: the installed module that users edit.
func (m Module) Dir() string { return filepath.Join(m.ModulesDir(), m.Name) }

// Userconfig is the editable SAFE/modules/AM/conf/userconfig.xml.
func (m Module) Userconfig() string { return filepath.Join(m.Dir(), "conf", "userconfig.xml") }

// Bin is the editable SAFE/modules/AM/bin.
func (m Module) Bin() string { return filepath.Join(m.Dir(), "bin") }

// Private is SAFE/private/modules/AM: the active configuration.
func (m Module) Private() string { return filepath.Join(m.PrivateModulesDir(), m.Name) }

// UserBin is SAFEUSERBIN: the active copy of the scripts.
func (m Module) UserBin() string { return filepath.Join(m.Private(), "bin") }

// UserConf is SAFEUSERCONF: the active configuration files.
func (m Module) UserConf() string { return filepath.Join(m.Private(), "conf") }

// SafeConf is SAFEUSERCONF/safeconf.xml: the macro-expanded configuration.
func (m Module) SafeConf() string { return filepath.Join(m.UserConf(), "safeconf.xml") }

// UserVar is SAFEUSERVAR = SAFEVAR/modules/AM: the module's working
// directory (script logs, module log, state).
func (m Module) UserVar() string { return filepath.Join(m.SAFEVAR, "modules", m.Name) }

// Configured tells whether the module has an active configuration.
func (m Module) Configured() bool {
	_, err := os.Stat(filepath.Join(m.UserConf(), "userconfig.xml"))
	return err == nil
}

// Installed tells whether the module is installed.
func (m Module) Installed() bool {
	_, err := os.Stat(m.Userconfig())
	return err == nil
}
