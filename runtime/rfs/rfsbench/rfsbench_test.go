package rfsbench

import (
	"context"
	"os"
	"testing"

	"github.com/safekit-oss/safekit/internal/testenv"
)

// BenchmarkReplicatedWrites reports raw and replicated figures as
// metrics (go test -bench . -benchtime 1x ./runtime/rfs/rfsbench).
func BenchmarkReplicatedWrites(b *testing.B) {
	testenv.NeedRoot(b)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testenv.Need(b, "/dev/fuse")
	}
	for _, async := range []string{"second", "none"} {
		b.Run("async="+async, func(b *testing.B) {
			for range b.N {
				r, err := Measure(context.Background(), Options{Async: async})
				if err != nil {
					b.Fatal(err)
				}
				b.Log(r)
				b.ReportMetric(r.SeqRaw, "raw-MiB/s")
				b.ReportMetric(r.SeqRepl, "repl-MiB/s")
				b.ReportMetric(float64(r.SyncRawP50.Microseconds()), "raw-p50-µs")
				b.ReportMetric(float64(r.SyncReplP50.Microseconds()), "repl-p50-µs")
				b.ReportMetric(float64(r.SyncRawP99.Microseconds()), "raw-p99-µs")
				b.ReportMetric(float64(r.SyncReplP99.Microseconds()), "repl-p99-µs")
			}
		})
	}
}
