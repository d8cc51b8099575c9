module github.com/safekit-oss/safekit

go 1.26.8

require (
	github.com/beevik/etree v1.8.1
	github.com/cockroachdb/datadriven v1.0.3
	github.com/gorilla/mux v1.8.1
	github.com/rogpeppe/go-internal v1.16.0
	github.com/sirupsen/logrus v1.10.2
	go.etcd.io/bbolt v1.5.0
)

require (
	github.com/pmezard/go-difflib v1.0.0 // indirect
	golang.org/x/sys v0.45.0 // indirect
	golang.org/x/tools v0.36.0 // indirect
)
