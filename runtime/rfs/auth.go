package rfs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"time"
)

// The handshake, before the stream. The secondary connects to the
// primary's replication port:
//
//	primary   -> challenge{module id, nonce P}
//	secondary -> hello{module id, nonce S, purpose, its synchronisation
//	             state, MAC(key, "c", P, S, binding, hello fields)}
//	primary   -> welcome{mode or error, MAC(key, "s", S, P, binding, fields)}
//
// Each side proves it has the cluster key without sending it, and the
// MACs cover the claims (a man in the middle cannot turn a bitmap
// reintegration into a wrong one). With TLS, both ends use throwaway
// certificates and the MACs cover the TLS session's exported key
// (binding), so that the key authenticates the TLS channel itself. Without
// TLS, frames after the handshake are not authenticated one by one.

const magic = "SKRFS1"

const handshakeTimeout = 15 * time.Second

type challenge struct {
	Magic  string `json:"magic"`
	Module int    `json:"module"`
	Nonce  []byte `json:"nonce"`
}

type hello struct {
	Magic   string `json:"magic"`
	Module  int    `json:"module"`
	Nonce   []byte `json:"nonce"`
	Purpose string `json:"purpose"` // "resync" or "verify"
	Claim   claim  `json:"claim"`
	MAC     []byte `json:"mac,omitempty"`
}

// claim is what the secondary says of its copy.
type claim struct {
	Epoch    string `json:"epoch"`
	LastSync int64  `json:"last_sync"`
	// Clean: the copy is exactly the epoch's state plus what the primary
	// was told was applied; its bitmaps then apply.
	Clean bool `json:"clean"`
	// Full: a full copy is asked (fullsync).
	Full bool   `json:"full"`
	Zone int64  `json:"zone"`
	Dirs int    `json:"dirs"`
	Node string `json:"node,omitempty"`
	// Since (unix ns, secondforce -d): copy whole the files modified
	// since, leave the others.
	Since int64 `json:"since,omitempty"`
	// External is the uid of an external synchronisation (rfssync): the
	// copy is a restored backup, every file is compared by checksums.
	External string `json:"external,omitempty"`
}

type welcome struct {
	Mode  string `json:"mode,omitempty"`
	Async string `json:"async,omitempty"`
	Err   string `json:"err,omitempty"`
	MAC   []byte `json:"mac,omitempty"`
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(binary.BigEndian.AppendUint32(nil, uint32(len(b))))
	if err == nil {
		_, err = w.Write(b)
	}
	return err
}

func readJSON(r io.Reader, v any) error {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return err
	}
	l := binary.BigEndian.Uint32(n[:])
	if l > 1<<20 {
		return errors.New("handshake message too large: not a replication peer")
	}
	b := make([]byte, l)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func mac(key []byte, parts ...[]byte) []byte {
	h := hmac.New(sha256.New, key)
	for _, p := range parts {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(p))))
		h.Write(p)
	}
	return h.Sum(nil)
}

func nonce() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}

// binding is the TLS exported key, nil without TLS.
func binding(c net.Conn) []byte {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil
	}
	cs := tc.ConnectionState()
	b, err := cs.ExportKeyingMaterial("safekit rfs", nil, 32)
	if err != nil {
		return nil
	}
	return b
}

func selfCert() (tls.Certificate, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}, nil
}

func tlsConfig() (*tls.Config, error) {
	cert, err := selfCert()
	if err != nil {
		return nil, err
	}
	// The peer's certificate is throwaway: it is authenticated by the key
	// through the exported binding, not by a CA.
	return &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true,
		MinVersion: tls.VersionTLS13, ClientAuth: tls.RequireAnyClientCert}, nil
}

func (h *hello) macInput(p []byte, bind []byte) [][]byte {
	c, _ := json.Marshal(h.Claim)
	return [][]byte{[]byte("c"), []byte(magic), p, h.Nonce, bind, []byte(h.Purpose), c}
}

func (w *welcome) macInput(s, p, bind []byte) [][]byte {
	return [][]byte{[]byte("s"), []byte(magic), s, p, bind, []byte(w.Mode), []byte(w.Async), []byte(w.Err)}
}

// serverHandshake runs the primary's side; decide chooses the answer.
func serverHandshake(c net.Conn, cfg *Config, decide func(h *hello) welcome) (net.Conn, *hello, welcome, error) {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	if cfg.TLS {
		tc, err := tlsConfig()
		if err != nil {
			return nil, nil, welcome{}, err
		}
		t := tls.Server(c, tc)
		if err := t.Handshake(); err != nil {
			return nil, nil, welcome{}, fmt.Errorf("TLS handshake with %s: %w", c.RemoteAddr(), err)
		}
		c = t
	}
	p := nonce()
	if err := writeJSON(c, challenge{Magic: magic, Module: cfg.ID, Nonce: p}); err != nil {
		return nil, nil, welcome{}, err
	}
	var h hello
	if err := readJSON(c, &h); err != nil {
		return nil, nil, welcome{}, fmt.Errorf("handshake with %s: %w", c.RemoteAddr(), err)
	}
	bind := binding(c)
	var w welcome
	switch {
	case h.Magic != magic:
		w.Err = "not a SafeKit replication peer"
	case h.Module != cfg.ID:
		w.Err = fmt.Sprintf("module id %d, this node's module %s has id %d", h.Module, cfg.Module, cfg.ID)
	case len(cfg.Key) > 0 && !hmac.Equal(h.MAC, mac(cfg.Key, h.macInput(p, bind)...)):
		w.Err = "authentication failed: the nodes do not have the same cluster key"
	default:
		w = decide(&h)
	}
	if len(cfg.Key) > 0 {
		w.MAC = mac(cfg.Key, w.macInput(h.Nonce, p, bind)...)
	}
	if err := writeJSON(c, w); err != nil {
		return nil, nil, welcome{}, err
	}
	c.SetDeadline(time.Time{})
	if w.Err != "" {
		c.Close()
		return nil, &h, w, errors.New(w.Err)
	}
	return c, &h, w, nil
}

// clientHandshake runs the secondary's side.
func clientHandshake(c net.Conn, cfg *Config, purpose string, cl claim) (net.Conn, *welcome, error) {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	if cfg.TLS {
		tc, err := tlsConfig()
		if err != nil {
			return nil, nil, err
		}
		t := tls.Client(c, tc)
		if err := t.Handshake(); err != nil {
			return nil, nil, fmt.Errorf("TLS handshake with %s: %w", c.RemoteAddr(), err)
		}
		c = t
	}
	var ch challenge
	if err := readJSON(c, &ch); err != nil {
		return nil, nil, fmt.Errorf("handshake with %s: %w", c.RemoteAddr(), err)
	}
	if ch.Magic != magic {
		return nil, nil, fmt.Errorf("%s is not a SafeKit replication peer", c.RemoteAddr())
	}
	h := hello{Magic: magic, Module: cfg.ID, Nonce: nonce(), Purpose: purpose, Claim: cl}
	bind := binding(c)
	if len(cfg.Key) > 0 {
		h.MAC = mac(cfg.Key, h.macInput(ch.Nonce, bind)...)
	}
	if err := writeJSON(c, h); err != nil {
		return nil, nil, err
	}
	var w welcome
	if err := readJSON(c, &w); err != nil {
		return nil, nil, fmt.Errorf("handshake with %s: %w", c.RemoteAddr(), err)
	}
	if len(cfg.Key) > 0 && !hmac.Equal(w.MAC, mac(cfg.Key, w.macInput(h.Nonce, ch.Nonce, bind)...)) {
		return nil, nil, fmt.Errorf("%s: authentication failed: the nodes do not have the same cluster key", c.RemoteAddr())
	}
	c.SetDeadline(time.Time{})
	if w.Err != "" {
		return nil, &w, errors.New(w.Err)
	}
	return c, &w, nil
}
