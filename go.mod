module github.com/safekit-oss/safekit

go 1.26.8

require github.com/beevik/etree v1.8.1

require (
	github.com/cockroachdb/datadriven v1.0.3 // indirect
	github.com/pmezard/go-difflib v1.0.0 // indirect
)
