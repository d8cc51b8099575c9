package rfs

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/safekit-oss/safekit/safe"
)

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestFUSEReplicatesEveryOperation runs each mutating operation through
// the primary's mount and compares both trees after each.
func TestFUSEReplicatesEveryOperation(t *testing.T) {
	p := newPair(t, pairOpts{})
	a := p.a.dir
	writeFile(t, filepath.Join(a, "before"), []byte("written while alone"))
	p.resync(false)
	compareTrees(t, p.a.backing(), p.b.backing())

	steps := []struct {
		name string
		do   func() error
	}{
		{"create+write", func() error { return os.WriteFile(filepath.Join(a, "f1"), []byte("hello"), 0o640) }},
		{"write at offsets", func() error {
			f, err := os.OpenFile(filepath.Join(a, "f1"), os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := f.WriteAt(randBytes(3<<20), 1<<20); err != nil {
				return err
			}
			_, err = f.WriteAt([]byte("mid"), 2)
			return err
		}},
		{"append", func() error {
			f, err := os.OpenFile(filepath.Join(a, "f1"), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Write([]byte("tail"))
			return err
		}},
		{"fsync and fdatasync", func() error {
			f, err := os.OpenFile(filepath.Join(a, "f1"), os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			f.WriteAt([]byte("x"), 0)
			if err := f.Sync(); err != nil {
				return err
			}
			return unix.Fdatasync(int(f.Fd()))
		}},
		{"truncate down", func() error { return os.Truncate(filepath.Join(a, "f1"), 1000) }},
		{"truncate up (sparse)", func() error { return os.Truncate(filepath.Join(a, "f1"), 64<<20) }},
		{"chmod", func() error { return os.Chmod(filepath.Join(a, "f1"), 0o604) }},
		{"chown", func() error { return os.Lchown(filepath.Join(a, "f1"), 1234, 5678) }},
		{"utimes", func() error {
			return os.Chtimes(filepath.Join(a, "f1"), time.Unix(1000000, 5), time.Unix(2000000, 7))
		}},
		{"sparse write far", func() error {
			f, err := os.Create(filepath.Join(a, "sparse"))
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt(randBytes(8192), 256<<20)
			return err
		}},
		{"fallocate modes", func() error {
			f, err := os.OpenFile(filepath.Join(a, "alloc"), os.O_RDWR|os.O_CREATE, 0o644)
			if err != nil {
				return err
			}
			defer f.Close()
			fd := int(f.Fd())
			if _, err := f.WriteAt(randBytes(4<<20), 0); err != nil {
				return err
			}
			if err := unix.Fallocate(fd, 0, 4<<20, 1<<20); err != nil {
				return err
			}
			if err := unix.Fallocate(fd, unix.FALLOC_FL_KEEP_SIZE, 5<<20, 1<<20); err != nil {
				return err
			}
			if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 1<<20, 1<<20); err != nil {
				return err
			}
			// The kernel's FUSE client forwards only these modes; the
			// others get EOPNOTSUPP before reaching the daemon.
			if err := unix.Fallocate(fd, unix.FALLOC_FL_ZERO_RANGE, 3<<20, 4096); err != nil && err != unix.EOPNOTSUPP {
				return err
			}
			for _, m := range []uint32{unix.FALLOC_FL_COLLAPSE_RANGE, unix.FALLOC_FL_INSERT_RANGE} {
				if err := unix.Fallocate(fd, m, 0, 4096); err != nil && err != unix.EOPNOTSUPP {
					return err
				}
			}
			return nil
		}},
		{"mkdir", func() error { return os.MkdirAll(filepath.Join(a, "d1", "d2"), 0o750) }},
		{"mknod fifo", func() error { return syscall.Mkfifo(filepath.Join(a, "d1", "fifo"), 0o600) }},
		{"mknod char", func() error {
			return syscall.Mknod(filepath.Join(a, "d1", "null"), syscall.S_IFCHR|0o666, int(unix.Mkdev(1, 3)))
		}},
		{"symlink", func() error { return os.Symlink("../f1", filepath.Join(a, "d1", "link")) }},
		{"lchown symlink", func() error { return os.Lchown(filepath.Join(a, "d1", "link"), 42, 43) }},
		{"setxattr", func() error { return unix.Setxattr(filepath.Join(a, "f1"), "user.k", []byte("v"), 0) }},
		{"setxattr dir", func() error { return unix.Setxattr(filepath.Join(a, "d1"), "user.d", []byte("dv"), 0) }},
		{"removexattr", func() error { return unix.Removexattr(filepath.Join(a, "d1"), "user.d") }},
		{"rename", func() error { return os.Rename(filepath.Join(a, "f1"), filepath.Join(a, "d1", "f1r")) }},
		{"rename over", func() error {
			writeFile(t, filepath.Join(a, "over"), []byte("new"))
			return os.Rename(filepath.Join(a, "over"), filepath.Join(a, "before"))
		}},
		{"rename noreplace", func() error {
			err := unix.Renameat2(unix.AT_FDCWD, filepath.Join(a, "before"), unix.AT_FDCWD, filepath.Join(a, "sparse"), unix.RENAME_NOREPLACE)
			if err != unix.EEXIST {
				t.Errorf("RENAME_NOREPLACE over a file: %v, want EEXIST", err)
			}
			return unix.Renameat2(unix.AT_FDCWD, filepath.Join(a, "before"), unix.AT_FDCWD, filepath.Join(a, "nr"), unix.RENAME_NOREPLACE)
		}},
		{"rename exchange", func() error {
			return unix.Renameat2(unix.AT_FDCWD, filepath.Join(a, "nr"), unix.AT_FDCWD, filepath.Join(a, "d1"), unix.RENAME_EXCHANGE)
		}},
		{"rename dir", func() error { return os.Rename(filepath.Join(a, "nr"), filepath.Join(a, "moved")) }},
		{"unlink", func() error { return os.Remove(filepath.Join(a, "moved", "fifo")) }},
		{"rmdir", func() error { return os.Remove(filepath.Join(a, "moved", "d2")) }},
		{"suid cleared by write", func() error {
			pth := filepath.Join(a, "suid")
			writeFile(t, pth, []byte("#!/bin/sh\n"))
			os.Chmod(pth, 0o6755)
			os.Chown(pth, 0, 0)
			// A write by an unprivileged user clears suid/sgid.
			cmd := exec.Command("sh", "-c", "echo more >> "+pth)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 0, Gid: 0}}
			os.Chmod(pth, 0o6757)
			cmd.SysProcAttr.Credential.Uid = 65534
			cmd.SysProcAttr.Credential.Gid = 65534
			if out, err := cmd.CombinedOutput(); err != nil {
				return &os.PathError{Op: "write as nobody: " + string(out), Path: pth, Err: err}
			}
			fi, _ := os.Stat(pth)
			if fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 {
				t.Errorf("suid/sgid not cleared by an unprivileged write: %v", fi.Mode())
			}
			return nil
		}},
		{"many small files", func() error {
			for i := 0; i < 50; i++ {
				if err := os.WriteFile(filepath.Join(a, "moved", "s"+string(rune('a'+i%26))+string(rune('a'+i/26))), randBytes(100+i), 0o644); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		p.settle()
		if diffs := treeDiff(p.a.backing(), p.b.backing()); len(diffs) > 0 {
			t.Fatalf("after %s, trees differ:\n%v", s.name, diffs)
		}
	}
	if n := p.a.r.Stats().Writes; n == 0 {
		t.Fatal("no WRITE reached the daemon: kernel passthrough is back?")
	}
}

// TestFUSEPassthroughGuard asserts that writes through the mount reach
// the replication code: kernel passthrough (on by default in go-fuse as
// root) would bypass it silently.
func TestFUSEPassthroughGuard(t *testing.T) {
	p := newPair(t, pairOpts{})
	p.resync(false)
	before := p.a.r.Stats().Writes
	data := randBytes(1 << 20)
	f, err := os.Create(filepath.Join(p.a.dir, "g"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		f.Write(data)
	}
	f.Close()
	if got := p.a.r.Stats().Writes - before; got < 4 {
		t.Fatalf("%d WRITE requests reached the daemon for 4 MiB written, want >= 4", got)
	}
	p.settle()
	b, _ := os.ReadFile(filepath.Join(p.b.backing(), "g"))
	if !bytes.Equal(b[3<<20:], data) {
		t.Fatal("the secondary does not have the data")
	}
}

// TestFUSESecondaryReadOnly: the secondary's mount refuses writes (EROFS)
// and shows the replicated data; roles switch without unmounting.
func TestFUSESecondaryReadOnly(t *testing.T) {
	p := newPair(t, pairOpts{})
	p.resync(false)
	writeFile(t, filepath.Join(p.a.dir, "f"), []byte("data"))
	p.settle()
	b := p.b.dir
	if got, err := os.ReadFile(filepath.Join(b, "f")); err != nil || string(got) != "data" {
		t.Fatalf("read through the secondary's mount: %q %v", got, err)
	}
	for name, op := range map[string]func() error{
		"create":   func() error { return os.WriteFile(filepath.Join(b, "new"), nil, 0o644) },
		"open rw":  func() error { _, err := os.OpenFile(filepath.Join(b, "f"), os.O_RDWR, 0); return err },
		"truncate": func() error { return os.Truncate(filepath.Join(b, "f"), 0) },
		"mkdir":    func() error { return os.Mkdir(filepath.Join(b, "d"), 0o755) },
		"unlink":   func() error { return os.Remove(filepath.Join(b, "f")) },
		"rename":   func() error { return os.Rename(filepath.Join(b, "f"), filepath.Join(b, "g")) },
		"chmod":    func() error { return os.Chmod(filepath.Join(b, "f"), 0o600) },
		"setxattr": func() error { return unix.Setxattr(filepath.Join(b, "f"), "user.x", []byte("1"), 0) },
		"symlink":  func() error { return os.Symlink("f", filepath.Join(b, "l")) },
	} {
		if err := op(); !isErrno(err, syscall.EROFS) {
			t.Errorf("%s on the secondary: %v, want EROFS", name, err)
		}
	}
	// Swap without unmounting: a leaves primary, b takes over.
	if err := p.a.r.SetRole(Secondary); err != nil {
		t.Fatal(err)
	}
	if err := p.b.r.SetRole(Primary); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b, "f"), []byte("from b"), 0o644); err != nil {
		t.Fatalf("write on the new primary: %v", err)
	}
	if err := os.WriteFile(filepath.Join(p.a.dir, "f"), []byte("x"), 0o644); !isErrno(err, syscall.EROFS) {
		t.Fatalf("write on the new secondary: %v, want EROFS", err)
	}
}

// TestUnmountStopsUsersAndCleansStaleMount: a process holding a file open
// under the directory is stopped at unmount; a mount left by a dead
// process (ENOTCONN) is cleaned at the next mount.
func TestUnmountStopsUsersAndCleansStaleMount(t *testing.T) {
	needFUSE(t)
	root := t.TempDir()
	n := newNode(t, root, "a", pairOpts{})
	n.open(t)
	if err := n.r.Mount(Primary); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "exec 3>"+filepath.Join(n.dir, "held")+"; trap '' TERM; sleep 60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the holder to open its file", func() bool { return len(users(n.dir)) > 0 })
	start := time.Now()
	termGrace = time.Second
	defer func() { termGrace = 5 * time.Second }()
	if err := n.r.Unmount(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if !n.logged("sending SIGTERM") || !n.logged("sending SIGKILL") || !n.logged("(pid ") {
		t.Fatalf("the log does not name the processes stopped: %v", n.log)
	}
	if fi, err := os.Lstat(n.dir); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("symlink not restored: %v %v", fi, err)
	}
	t.Logf("unmount with a TERM-resistant holder took %v", time.Since(start))

	// A dead mount: a process that mounted is killed.
	n.r.Close()
	helper := exec.Command(os.Args[0], "-test.run=^TestHelperMountAndHang$")
	helper.Env = append(os.Environ(), "RFS_HELPER_DIR="+n.dir, "RFS_HELPER_STATE="+n.state)
	out, _ := helper.StdoutPipe()
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "mounted" {
		t.Fatalf("helper: %q %v", buf, err)
	}
	helper.Process.Kill()
	helper.Wait()
	if _, err := os.ReadDir(n.dir); !isErrno(err, syscall.ENOTCONN) {
		t.Fatalf("after the crash: %v, want ENOTCONN", err)
	}
	n.open(t)
	if err := n.r.Mount(Primary); err != nil {
		t.Fatalf("mount over a dead mount: %v", err)
	}
	writeFile(t, filepath.Join(n.dir, "after"), []byte("ok"))
	if err := n.r.Unmount(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(n.backing(), "after")); err != nil || string(b) != "ok" {
		t.Fatalf("write after the remount: %q %v", b, err)
	}
	if st := n.r.st.get(); !st.Clean {
		t.Fatal("state not clean after a clean unmount")
	}
}

// TestHelperMountAndHang is run as a separate process by the test above.
func TestHelperMountAndHang(t *testing.T) {
	dir := os.Getenv("RFS_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	r, err := Open(Config{Module: "m", ID: 1, Dirs: reps(dir), StateDir: os.Getenv("RFS_HELPER_STATE")})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Mount(Primary); err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("mounted")
	time.Sleep(time.Minute)
}

// TestNotReplicatedAndToCheck: excluded entries stay on the primary;
// moving an entry across the boundary removes it from, or sends it whole
// to, the secondary; a missing <tocheck> stops the start.
func TestNotReplicatedAndToCheck(t *testing.T) {
	p := newPair(t, pairOpts{notrep: []safe.NotReplicated{{Path: "tmp"}, {RegexPath: `.*\.swp$`}}})
	a, b := p.a.dir, p.b.backing()
	os.Mkdir(filepath.Join(a, "tmp"), 0o755)
	writeFile(t, filepath.Join(a, "tmp", "scratch"), randBytes(3<<20))
	writeFile(t, filepath.Join(a, "edit.swp"), []byte("swap"))
	writeFile(t, filepath.Join(a, "keep"), []byte("keep"))
	p.resync(false)
	writeFile(t, filepath.Join(a, "tmp", "later"), []byte("later"))
	p.settle()
	for _, n := range []string{"tmp/scratch", "tmp/later", "edit.swp"} {
		if _, err := os.Lstat(filepath.Join(b, n)); !os.IsNotExist(err) {
			t.Errorf("%s is excluded but reached the secondary (%v)", n, err)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(b, "keep")); string(got) != "keep" {
		t.Fatal("keep did not reach the secondary")
	}
	// Moved in: sent whole. Moved out: removed.
	if err := os.Rename(filepath.Join(a, "tmp", "scratch"), filepath.Join(a, "scratch")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(a, "keep"), filepath.Join(a, "tmp", "keep")); err != nil {
		t.Fatal(err)
	}
	p.settle()
	if !sameContent(filepath.Join(p.a.backing(), "scratch"), filepath.Join(b, "scratch")) {
		t.Error("a file moved into the replicated tree did not reach the secondary whole")
	}
	if _, err := os.Lstat(filepath.Join(b, "keep")); !os.IsNotExist(err) {
		t.Error("a file moved out of the replicated tree is still on the secondary")
	}

	// <tocheck>.
	root := t.TempDir()
	n := newNode(t, root, "c", pairOpts{})
	n.cfg.Dirs[0].ToCheck = []string{"mounted/marker"}
	n.open(t)
	err := n.r.Mount(Primary)
	if err == nil || !strings.Contains(err.Error(), "mounted/marker") {
		t.Fatalf("mount with a missing tocheck: %v", err)
	}
	os.MkdirAll(filepath.Join(n.backing(), "mounted"), 0o755)
	writeFile(t, filepath.Join(n.backing(), "mounted", "marker"), nil)
	if err := n.r.Mount(Primary); err != nil {
		t.Fatal(err)
	}
}
