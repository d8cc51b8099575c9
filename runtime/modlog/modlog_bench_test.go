package modlog

import (
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
)

func reportOps(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func benchStore(b *testing.B, opts Options) *Store {
	b.Helper()
	s, err := Open(filepath.Join(b.TempDir(), "log.db"), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

var benchEntry = Entry{Origin: "heart", Level: "E", Msg: "Local state ALONE Ready"}

// BenchmarkAppend is one goroutine appending durably: one fsync per entry.
func BenchmarkAppend(b *testing.B) {
	s := benchStore(b, Options{})
	for b.Loop() {
		if _, err := s.Append(benchEntry); err != nil {
			b.Fatal(err)
		}
	}
	reportOps(b)
}

// BenchmarkAppendParallel is many goroutines appending durably: they share
// fsyncs through group commit.
func BenchmarkAppendParallel(b *testing.B) {
	for _, goroutines := range []int{8, 64} {
		b.Run(fmt.Sprint("goroutines=", goroutines), func(b *testing.B) {
			s := benchStore(b, Options{})
			// RunParallel starts parallelism × GOMAXPROCS goroutines.
			b.SetParallelism(max(1, goroutines/runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Append(benchEntry); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportOps(b)
		})
	}
}

// BenchmarkLast300 reads what `safekit log` shows from a full log of 100k
// entries, one in ten of them a main message.
func BenchmarkLast300(b *testing.B) {
	s := benchStore(b, Options{NoSync: true})
	for i := range DefaultMaxEntries {
		e := Entry{Origin: "errd", Level: "D", Msg: fmt.Sprintf("Process sqlservr.exe checked (%d)", i)}
		if i%10 == 0 {
			e = benchEntry
		}
		if _, err := s.Append(e); err != nil {
			b.Fatal(err)
		}
	}
	for _, verbose := range []bool{false, true} {
		b.Run(fmt.Sprint("verbose=", verbose), func(b *testing.B) {
			for b.Loop() {
				es, err := s.Last(300, verbose)
				if err != nil || len(es) != 300 {
					b.Fatalf("Last(300) = %d entries, %v", len(es), err)
				}
			}
			reportOps(b)
		})
	}
}
