package cmdlog

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func openTest(t *testing.T, maxRecords uint64) *Store {
	t.Helper()
	s, err := open(filepath.Join(t.TempDir(), "cmdlog.db"), maxRecords, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// fields renders records without their time, one per line.
func fields(rs []Record) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "%s|%s|%d|%s|%s\n", r.Kind, r.Module, r.ID, r.Op, r.Text)
	}
	return b.String()
}

func TestStartEndOrder(t *testing.T) {
	s := openTest(t, MaxRecords)
	before := time.Now()
	id1, err := s.Start(KindSafekit, "mirror", []string{"config", "-m", "mirror"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Note(KindCluster, "mirror", "I", "update cluster state"); err != nil {
		t.Fatal(err)
	}
	if err := s.End(id1, 0); err != nil {
		t.Fatal(err)
	}
	id2, err := s.Start(KindSafekit, "mirror", []string{"prim", "-m", "mirror", "-u", "admin@10.0.0.103"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.End(id2, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.Note(KindCluster, "", "IE", "x"); err == nil {
		t.Error("a note level of two letters was accepted")
	}

	rs, err := s.Last(10)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`safekit|mirror|%[1]d|START|config -m mirror
cluster|mirror|0|I|update cluster state
||%[1]d|END|0
safekit|mirror|%[2]d|START|prim -m mirror -u admin@10.0.0.103
||%[2]d|END|2
`, id1, id2)
	if got := fields(rs); got != want {
		t.Errorf("Last(10):\n%s\nwant:\n%s", got, want)
	}
	if id1 == id2 || id1 == 0 {
		t.Errorf("ids %d and %d", id1, id2)
	}
	for i, r := range rs {
		if r.Time.Before(before) || (i > 0 && r.Time.Before(rs[i-1].Time)) {
			t.Errorf("record %d: time %v out of order", i, r.Time)
		}
	}

	rs, err = s.Last(2)
	if err != nil || len(rs) != 2 || rs[0].Op != OpStart || rs[1].Op != OpEnd {
		t.Errorf("Last(2) = %v, %v; want the last START and END", rs, err)
	}
	if rs, _ := s.Last(0); len(rs) != 0 {
		t.Errorf("Last(0) = %v", rs)
	}
}

func TestIDsPersistAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cmdlog.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	id1, err := s.Start(KindSafekit, "", []string{"level"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.End(id1, 0); err != nil {
		t.Fatal(err)
	}
	id2, err := s.Start(KindSafekit, "", []string{"state"})
	if err != nil {
		t.Fatal(err)
	}
	if id2 <= id1 {
		t.Errorf("after reopen: id %d, not after %d", id2, id1)
	}
	rs, err := s.Last(10)
	if err != nil || len(rs) != 3 {
		t.Fatalf("Last after reopen: %v, %v", rs, err)
	}
}

func TestRecordString(t *testing.T) {
	at := func(us int) time.Time { return time.Date(2021, 7, 27, 14, 37, 33, us*1000, time.Local) }
	for _, c := range []struct {
		r    Record
		want string
	}{
		{Record{Time: at(205122), Kind: KindSafekit, Module: "mirror", ID: 6883, Op: OpStart, Text: "config -m mirror"},
			"| 2021-07-27 14:37:33.205122 |   safekit |   mirror |  6883 | START | config -m mirror"},
		{Record{Time: at(400513), Kind: KindCluster, Module: "mirror", Op: "I", Text: "update cluster state"},
			"| 2021-07-27 14:37:33.400513 |   cluster |   mirror |     0 |     I | update cluster state"},
		{Record{Time: at(193280), ID: 6883, Op: OpEnd, Text: "0"},
			"| 2021-07-27 14:37:33.193280 |           |          |  6883 |   END | 0"},
	} {
		if got := c.r.String(); got != c.want {
			t.Errorf("String:\n got %q\nwant %q", got, c.want)
		}
	}
}

func TestPruneKeepsNewest(t *testing.T) {
	s := openTest(t, 100)
	for i := range pruneEvery*2 - 1 {
		if err := s.Note(KindCluster, "", "I", fmt.Sprint(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	// Pruned at the 500th record; 499 written since.
	if rs, _ := s.Last(1e6); len(rs) != 100+pruneEvery-1 {
		t.Errorf("before the second prune: %d records, want %d", len(rs), 100+pruneEvery-1)
	}
	if err := s.Note(KindCluster, "", "I", fmt.Sprint(pruneEvery*2)); err != nil {
		t.Fatal(err)
	}
	rs, err := s.Last(1e6)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 100 || rs[0].Text != "901" || rs[99].Text != "1000" {
		t.Errorf("kept %d records, %s..%s; want 100, 901..1000", len(rs), rs[0].Text, rs[len(rs)-1].Text)
	}
}

func TestConcurrentCommands(t *testing.T) {
	const workers, each = 8, 25
	s, err := Open(filepath.Join(t.TempDir(), "cmdlog.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				id, err := s.Start(KindSafekit, fmt.Sprint("m", w), []string{"state", fmt.Sprint(i)})
				if err == nil {
					err = s.End(id, w)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	rs, err := s.Last(1e6)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2*workers*each {
		t.Fatalf("%d records, want %d", len(rs), 2*workers*each)
	}
	// Every END follows the START of its id, from the same worker.
	starts := make(map[uint64]string)
	for _, r := range rs {
		switch r.Op {
		case OpStart:
			if _, dup := starts[r.ID]; dup {
				t.Fatalf("id %d started twice", r.ID)
			}
			starts[r.ID] = r.Module
		case OpEnd:
			m, ok := starts[r.ID]
			if !ok {
				t.Fatalf("END of %d before its START", r.ID)
			}
			if m != "m"+r.Text {
				t.Errorf("END %d code %s for a command of %s", r.ID, r.Text, m)
			}
			delete(starts, r.ID)
		}
	}
	if len(starts) != 0 {
		t.Errorf("%d commands without END", len(starts))
	}
}

func TestUnmarshalCorrupt(t *testing.T) {
	good := (&Record{Time: time.Unix(1, 0), Kind: KindSafekit, Module: "m", ID: 7, Op: OpEnd, Text: "0"}).marshal()
	if r, err := unmarshal(good); err != nil || r.ID != 7 || r.Kind != KindSafekit || r.Module != "m" || r.Op != OpEnd || r.Text != "0" {
		t.Errorf("round trip: %+v, %v", r, err)
	}
	for _, b := range [][]byte{nil, {9}, good[:1], good[:3], good[:len(good)-5]} {
		if _, err := unmarshal(b); err == nil {
			t.Errorf("unmarshal(%v) accepted", b)
		}
	}
}
