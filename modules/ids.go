package modules

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/safekit-oss/safekit/internal/atomicfile"
)

// MaxID is the largest module id. Ports derive from it (rfs 5600+(id-1)*4
// must stay below 65536), and SafeKit numbers modules from 1.
const MaxID = 9999

// The ids of a node live in SAFE/private/modules.ids, one "name id" per line,
// so that they survive a re-install and the deletion of SAFE/modules/AM that
// the console does when it re-applies a configuration.

func (m *Manager) readIDs() (map[string]int, error) {
	ids := map[string]int{}
	f, err := os.Open(m.Roots.IDsFile())
	if errors.Is(err, os.ErrNotExist) {
		return ids, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if len(fields) != 2 {
			return nil, fmt.Errorf("%s:%d: expected \"name id\"", m.Roots.IDsFile(), line)
		}
		id, err := strconv.Atoi(fields[1])
		if err != nil || id < 1 {
			return nil, fmt.Errorf("%s:%d: invalid id %q", m.Roots.IDsFile(), line, fields[1])
		}
		ids[fields[0]] = id
	}
	return ids, sc.Err()
}

func (m *Manager) writeIDs(ids map[string]int) error {
	names := make([]string, 0, len(ids))
	for n := range ids {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("# module ids of this node (safekit module listid); ports derive from them\n")
	for _, n := range names {
		fmt.Fprintf(&b, "%s %d\n", n, ids[n])
	}
	return atomicfile.WriteFile(m.Roots.IDsFile(), []byte(b.String()), 0o644)
}

// lockIDs serialises installs and uninstalls on this node.
func (m *Manager) lockIDs() (func(), error) {
	p := m.Roots.IDsFile() + ".lock"
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// pickID chooses the id of module name: want if given (and free), else the
// id it already has, else the smallest free one.
func pickID(ids map[string]int, name string, want int) (int, error) {
	owner := map[int]string{}
	for n, id := range ids {
		owner[id] = n
	}
	if want != 0 {
		if want < 1 || want > MaxID {
			return 0, fmt.Errorf("invalid module id %d: use 1 to %d", want, MaxID)
		}
		if o, used := owner[want]; used && o != name {
			return 0, fmt.Errorf("module id %d is already used by module %s on this node: choose another with -M", want, o)
		}
		return want, nil
	}
	if id, ok := ids[name]; ok {
		return id, nil
	}
	for id := 1; id <= MaxID; id++ {
		if _, used := owner[id]; !used {
			return id, nil
		}
	}
	return 0, errors.New("no free module id")
}

// ID returns the id of module name (0 if it has none).
func (m *Manager) ID(name string) (int, error) {
	ids, err := m.readIDs()
	if err != nil {
		return 0, err
	}
	return ids[name], nil
}
