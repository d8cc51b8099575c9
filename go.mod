module github.com/safekit-oss/safekit

go 1.26.8

require github.com/beevik/etree v1.8.1
