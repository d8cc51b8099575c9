// Package clusterconf owns SAFEVAR/cluster on disk: cluster.xml, the
// cluster key (cluster.key) and the lock flag (cluster.lock). It gives the
// key to the code that encrypts cluster traffic (Key), the node of
// cluster.xml this machine is (FindNode), the address and URL at which the
// other nodes are reached (CommandAddr, BaseURL), the signature and date that
// `safekit cluster confinfo` shows, and the bundle of these files that
// `safekit -G` sends to every node and `safekit cluster config file.zip`
// applies.
package clusterconf

import (
	"archive/zip"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/safekit-oss/safekit/internal/atomicfile"
	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/safe"
)

// Files of SAFEVAR/cluster.
const (
	XMLName  = "cluster.xml"
	KeyName  = "cluster.key"
	LockName = "cluster.lock"
)

// KeySize is the size of the cluster key in bytes (its file holds it in
// hex).
const KeySize = 32

// MaxBundle bounds the size of a bundle, compressed and expanded (a
// cluster.xml is a few kilobytes).
const MaxBundle = 1 << 20

// KeyPath is SAFEVAR/cluster/cluster.key.
func KeyPath(r layout.Roots) string { return filepath.Join(r.ClusterDir(), KeyName) }

// LockPath is SAFEVAR/cluster/cluster.lock.
func LockPath(r layout.Roots) string { return filepath.Join(r.ClusterDir(), LockName) }

// Key returns the cluster key of this node, or nil when there is none
// (cluster traffic is then not encrypted).
func Key(r layout.Roots) ([]byte, error) {
	data, err := os.ReadFile(KeyPath(r))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	key, err := decodeKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", KeyPath(r), err)
	}
	return key, nil
}

func decodeKey(data []byte) ([]byte, error) {
	key, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(key) != KeySize {
		return nil, fmt.Errorf("not a key of %d hex digits: make a new one with safekit cluster genkey (then safekit -H \"*\" -G)", 2*KeySize)
	}
	return key, nil
}

// NewKey returns the content of a new key file.
func NewKey() ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return []byte(hex.EncodeToString(key) + "\n"), nil
}

// GenKey writes a new cluster key (mode 0600).
func GenKey(r layout.Roots) error {
	data, err := NewKey()
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(KeyPath(r), data, 0o600)
}

// DelKey removes the cluster key; the date of the configuration becomes
// now.
func DelKey(r layout.Roots) error {
	if err := os.Remove(KeyPath(r)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	now := time.Now()
	if err := os.Chtimes(r.ClusterXML(), now, now); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Locked tells whether `safekit cluster config` is locked.
func Locked(r layout.Roots) bool {
	_, err := os.Stat(LockPath(r))
	return err == nil
}

// SetLocked sets or clears the lock flag.
func SetLocked(r layout.Roots, on bool) error {
	if !on {
		if err := os.Remove(LockPath(r)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	return atomicfile.WriteFile(LockPath(r), []byte("1\n"), 0o644)
}

// Info is what `safekit cluster confinfo` shows of this node.
type Info struct {
	// Configured: there is a cluster.xml.
	Configured bool
	// Signature is the sha256 of cluster.xml and the key, in hex: equal on
	// every node when the configuration is.
	Signature string
	// Date of the configuration: the newest of cluster.xml and the key,
	// which -G carries to the other nodes.
	Date   time.Time
	Locked bool
	// Keyed: there is a cluster key.
	Keyed bool
}

// ReadInfo returns the Info of this node.
func ReadInfo(r layout.Roots) (Info, error) {
	info := Info{Locked: Locked(r)}
	xml, err := os.ReadFile(r.ClusterXML())
	if errors.Is(err, os.ErrNotExist) {
		return info, nil
	}
	if err != nil {
		return info, err
	}
	info.Configured = true
	st, err := os.Stat(r.ClusterXML())
	if err != nil {
		return info, err
	}
	info.Date = st.ModTime()
	key, err := os.ReadFile(KeyPath(r))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return info, err
	}
	if err == nil {
		info.Keyed = true
		if st, err := os.Stat(KeyPath(r)); err == nil && st.ModTime().After(info.Date) {
			info.Date = st.ModTime()
		}
	}
	info.Signature = Signature(xml, key)
	return info, nil
}

// Signature is the signature of a configuration: cluster.xml and the key
// file (its hex digits, without spaces).
func Signature(xml, key []byte) string {
	h := sha256.New()
	h.Write(xml)
	h.Write([]byte{0})
	h.Write([]byte(strings.TrimSpace(string(key))))
	return hex.EncodeToString(h.Sum(nil))
}

// Bundle is the content of SAFEVAR/cluster that `safekit -G` distributes.
type Bundle struct {
	XML []byte
	// Key is the key file, nil when there is none.
	Key    []byte
	Locked bool
	// Date is the date of the configuration, kept on every node.
	Date time.Time
}

// Collect reads the bundle of this node.
func Collect(r layout.Roots) (*Bundle, error) {
	xml, err := os.ReadFile(r.ClusterXML())
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no cluster configuration on this node (%s): write one (safekit cluster create IP1 IP2) and apply it with safekit cluster config", r.ClusterXML())
	}
	if err != nil {
		return nil, err
	}
	info, err := ReadInfo(r)
	if err != nil {
		return nil, err
	}
	b := &Bundle{XML: xml, Locked: info.Locked, Date: info.Date}
	key, err := os.ReadFile(KeyPath(r))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err == nil {
		b.Key = key
	}
	return b, nil
}

// Zip packs the bundle: cluster.xml, cluster.key and cluster.lock when they
// are set, with the date of the configuration.
func (b *Bundle) Zip() ([]byte, error) {
	type entry struct {
		name string
		data []byte
		mode os.FileMode
	}
	files := []entry{{XMLName, b.XML, 0o644}}
	if b.Key != nil {
		files = append(files, entry{KeyName, b.Key, 0o600})
	}
	if b.Locked {
		files = append(files, entry{LockName, []byte("1\n"), 0o644})
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		h := &zip.FileHeader{Name: f.name, Method: zip.Deflate, Modified: b.Date}
		h.SetMode(f.mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ReadZip reads a bundle: the data of Zip, or a cluster.zip given to
// `safekit cluster config` (files may be in a folder of the zip).
func ReadZip(data []byte) (*Bundle, error) {
	if len(data) > MaxBundle {
		return nil, fmt.Errorf("cluster bundle of %d bytes: at most %d", len(data), MaxBundle)
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("not a zip file: %w", err)
	}
	b := &Bundle{}
	seen := map[string]bool{}
	budget := int64(MaxBundle)
	for _, f := range zr.File {
		if f.FileInfo().IsDir() {
			continue
		}
		name := f.Name[strings.LastIndex(f.Name, "/")+1:]
		if name != XMLName && name != KeyName && name != LockName {
			return nil, fmt.Errorf("unexpected file %q in the cluster bundle: it holds %s, and %s and %s when they are set", f.Name, XMLName, KeyName, LockName)
		}
		if seen[name] {
			return nil, fmt.Errorf("%s appears twice in the cluster bundle", name)
		}
		seen[name] = true
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		content, err := io.ReadAll(io.LimitReader(rc, budget+1))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		budget -= int64(len(content))
		if budget < 0 {
			return nil, fmt.Errorf("cluster bundle expands beyond %d bytes", MaxBundle)
		}
		switch name {
		case XMLName:
			b.XML = content
			b.Date = f.Modified
		case KeyName:
			b.Key = content
		case LockName:
			b.Locked = true
		}
	}
	if b.XML == nil {
		return nil, fmt.Errorf("the cluster bundle has no %s", XMLName)
	}
	return b, nil
}

// Check validates the bundle with the same code as `safekit cluster
// confcheck`: the diagnostics of cluster.xml (positioned in file) and
// whether the key is one.
func (b *Bundle) Check(file string) (*safe.Cluster, safe.Diagnostics, error) {
	cl, diags := safe.ParseCluster(b.XML, file)
	var err error
	if diags.HasErrors() {
		err = fmt.Errorf("%s: %d error(s)", file, len(diags.Errors()))
	}
	if b.Key != nil {
		if _, kerr := decodeKey(b.Key); kerr != nil {
			err = errors.Join(err, fmt.Errorf("%s: %w", KeyName, kerr))
		}
	}
	return cl, diags, err
}

// Apply writes the bundle into SAFEVAR/cluster, each file atomically, with
// the date of the configuration; a key or lock absent from the bundle is
// removed. Check it first.
func Apply(r layout.Roots, b *Bundle) error {
	date := b.Date
	if date.IsZero() {
		date = time.Now()
	}
	if b.Key != nil {
		if err := atomicfile.WriteFileTime(KeyPath(r), b.Key, 0o600, date); err != nil {
			return err
		}
	} else if err := os.Remove(KeyPath(r)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := SetLocked(r, b.Locked); err != nil {
		return err
	}
	return atomicfile.WriteFileTime(r.ClusterXML(), b.XML, 0o644, date)
}

// Remove deletes the cluster configuration, key and lock of this node.
func Remove(r layout.Roots) error {
	for _, p := range []string{r.ClusterXML(), KeyPath(r), LockPath(r)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
