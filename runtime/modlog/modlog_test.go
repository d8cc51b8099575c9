package modlog

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func openStore(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "log.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustAppend(t testing.TB, s *Store, origin, level, msg string) Entry {
	t.Helper()
	e, err := s.Append(Entry{Origin: origin, Level: level, Msg: msg})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// summary renders entries as "seq:level:msg" for compact comparisons.
func summary(es []Entry) string {
	s := ""
	for i, e := range es {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%d:%s:%s", e.Seq, e.Level, e.Msg)
	}
	return s
}

func check(t *testing.T, what string, es []Entry, err error, want string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if got := summary(es); got != want {
		t.Errorf("%s:\n got %s\nwant %s", what, got, want)
	}
}

func TestMainLevels(t *testing.T) {
	for _, l := range []string{"U", "E", "C", "S"} {
		if !Main(l) {
			t.Errorf("Main(%q) = false", l)
		}
	}
	for _, l := range []string{"I", "W", "D", "", "X", "EE"} {
		if Main(l) {
			t.Errorf("Main(%q) = true", l)
		}
	}
}

func TestAppendLastAfter(t *testing.T) {
	s := openStore(t, Options{NoSync: true})
	before := time.Now()
	for i, l := range []string{"U", "D", "E", "I", "C", "W", "S", "D"} {
		e := mustAppend(t, s, "heart", l, fmt.Sprint("m", i+1))
		if e.Seq != uint64(i+1) {
			t.Fatalf("entry %d got Seq %d", i+1, e.Seq)
		}
		if e.Time.Before(before) || e.Time.After(time.Now()) {
			t.Fatalf("entry %d: Time %v not set to now", i+1, e.Time)
		}
	}

	es, err := s.Last(3, true)
	check(t, "Last(3, verbose)", es, err, "6:W:m6 7:S:m7 8:D:m8")
	es, err = s.Last(3, false)
	check(t, "Last(3, main)", es, err, "3:E:m3 5:C:m5 7:S:m7")
	es, err = s.Last(100, false)
	check(t, "Last(100, main)", es, err, "1:U:m1 3:E:m3 5:C:m5 7:S:m7")
	es, err = s.Last(0, true)
	check(t, "Last(0)", es, err, "")

	es, err = s.After(5, true, 0)
	check(t, "After(5, verbose)", es, err, "6:W:m6 7:S:m7 8:D:m8")
	es, err = s.After(1, false, 2)
	check(t, "After(1, main, 2)", es, err, "3:E:m3 5:C:m5")
	es, err = s.After(0, true, 2)
	check(t, "After(0, verbose, 2)", es, err, "1:U:m1 2:D:m2")
	es, err = s.After(8, true, 0)
	check(t, "After(8)", es, err, "")

	// The fields survive the round trip.
	when := time.Date(2026, 11, 25, 20, 42, 25, 123456789, time.Local)
	in := Entry{Time: when, Origin: "customscript", Level: "S", Msg: "Script start_prim > userlog_é.ulog"}
	if _, err := s.Append(in); err != nil {
		t.Fatal(err)
	}
	es, err = s.Last(1, false)
	if err != nil {
		t.Fatal(err)
	}
	got := es[0]
	if got.Seq != 9 || !got.Time.Equal(when) || got.Origin != in.Origin || got.Level != in.Level || got.Msg != in.Msg {
		t.Errorf("round trip: got %+v, want %+v with Seq 9", got, in)
	}
}

func TestAppendRejectsUnknownLevel(t *testing.T) {
	s := openStore(t, Options{NoSync: true})
	for _, l := range []string{"", "X", "ED", "e"} {
		if _, err := s.Append(Entry{Origin: "heart", Level: l, Msg: "m"}); err == nil {
			t.Errorf("level %q accepted", l)
		}
	}
	if es, _ := s.Last(10, true); len(es) != 0 {
		t.Errorf("rejected entries were stored: %s", summary(es))
	}
}

func TestSeqPersistedAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "heart", "E", "one")
	mustAppend(t, s, "heart", "D", "two")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if e := mustAppend(t, s, "heart", "E", "three"); e.Seq != 3 {
		t.Errorf("after reopen: Seq %d, want 3", e.Seq)
	}
	es, err := s.Last(10, true)
	check(t, "Last after reopen", es, err, "1:E:one 2:D:two 3:E:three")
}

func TestPruneKeepsNewest(t *testing.T) {
	s := openStore(t, Options{MaxEntries: 100, NoSync: true})
	for i := 1; i <= 250; i++ {
		level := "D"
		if i%5 == 0 {
			level = "E"
		}
		mustAppend(t, s, "heart", level, fmt.Sprint(i))
	}
	all, err := s.Last(1000, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 100 || all[0].Seq != 151 || all[99].Seq != 250 {
		t.Fatalf("kept %d entries, %d..%d; want 100, 151..250", len(all), all[0].Seq, all[len(all)-1].Seq)
	}
	main, err := s.Last(1000, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(main) != 20 || main[0].Seq != 155 {
		t.Errorf("main entries: kept %d from %d; want 20 from 155", len(main), main[0].Seq)
	}
	from0, err := s.After(0, true, 1)
	check(t, "After(0) after pruning", from0, err, "151:D:151")
}

func TestPruneIsAmortised(t *testing.T) {
	// 2000 entries: pruned every 20 appends.
	s := openStore(t, Options{MaxEntries: 2000, NoSync: true})
	count := func() int {
		es, err := s.Last(1e6, true)
		if err != nil {
			t.Fatal(err)
		}
		return len(es)
	}
	for i := 1; i <= 2019; i++ {
		mustAppend(t, s, "heart", "D", "x")
	}
	if n := count(); n != 2019 {
		t.Errorf("before the prune point: %d entries, want 2019", n)
	}
	mustAppend(t, s, "heart", "D", "x")
	if n := count(); n != 2000 {
		t.Errorf("at the prune point (Seq 2020): %d entries, want 2000", n)
	}
}

func TestConcurrentAppends(t *testing.T) {
	const workers, each = 8, 100
	s := openStore(t, Options{})
	sub := s.Subscribe(true, workers*each)
	defer sub.Close()

	seqs := make([][]uint64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				e, err := s.Append(Entry{Origin: "errd", Level: "D", Msg: fmt.Sprintf("w%d-%d", w, i)})
				if err != nil {
					t.Error(err)
					return
				}
				seqs[w] = append(seqs[w], e.Seq)
			}
		})
	}
	wg.Wait()

	seen := make(map[uint64]bool)
	for w, ws := range seqs {
		for i, seq := range ws {
			if seen[seq] {
				t.Fatalf("Seq %d given twice", seq)
			}
			seen[seq] = true
			if i > 0 && seq <= ws[i-1] {
				t.Errorf("worker %d: Seq %d after %d", w, seq, ws[i-1])
			}
		}
	}
	if len(seen) != workers*each {
		t.Fatalf("%d distinct Seq, want %d", len(seen), workers*each)
	}
	es, err := s.Last(1e6, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != workers*each {
		t.Fatalf("stored %d entries, want %d", len(es), workers*each)
	}
	for i, e := range es {
		if e.Seq != uint64(i+1) {
			t.Fatalf("entry %d has Seq %d", i, e.Seq)
		}
	}
	// The subscriber got them all, in Seq order, though the appends
	// returned in any order.
	for i := range workers * each {
		e := <-sub.C
		if e.Seq != uint64(i+1) {
			t.Fatalf("subscriber: entry %d has Seq %d", i, e.Seq)
		}
	}
	if n := sub.Missed(); n != 0 {
		t.Errorf("Missed = %d, want 0", n)
	}
}

func TestSlowSubscriberDoesNotBlockAppend(t *testing.T) {
	s := openStore(t, Options{NoSync: true})
	all := s.Subscribe(true, 4)
	defer all.Close()
	main := s.Subscribe(false, 4)
	defer main.Close()

	// Nobody reads: the appends must all return.
	for i := 1; i <= 100; i++ {
		level := "D"
		if i%2 == 0 {
			level = "E"
		}
		mustAppend(t, s, "heart", level, fmt.Sprint(i))
	}
	if n := all.Missed(); n != 96 {
		t.Errorf("verbose subscriber: Missed = %d, want 96", n)
	}
	if n := all.Missed(); n != 0 {
		t.Errorf("Missed did not reset: %d", n)
	}
	if n := main.Missed(); n != 46 {
		t.Errorf("main subscriber: Missed = %d, want 46 (50 main entries, 4 buffered)", n)
	}

	// The reader drains what it has, then resumes from the store.
	var got []Entry
	for range 4 {
		got = append(got, <-main.C)
	}
	check(t, "buffered", got, nil, "2:E:2 4:E:4 6:E:6 8:E:8")
	rest, err := s.After(got[3].Seq, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 46 || rest[0].Seq != 10 {
		t.Errorf("After(8, main): %d entries from %d, want 46 from 10", len(rest), rest[0].Seq)
	}

	// Once drained, the channel takes new entries again.
	e := mustAppend(t, s, "heart", "C", "new")
	if got := <-main.C; got.Seq != e.Seq {
		t.Errorf("after draining: got Seq %d, want %d", got.Seq, e.Seq)
	}
}

func TestSubscriptionClose(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "log.db"), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	a := s.Subscribe(true, 0)
	a.Close()
	a.Close()
	if _, ok := <-a.C; ok {
		t.Error("C still open after Sub.Close")
	}
	mustAppend(t, s, "heart", "E", "after close") // no send on a closed channel

	b := s.Subscribe(true, 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-b.C; ok {
		t.Error("C still open after Store.Close")
	}
	b.Close()
	if _, ok := <-s.Subscribe(true, 0).C; ok {
		t.Error("Subscribe after Store.Close: C open")
	}
	if _, err := s.Append(Entry{Origin: "heart", Level: "E", Msg: "x"}); err == nil {
		t.Error("Append after Close succeeded")
	}
}

func TestEntryString(t *testing.T) {
	e := Entry{
		Time:   time.Date(2026, 11, 25, 20, 42, 25, 123456789, time.Local),
		Origin: "heart", Level: "E", Msg: "Local state ALONE Ready",
	}
	want := "| 2026-11-25 20:42:25.123456 |        heart | E | Local state ALONE Ready"
	if got := e.String(); got != want {
		t.Errorf("String:\n got %q\nwant %q", got, want)
	}
	// A time from another zone is shown in local time.
	e.Time = e.Time.In(time.FixedZone("elsewhere", 5*3600+1800))
	if got := e.String(); got != want {
		t.Errorf("String in another zone:\n got %q\nwant %q", got, want)
	}
	long := Entry{Time: e.Time, Origin: "splitbraincheck", Level: "I", Msg: "m"}
	if got, want := long.String(), "| 2026-11-25 20:42:25.123456 | splitbraincheck | I | m"; got != want {
		t.Errorf("long origin:\n got %q\nwant %q", got, want)
	}
}

func TestUnmarshalCorrupt(t *testing.T) {
	good := (&Entry{Time: time.Unix(1, 0), Origin: "heart", Level: "E", Msg: "m"}).marshal()
	for _, b := range [][]byte{nil, {9}, good[:1], good[:3], good[:len(good)-3]} {
		if _, err := unmarshal(1, b); err == nil {
			t.Errorf("unmarshal(%v) accepted", b)
		}
	}
}
