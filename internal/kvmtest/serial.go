package kvmtest

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"time"

	"github.com/safekit-oss/safekit/internal/testcluster"
)

// Boot is one boot of a counter guest as its serial log tells it.
type Boot struct {
	// Resumed is the counter the guest found on its disk when it booted.
	Resumed int
	// First and Last are the first and last values it synced; 0 when
	// none yet.
	First, Last int
	// Stopped tells that it stopped on the power button, after Last.
	Stopped bool
}

var (
	resumedRE = regexp.MustCompile(`^kvmtest: counter resumes after (\d+)$`)
	syncedRE  = regexp.MustCompile(`^synced (\d+)$`)
	stoppedRE = regexp.MustCompile(`^kvmtest: power button: stopped at (\d+)$`)
)

// ParseSerial reads the boots of a counter guest from its serial log
// (appended across boots). Only whole lines count: the guest may be in the
// middle of one. Lines the kernel garbled are skipped.
func ParseSerial(log []byte) []Boot {
	var boots []Boot
	if i := bytes.LastIndexByte(log, '\n'); i >= 0 {
		log = log[:i+1]
	} else {
		return nil
	}
	for _, line := range bytes.Split(log, []byte("\n")) {
		line = bytes.TrimRight(line, "\r")
		if m := resumedRE.FindSubmatch(line); m != nil {
			n, _ := strconv.Atoi(string(m[1]))
			boots = append(boots, Boot{Resumed: n})
			continue
		}
		if len(boots) == 0 {
			continue
		}
		b := &boots[len(boots)-1]
		if m := syncedRE.FindSubmatch(line); m != nil {
			n, _ := strconv.Atoi(string(m[1]))
			if b.First == 0 {
				b.First = n
			}
			b.Last = n
		} else if stoppedRE.Match(line) {
			b.Stopped = true
		}
	}
	return boots
}

// Boots reads the serial log of domain d on node n (NodePath: also once n
// is down); none when the file does not exist yet.
func (d *Domain) Boots(n *testcluster.Node) ([]Boot, error) {
	p, err := NodePath(n, d.Serial)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseSerial(b), nil
}

// LastSynced is the last value the guest printed as synced on node n, over
// all its boots there; 0 when none.
func (d *Domain) LastSynced(n *testcluster.Node) (int, error) {
	boots, err := d.Boots(n)
	if err != nil {
		return 0, err
	}
	last := 0
	for _, b := range boots {
		if b.Last != 0 {
			last = b.Last
		}
	}
	return last, nil
}

// WaitSynced waits until the guest on node n has printed a synced value
// greater than above, and returns the last one printed.
func (d *Domain) WaitSynced(n *testcluster.Node, above int, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		last, err := d.LastSynced(n)
		if err != nil {
			return 0, err
		}
		if last > above {
			return last, nil
		}
		if time.Now().After(deadline) {
			tail := ""
			if p, err := NodePath(n, d.Serial); err == nil {
				b, _ := os.ReadFile(p)
				tail = string(b[max(0, len(b)-2000):])
			}
			return last, fmt.Errorf("%s: domain %s printed no synced value above %d within %v (last %d)\n--- %s ---\n%s", n.Name, d.Name, above, timeout, last, d.Serial, tail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
