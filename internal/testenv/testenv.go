// Package testenv locates what tests need outside the repository and decides
// when a test may skip: elsewhere with a printed reason, never in CI.
package testenv

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// InCI tells whether the tests run in CI (CI=true), where nothing may skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// RepoRoot is the directory that holds go.mod.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// CorpusDir returns the compat corpus (shared/compat-corpus, next to the
// repository, or $SAFEKIT_CORPUS). Without it the test fails in CI and skips
// elsewhere, saying why.
func CorpusDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("SAFEKIT_CORPUS")
	if dir == "" {
		dir = filepath.Join(RepoRoot(), "..", "shared", "compat-corpus")
	}
	if _, err := os.Stat(filepath.Join(dir, "modules")); err != nil {
		Need(t, "the compat corpus at "+dir+" (set SAFEKIT_CORPUS)")
	}
	return dir
}

// Need skips the test outside CI, printing what is missing, and fails it in
// CI.
func Need(t testing.TB, what string) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true and this test needs %s", what)
	}
	t.Skipf("skipped: needs %s", what)
}

// NeedRoot requires uid 0.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Need(t, "root")
	}
}
