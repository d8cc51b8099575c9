package console

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/runtime/webauth"
)

// webConf is what SAFE/web/conf/httpd.conf says about the console, on top
// of what package webauth reads there (port, authentication). Each setting
// is a line "Define name value".
type webConf struct {
	webauth.HTTPConf
	// HTTPSPort is the port of HTTPS ("Define httpsport 9453"); 0: no
	// HTTPS. HTTPS also needs Cert and Key.
	HTTPSPort int
	// Cert and Key are the PEM files of the certificate and its private key
	// ("Define sslcert file", "Define sslkey file"), relative to
	// SAFE/web/conf unless absolute.
	Cert, Key string
	// SessionMaxAge is the life of a console session ("Define
	// SessionMaxAge 28800", in seconds, as SafeKit). Default 8 h.
	SessionMaxAge time.Duration
	// SessionIdle ends a session unused for that long ("Define
	// SessionIdleTimeout 1800", in seconds). A session with an open
	// websocket is in use. Default 30 min.
	SessionIdle time.Duration
	// Origins are the origins allowed besides the console's own, for
	// websockets and for the requests authenticated by a password ("Define
	// ConsoleOrigins https://console.example.com,https://10.0.0.1:9453").
	Origins []string
}

// Defaults of webConf.
const (
	defaultSessionMaxAge = 28800 * time.Second
	defaultSessionIdle   = 30 * time.Minute
)

// readWebConf reads httpd.conf. The error is webauth's (a broken file, on
// which every request is refused) or names the bad line of a console
// setting.
func readWebConf(r layout.Roots) (webConf, error) {
	base, err := webauth.ReadHTTPConf(r)
	c := webConf{HTTPConf: base, SessionMaxAge: defaultSessionMaxAge, SessionIdle: defaultSessionIdle}
	if err != nil {
		return c, err
	}
	data, rerr := os.ReadFile(webauth.HTTPDFile(r))
	if rerr != nil {
		return c, nil // none: the defaults
	}
	file := webauth.HTTPDFile(r)
	seconds := func(n int, v string) (time.Duration, error) {
		s, err := strconv.Atoi(v)
		if err != nil || s < 1 {
			return 0, fmt.Errorf("%s:%d: expected a number of seconds, not %q", file, n, v)
		}
		return time.Duration(s) * time.Second, nil
	}
	for i, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "Define" {
			continue
		}
		n, v := i+1, f[2]
		switch f[1] {
		case "httpsport":
			p, err := strconv.Atoi(v)
			if err != nil || p < 1 || p > 65535 {
				return c, fmt.Errorf("%s:%d: httpsport needs a TCP port (1-65535), e.g. Define httpsport 9453", file, n)
			}
			c.HTTPSPort = p
		case "sslcert":
			c.Cert = confPath(r, v)
		case "sslkey":
			c.Key = confPath(r, v)
		case "SessionMaxAge":
			if c.SessionMaxAge, err = seconds(n, v); err != nil {
				return c, err
			}
		case "SessionIdleTimeout":
			if c.SessionIdle, err = seconds(n, v); err != nil {
				return c, err
			}
		case "ConsoleOrigins":
			for _, o := range strings.Split(v, ",") {
				if o = strings.TrimRight(strings.TrimSpace(o), "/"); o != "" {
					c.Origins = append(c.Origins, strings.ToLower(o))
				}
			}
		}
	}
	return c, nil
}

func confPath(r layout.Roots, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(webauth.ConfDir(r), p)
}

// ListenTLS opens the HTTPS port when httpd.conf asks for it, on the host
// of listen (the address of the HTTP port, ":9010"), and from then on the
// HTTP port sends browsers there. It returns nil, nil when HTTPS is off.
func (s *Server) ListenTLS(listen string) (net.Listener, error) {
	c, err := readWebConf(s.roots())
	if err != nil || c.HTTPSPort == 0 {
		return nil, err
	}
	if c.Cert == "" || c.Key == "" {
		return nil, fmt.Errorf("%s: httpsport %d needs the certificate and its key: Define sslcert file.pem and Define sslkey file.key; HTTPS is off",
			webauth.HTTPDFile(s.roots()), c.HTTPSPort)
	}
	cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, fmt.Errorf("HTTPS is off: certificate %s and key %s: %w", c.Cert, c.Key, err)
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("HTTPS is off: %w", err)
	}
	l, err := tls.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(c.HTTPSPort)), &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		return nil, fmt.Errorf("HTTPS is off: %w", err)
	}
	s.httpsPort.Store(int32(l.Addr().(*net.TCPAddr).Port))
	return l, nil
}
