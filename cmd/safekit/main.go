// Command safekit is the command line of a SafeKit-compatible node. See
// `safekit help`. Called as xpathGet, boundcmd, logI18nMSG or webservercfg
// (the links in SAFEBIN), it runs that special command.
package main

import (
	"os"

	"github.com/safekit-oss/safekit/cmd/internal/cli"
)

func main() {
	os.Exit(cli.MainAs(os.Args[0], os.Args[1:], os.Stdout, os.Stderr))
}
