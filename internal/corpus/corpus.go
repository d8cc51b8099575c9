// Package corpus describes the published modules of the compat corpus for
// the tests: the errors each one gets as shipped (the placeholders the
// console's wizard fills), the edits that fill them, and the Windows-module
// warning. The corpus itself stays in shared/compat-corpus; nothing of it is
// copied here.
package corpus

import (
	"fmt"
	"regexp"
)

// Module is one published .safe archive: the errors it gets as
// shipped (the placeholders the console's wizard fills) and the edits that
// fill them.
type Module struct {
	OS, Name string
	// shipped are the error diagnostics of conf/userconfig.xml as published.
	Shipped []string
	// fill sets what an operator sets in the console before the first
	// "Save and apply".
	Fill []Edit
	// windows is the Windows-module warning once filled; "" for Linux ones.
	Windows string
}

// Key is "linux/kvm".
func (m Module) Key() string { return m.OS + "/" + m.Name }

// Edit replaces one match of Re in userconfig.xml.
type Edit struct {
	Re   *regexp.Regexp
	Repl string
}

// setMacro gives a macro shipped empty its value.
func setMacro(name, value string) Edit {
	return Edit{regexp.MustCompile(`name="` + name + `"\s+value=""`), `name="` + name + `" value="` + value + `"`}
}

// set replaces text written once in the file, such as addr="".
func set(old, new string) Edit { return Edit{regexp.MustCompile(regexp.QuoteMeta(old)), new} }

const (
	// TestVIP is the virtual IP the fills use.
	TestVIP = "192.168.1.99"
	winWarn = ": it is checked here, but safekit config refuses it on Linux"
)

var (
	fillVIP      = set(`addr=""`, `addr="`+TestVIP+`"`)
	fillServices = setMacro("SERVICES", "svc1,svc2")
)

func shippedVIP(pos, macro string) string {
	if macro == "" {
		return "userconfig.xml:" + pos + ": <virtual_addr>: addr is empty: fill in the addr attribute (the module ships it empty for you to set)"
	}
	return "userconfig.xml:" + pos + ": <virtual_addr>: addr is empty: set a value for macro " + macro
}

// farmLB are the errors of the apache_farm and iis_farm templates.
func farmLB(portMacro string) []string {
	return []string{
		"userconfig.xml:20:11: <virtual_addr>: addr is empty: set a value for macro VIRTUAL_IP (line 7)",
		"userconfig.xml:27:9: <rule>: port is empty: set a value for macro " + portMacro + " (line 8)",
		"userconfig.xml:35:7: <to>: addr is empty: set a value for macro VIRTUAL_IP (line 7)",
		"userconfig.xml:35:7: <to>: port is empty: set a value for macro " + portMacro + " (line 8)",
	}
}

var Modules = []Module{
	{OS: "linux", Name: "apache_farm", Shipped: farmLB("APACHE_PORT"),
		Fill: []Edit{setMacro("VIRTUAL_IP", TestVIP), setMacro("APACHE_PORT", "80")}},
	{OS: "linux", Name: "farm", Fill: []Edit{fillServices}},
	{OS: "linux", Name: "firebird", Shipped: []string{shippedVIP("18:16", "")}, Fill: []Edit{fillVIP}},
	{OS: "linux", Name: "k3s", Shipped: []string{shippedVIP("19:16", "VIRTUALIP (line 4)")},
		Fill: []Edit{setMacro("VIRTUALIP", TestVIP)}},
	{OS: "linux", Name: "kvm"},
	{OS: "linux", Name: "mirror", Fill: []Edit{fillServices}},
	{OS: "linux", Name: "mysql", Shipped: []string{shippedVIP("18:16", "")}, Fill: []Edit{fillVIP}},
	{OS: "linux", Name: "oracle",
		Shipped: []string{
			shippedVIP("18:11", ""),
			"userconfig.xml:36:5: <replicated>: dir is empty: fill in the dir attribute (the module ships it empty for you to set)",
		},
		Fill: []Edit{fillVIP, set(`dir=""`, `dir="/opt/oracle/oradata"`)}},
	{OS: "linux", Name: "postgresql", Shipped: []string{shippedVIP("19:16", "")}, Fill: []Edit{fillVIP}},

	{OS: "windows", Name: "SiveillanceVMS", Shipped: []string{shippedVIP("21:13", "")}, Fill: []Edit{fillVIP},
		Windows: `userconfig.xml:28:7: <proc>: warning: this is a Windows module (process "sqlservr.exe")` + winWarn},
	{OS: "windows", Name: "apache_farm", Shipped: farmLB("APACHE_PORT"),
		Fill:    []Edit{setMacro("VIRTUAL_IP", TestVIP), setMacro("APACHE_PORT", "80")},
		Windows: "userconfig.xml: warning: this is a Windows module (script bin/module_scripts_utils.ps1)" + winWarn},
	{OS: "windows", Name: "farm", Fill: []Edit{fillServices},
		Windows: "userconfig.xml: warning: this is a Windows module (script bin/module_scripts_utils.ps1)" + winWarn},
	{OS: "windows", Name: "firebird", Shipped: []string{shippedVIP("18:16", "")}, Fill: []Edit{fillVIP},
		Windows: `userconfig.xml:26:5: <proc>: warning: this is a Windows module (process "firebird.exe")` + winWarn},
	{OS: "windows", Name: "hyperv",
		Shipped: []string{
			"userconfig.xml:33:2: <replicated>: dir is empty: set a value for macro VM_PATH (line 2) and macro VM_NAME (line 3)",
			"userconfig.xml:38:5: <custom>: ident is empty: fill in the ident attribute (the module ships it empty for you to set)",
		},
		Fill:    []Edit{setMacro("VM_PATH", `C:\Hyper-V`), setMacro("VM_NAME", "vm1"), set(`ident=""`, `ident="vm1"`)},
		Windows: `userconfig.xml:33:2: <replicated>: warning: this is a Windows module (replicated dir "C:\\Hyper-V\\vm1")` + winWarn},
	{OS: "windows", Name: "iis_farm", Shipped: farmLB("IIS_PORT"),
		Fill:    []Edit{setMacro("VIRTUAL_IP", TestVIP), setMacro("IIS_PORT", "80")},
		Windows: "userconfig.xml: warning: this is a Windows module (script bin/module_scripts_utils.ps1)" + winWarn},
	{OS: "windows", Name: "milestone", Shipped: []string{shippedVIP("21:13", "")}, Fill: []Edit{fillVIP},
		Windows: `userconfig.xml:28:7: <proc>: warning: this is a Windows module (process "sqlservr.exe")` + winWarn},
	{OS: "windows", Name: "mirror", Fill: []Edit{fillServices},
		Windows: "userconfig.xml: warning: this is a Windows module (script bin/module_scripts_utils.ps1)" + winWarn},
	{OS: "windows", Name: "mysql", Shipped: []string{shippedVIP("18:16", "")}, Fill: []Edit{fillVIP},
		Windows: `userconfig.xml:25:5: <proc>: warning: this is a Windows module (process "mysqld.exe")` + winWarn},
	{OS: "windows", Name: "nedap", Shipped: []string{shippedVIP("20:5", "")}, Fill: []Edit{fillVIP},
		Windows: `userconfig.xml:28:3: <replicated>: warning: this is a Windows module (replicated dir "C:\\Program Files\\Microsoft SQL Server\\MSSQL13.MSSQLSERVER\\MSSQL\\Log")` + winWarn},
	{OS: "windows", Name: "oracle",
		Shipped: []string{
			shippedVIP("18:16", ""),
			"userconfig.xml:36:5: <replicated>: dir is empty: fill in the dir attribute (the module ships it empty for you to set)",
		},
		Fill:    []Edit{fillVIP, set(`dir=""`, `dir="C:\app\oracle\oradata"`)},
		Windows: `userconfig.xml:29:5: <proc>: warning: this is a Windows module (process "oracle.exe")` + winWarn},
	{OS: "windows", Name: "postgresql", Shipped: []string{shippedVIP("23:16", "")}, Fill: []Edit{fillVIP},
		Windows: `userconfig.xml:31:5: <proc>: warning: this is a Windows module (process "pg_ctl.exe")` + winWarn},
	{OS: "windows", Name: "sqlserver", Shipped: []string{shippedVIP("18:16", "")}, Fill: []Edit{fillVIP},
		Windows: `userconfig.xml:26:5: <proc>: warning: this is a Windows module (process "sqlservr.exe")` + winWarn},
}

// Filled applies the module's edits to its userconfig.xml. Each must match
// exactly once, so that a new version of the module gets a new decision.
func (m Module) Filled(data []byte) ([]byte, error) {
	for _, e := range m.Fill {
		if n := len(e.Re.FindAllIndex(data, -1)); n != 1 {
			return nil, fmt.Errorf("%s: %s matches %d times; want once", m.Key(), e.Re, n)
		}
		data = e.Re.ReplaceAllLiteral(data, []byte(e.Repl))
	}
	return data, nil
}
