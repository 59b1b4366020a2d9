package dockercompose_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/decnet/servicelive/dockercompose"
)

// pki is a throwaway certificate authority.
type pki struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "sltest CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &pki{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a certificate and key (PEM) signed by the CA, for a server
// at 127.0.0.1 or for a client.
func (p *pki) issue(t *testing.T, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "sltest"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// writeCerts writes ca.pem (of ca), and cert.pem and key.pem (a client
// certificate of issuer) unless issuer is nil, into dir; it returns a
// cleanup.
func writeCerts(t *testing.T, dir string, ca, issuer *pki) func() {
	t.Helper()
	files := map[string][]byte{"ca.pem": ca.pem}
	if issuer != nil {
		files["cert.pem"], files["key.pem"] = issuer.issue(t, false)
	}
	for name, b := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o600))
	}
	return func() {
		for name := range files {
			_ = os.Remove(filepath.Join(dir, name))
		}
	}
}

// tlsEngine is an HTTPS server answering the Engine API's ping; it
// records whether the client presented a certificate of ca.
type tlsEngine struct {
	*httptest.Server
	clientCert chan bool
}

func newTLSEngine(t *testing.T, ca *pki, useTLS bool) *tlsEngine {
	t.Helper()
	e := &tlsEngine{clientCert: make(chan bool, 16)}
	e.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			e.clientCert <- len(r.TLS.VerifiedChains) > 0
		}
		w.Header().Set("Api-Version", "1.41")
		w.Header().Set("Ostype", "linux")
		_, _ = w.Write([]byte("OK"))
	}))
	e.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are expected
	if useTLS {
		certPEM, keyPEM := ca.issue(t, true)
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		require.NoError(t, err)
		pool := x509.NewCertPool()
		pool.AddCert(ca.cert)
		e.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven}
		e.StartTLS()
	} else {
		e.Start()
	}
	t.Cleanup(e.Close)
	return e
}

func (e *tlsEngine) host() string {
	return "tcp://" + strings.TrimPrefix(strings.TrimPrefix(e.URL, "https://"), "http://")
}

// TestNewTLSFromEnvironment checks that TLS comes from the environment as
// with the docker CLI: DOCKER_TLS_VERIFY verifies the engine against
// ca.pem and presents cert.pem/key.pem, from DOCKER_CERT_PATH or else the
// docker config directory; DOCKER_TLS alone encrypts without verifying;
// DOCKER_CERT_PATH alone turns nothing on; a missing ca.pem is an error;
// with TLS and no DOCKER_HOST the engine is tcp://localhost:2376.
func TestNewTLSFromEnvironment(t *testing.T) {
	// Not parallel: it sets environment variables, and writes into the
	// docker config directory of TestMain (read once per process).
	ca, other := newPKI(t), newPKI(t)
	engine := newTLSEngine(t, ca, true)
	plain := newTLSEngine(t, ca, false)
	certs := t.TempDir()
	defer writeCerts(t, certs, ca, ca)()
	wrongCA := t.TempDir() // another CA; a client certificate the engine accepts
	defer writeCerts(t, wrongCA, other, ca)()
	caOnly := t.TempDir()
	defer writeCerts(t, caOnly, ca, nil)()
	empty := t.TempDir()

	for _, tc := range []struct {
		name       string
		env        map[string]string // DOCKER_HOST defaults to the TLS engine
		configDir  bool              // certs in the docker config directory
		host       string            // the daemon host expected; "" for the engine's
		newErr     string            // New fails with this
		pingErr    string            // the ping fails with this
		clientCert bool              // the engine saw the client certificate
	}{
		{name: "verify, cert path", env: map[string]string{"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": certs}, clientCert: true},
		{name: "verify, any value", env: map[string]string{"DOCKER_TLS_VERIFY": "0", "DOCKER_CERT_PATH": certs}, clientCert: true},
		{name: "verify, config dir", env: map[string]string{"DOCKER_TLS_VERIFY": "1"}, configDir: true, clientCert: true},
		{name: "verify, CA only: no client certificate", env: map[string]string{"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": caOnly}},
		{name: "verify, wrong CA", env: map[string]string{"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": wrongCA}, pingErr: "certificate signed by unknown authority"},
		{name: "verify, no ca.pem", env: map[string]string{"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": empty}, newErr: "ca.pem"},
		{name: "tls without verify, wrong CA", env: map[string]string{"DOCKER_TLS": "1", "DOCKER_CERT_PATH": wrongCA}, clientCert: true},
		{name: "tls without verify, config dir", env: map[string]string{"DOCKER_TLS": "1"}, configDir: true, clientCert: true},
		{name: "cert path alone: no TLS", env: map[string]string{"DOCKER_CERT_PATH": certs, "DOCKER_HOST": plain.host()}},
		{name: "cert path alone: no TLS to a TLS engine", env: map[string]string{"DOCKER_CERT_PATH": certs}, pingErr: "HTTP request to an HTTPS server"},
		{name: "verify, no host: localhost:2376", env: map[string]string{"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": certs, "DOCKER_HOST": ""}, host: "tcp://localhost:2376"},
		{name: "verify, unix socket: TLS unused", env: map[string]string{"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": certs, "DOCKER_HOST": "unix:///tmp/sltest-none.sock"}, host: "unix:///tmp/sltest-none.sock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"DOCKER_TLS", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT"} {
				t.Setenv(k, "")
			}
			t.Setenv("DOCKER_HOST", engine.host())
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			if tc.configDir {
				defer writeCerts(t, os.Getenv("DOCKER_CONFIG"), ca, ca)()
			}
			c, err := dockercompose.New()
			if tc.newErr != "" {
				require.ErrorContains(t, err, tc.newErr)
				t.Log(err)
				return
			}
			require.NoError(t, err)
			defer c.Close()
			if tc.host != "" {
				assert.Equal(t, tc.host, c.Client().DaemonHost())
				return
			}
			for len(engine.clientCert) > 0 {
				<-engine.clientCert
			}
			_, err = c.Client().Ping(t.Context(), client.PingOptions{})
			if tc.pingErr != "" {
				require.ErrorContains(t, err, tc.pingErr)
				t.Log(err)
				return
			}
			require.NoError(t, err)
			if os.Getenv("DOCKER_HOST") == engine.host() {
				assert.Equal(t, tc.clientCert, <-engine.clientCert, "the client certificate was presented")
			}
		})
	}

	// WithHost takes TLS from the environment too, as `docker -H`.
	t.Setenv("DOCKER_HOST", "")
	t.Setenv("DOCKER_TLS_VERIFY", "1")
	t.Setenv("DOCKER_CERT_PATH", certs)
	c, err := dockercompose.New(dockercompose.WithHost(engine.host()))
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Client().Ping(t.Context(), client.PingOptions{})
	require.NoError(t, err)
}
