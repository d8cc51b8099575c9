package console

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/runtime/webauth"
)

// selfSigned writes a certificate for 127.0.0.1 and its key under
// SAFE/web/conf.
func selfSigned(t *testing.T, n *testNode) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "node1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	dir := webauth.ConfDir(n.roots)
	writeTestFile(t, filepath.Join(dir, "ssl", "cert.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeTestFile(t, filepath.Join(dir, "ssl", "key.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})))
}

func TestHTTPS(t *testing.T) {
	n := newTestNode(t, "node1", nodeOptions{})
	n.addModule("m1", lightModule, true)
	if l, err := n.srv.ListenTLS("127.0.0.1:0"); l != nil || err != nil {
		t.Fatalf("HTTPS without httpsport: %v %v", l, err)
	}
	p, _ := net.Listen("tcp", "127.0.0.1:0")
	port := p.Addr().(*net.TCPAddr).Port
	p.Close()
	writeTestFile(t, webauth.HTTPDFile(n.roots), fmt.Sprintf("Define httpport 9010\nDefine httpsport %d\n", port))
	if _, err := n.srv.ListenTLS("127.0.0.1:0"); err == nil || !strings.Contains(err.Error(), "Define sslcert file.pem and Define sslkey file.key") {
		t.Errorf("httpsport without certificate: %v", err)
	}
	selfSigned(t, n)
	writeTestFile(t, webauth.HTTPDFile(n.roots), fmt.Sprintf("Define httpport 9010\nDefine httpsport %d\nDefine sslcert ssl/cert.pem\nDefine sslkey ssl/key.pem\n", port))
	l, err := n.srv.ListenTLS("127.0.0.1:0")
	if err != nil || l == nil {
		t.Fatalf("ListenTLS: %v", err)
	}
	hs := &http.Server{Handler: n.srv.Handler()}
	go hs.Serve(l)
	defer hs.Close()

	// Browsers are sent to HTTPS; password callers and probes stay.
	resp, err := http.DefaultTransport.RoundTrip(n.anonymous().request(http.MethodGet, "/console/en/monitoring?x=1", nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := fmt.Sprintf("https://127.0.0.1:%d/console/en/monitoring?x=1", port); resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
		t.Errorf("HTTP: %d %s, want a 308 to %s", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	basic := n.anonymous()
	basic.user, basic.pwd = "mon", password("mon")
	basic.json(http.MethodGet, "/api/v1.0/modules/m1/state", nil, http.StatusOK, nil)
	n.anonymous().json(http.MethodGet, "/api/v1.0/modules/m1/checkstate", nil, http.StatusOK, nil)

	// Over HTTPS the session cookie is Secure.
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(filepath.Join(webauth.ConfDir(n.roots), "ssl", "cert.pem"))
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err = hc.Post(fmt.Sprintf("https://127.0.0.1:%d/login", port), "application/x-www-form-urlencoded", strings.NewReader("httpd_username=mon&httpd_password="+password("mon")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if resp.StatusCode != http.StatusOK || len(cookies) != 1 || !cookies[0].Secure || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode {
		t.Errorf("login over HTTPS: %d %+v", resp.StatusCode, cookies)
	}
}
