package main

import (
	"strings"
	"testing"
	"time"
)

// TestParseLog: the lines of `safekit log` at or after since, their text
// trimmed (a '|' in a message kept); other lines skipped; a line with a bad
// date an error.
func TestParseLog(t *testing.T) {
	out := `header without fields
| 2026-11-25 22:38:21.000000 |        heart | E | Local state ALONE Ready
| 2026-11-25 22:38:22.500000 |    reintegre | I | 24MB copied | 2048MB
`
	since := time.Date(2026, 11, 25, 22, 38, 22, 0, time.Local)
	got, err := parseLog(out, since)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].text != "24MB copied | 2048MB" || !got[0].at.Equal(since.Add(500*time.Millisecond)) {
		t.Errorf("since %v: %+v", since, got)
	}
	if all, err := parseLog(out, time.Time{}); err != nil || len(all) != 2 || all[0].text != "Local state ALONE Ready" {
		t.Errorf("all: %+v, %v", all, err)
	}
	if _, err := parseLog("| yesterday | heart | E | x\n", time.Time{}); err == nil || !strings.Contains(err.Error(), "yesterday") {
		t.Errorf("a bad date: %v", err)
	}
}
