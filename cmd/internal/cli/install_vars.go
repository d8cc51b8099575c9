package cli

func init() {
	register(&command{
		name:  "-p",
		usage: "-p",
		help:  "print the installation variables (SAFE, SAFEVAR...)",
		flags: map[string]bool{},
		run: func(e *Env, a *args) int {
			e.printf("SAFE=%q\nSAFEBIN=%q\nSAFEVAR=%q\n", e.Roots.SAFE, e.Roots.SAFEBIN(), e.Roots.SAFEVAR)
			return ExitOK
		},
	})
}
