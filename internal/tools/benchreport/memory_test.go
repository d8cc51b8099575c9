package main

import (
	"testing"
	"time"
)

func TestKBField(t *testing.T) {
	status := []byte("Name:\tsafekitd\nVmPeak:\t 1250000 kB\nVmRSS:\t   12345 kB\nThreads:\t7\n")
	if got, err := kbField(status, "VmRSS"); err != nil || got != 12345<<10 {
		t.Errorf("VmRSS = %d, %v; want %d", got, err, 12345<<10)
	}
	rollup := []byte("55d0c0a00000-7ffd5c3f2000 ---p 00000000 00:00 0   [rollup]\nRss:    9000 kB\nPss:    2048 kB\nPss_Anon:    1024 kB\n")
	if got, err := kbField(rollup, "Pss"); err != nil || got != 2048<<10 {
		t.Errorf("Pss = %d, %v; want %d", got, err, 2048<<10)
	}
	if _, err := kbField(status, "Pss"); err == nil {
		t.Error("a missing field gives no error")
	}
	if _, err := kbField([]byte("VmRSS: many pages\n"), "VmRSS"); err == nil {
		t.Error("a malformed field gives no error")
	}
}

func TestMedian(t *testing.T) {
	xs := []time.Duration{5, 1, 4, 2, 3}
	if got := median(xs); got != 3 {
		t.Errorf("median = %d; want 3", got)
	}
	if xs[0] != 5 {
		t.Error("median sorted its argument")
	}
}
