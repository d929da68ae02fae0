package http_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	mhttp "github.com/melonsync/melonsync/http"
)

// keySetServer serves a JWKS that tests can change, and counts its fetches.
type keySetServer struct {
	mu      sync.Mutex
	keys    []map[string]string
	fetches atomic.Int64
	srv     *httptest.Server
}

func newKeySetServer(t *testing.T) *keySetServer {
	k := &keySetServer{}
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(k.json())
	}))
	t.Cleanup(k.srv.Close)
	return k
}

func (k *keySetServer) json() []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	b, _ := json.Marshal(map[string]any{"keys": k.keys})
	return b
}

func (k *keySetServer) add(jwk map[string]string) {
	k.mu.Lock()
	k.keys = append(k.keys, jwk)
	k.mu.Unlock()
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(kid string, pub *rsa.PublicKey) map[string]string {
	return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes())}
}

func ecJWK(kid string, pub *ecdsa.PublicKey) map[string]string {
	ecdh, _ := pub.ECDH()
	raw := ecdh.Bytes() // 0x04 || X || Y
	return map[string]string{"kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256", "x": b64(raw[1:33]), "y": b64(raw[33:])}
}

func edJWK(kid string, pub ed25519.PublicKey) map[string]string {
	return map[string]string{"kty": "OKP", "kid": kid, "use": "sig", "alg": "EdDSA", "crv": "Ed25519", "x": b64(pub)}
}

type idpKeys struct {
	rsa  *rsa.PrivateKey
	ec   *ecdsa.PrivateKey
	ed   ed25519.PrivateKey
	ed2  ed25519.PrivateKey // published later (rotation)
	rsa2 *rsa.PrivateKey    // never published
}

var testIdP = sync.OnceValue(func() idpKeys {
	var k idpKeys
	k.rsa, _ = rsa.GenerateKey(rand.Reader, 2048)
	k.rsa2, _ = rsa.GenerateKey(rand.Reader, 2048)
	k.ec, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, k.ed, _ = ed25519.GenerateKey(rand.Reader)
	_, k.ed2, _ = ed25519.GenerateKey(rand.Reader)
	return k
})

const (
	testIssuer   = "https://idp.test/"
	testAudience = "melonsync-app"
)

// idToken signs claims (iss, aud, sub alice, exp in an hour unless given) with method,
// key and kid; extra header fields are added.
func idToken(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	c := jwt.MapClaims{"iss": testIssuer, "aud": testAudience, "sub": "alice", "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newIdPEnv(t *testing.T, o mhttp.KeySetOptions) *env {
	return newEnvWith(t, mhttp.Options{}, func(a *mhttp.Auth) {
		if err := a.UseKeySet(context.Background(), o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.Close)
	})
}

// TestKeySetTokens: RS256, ES256 and EdDSA tokens of the key set are accepted beside
// the server's HS256 ones; every bad token is a 401 naming the failed check, with
// nothing read or written.
func TestKeySetTokens(t *testing.T) {
	k := testIdP()
	ks := newKeySetServer(t)
	ks.add(rsaJWK("rsa1", &k.rsa.PublicKey))
	ks.add(ecJWK("ec1", &k.ec.PublicKey))
	ks.add(edJWK("ed1", k.ed.Public().(ed25519.PublicKey)))
	e := newIdPEnv(t, mhttp.KeySetOptions{URL: ks.srv.URL, Issuer: testIssuer, Audience: testAudience, UnknownKID: time.Minute})
	if n := ks.fetches.Load(); n != 1 {
		t.Errorf("%d fetches at start, want 1", n)
	}
	pushAs := func(tok, id string) reply {
		return e.do("POST", "/api/sync/push", map[string]string{"Authorization": "Bearer " + tok},
			[]byte(`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"`+id+`","name":"x"}]}}}`))
	}
	good := map[string]string{
		"RS256": idToken(t, jwt.SigningMethodRS256, k.rsa, "rsa1", nil, nil),
		"ES256": idToken(t, jwt.SigningMethodES256, k.ec, "ec1", nil, nil),
		"EdDSA": idToken(t, jwt.SigningMethodEdDSA, k.ed, "ed1", nil, nil),
		"HS256": e.token("alice"),
	}
	for alg, tok := range good {
		if r := pushAs(tok, "ok-"+alg); r.status != 200 {
			t.Errorf("%s token: %d %s", alg, r.status, r.body)
		}
	}
	before := e.snapshot()

	pubDER, _ := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hour := time.Now().Add(time.Hour).Unix()
	bad := []struct{ name, tok, msg string }{
		{"wrong issuer", idToken(t, jwt.SigningMethodRS256, k.rsa, "rsa1", jwt.MapClaims{"iss": "https://other.test/"}, nil), "issuer"},
		{"no issuer", idToken(t, jwt.SigningMethodRS256, k.rsa, "rsa1", jwt.MapClaims{"iss": nil}, nil), "iss"},
		{"wrong audience", idToken(t, jwt.SigningMethodES256, k.ec, "ec1", jwt.MapClaims{"aud": "someone-else"}, nil), "audience"},
		{"expired", idToken(t, jwt.SigningMethodEdDSA, k.ed, "ed1", jwt.MapClaims{"exp": time.Now().Add(-time.Minute).Unix()}, nil), "expired"},
		{"not yet valid", idToken(t, jwt.SigningMethodRS256, k.rsa, "rsa1", jwt.MapClaims{"nbf": time.Now().Add(10 * time.Minute).Unix()}, nil), "not valid yet"},
		{"issued in the future", idToken(t, jwt.SigningMethodRS256, k.rsa, "rsa1", jwt.MapClaims{"iat": time.Now().Add(10 * time.Minute).Unix()}, nil), "future"},
		{"no exp", idToken(t, jwt.SigningMethodRS256, k.rsa, "rsa1", jwt.MapClaims{"exp": nil}, nil), "no exp"},
		{"no exp, HS256", signed(jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "alice"}), "no exp"},
		{"unknown kid", idToken(t, jwt.SigningMethodRS256, k.rsa2, "rsa-unknown", nil, nil), "kid"},
		{"known kid, other key", idToken(t, jwt.SigningMethodRS256, k.rsa2, "rsa1", nil, nil), "signature"},
		{"kid of another key type", idToken(t, jwt.SigningMethodES256, k.ec, "rsa1", nil, nil), "verified"},
		{"HS256 with another secret", signed(jwt.SigningMethodHS256, []byte("not-the-server-secret-0123"), jwt.MapClaims{"sub": "alice", "exp": hour}), "signature"},
		{"alg confusion: RSA public key as HS256 secret", idToken(t, jwt.SigningMethodHS256, pubPEM, "rsa1", nil, nil), "signature"},
		{"alg confusion: RSA public key DER as HS256 secret", idToken(t, jwt.SigningMethodHS256, pubDER, "rsa1", nil, nil), "signature"},
		{"RS384", idToken(t, jwt.SigningMethodRS384, k.rsa, "rsa1", nil, nil), "not accepted"},
		{"PS256", idToken(t, jwt.SigningMethodPS256, k.rsa, "rsa1", nil, nil), "not accepted"},
		{"crit header", idToken(t, jwt.SigningMethodRS256, k.rsa, "rsa1", nil, map[string]any{"crit": []string{"exp"}}), "crit"},
		{"crit header, HS256", idToken(t, jwt.SigningMethodHS256, secret, "", nil, map[string]any{"crit": []string{"b64"}, "b64": false}), "crit"},
		{"no sub", idToken(t, jwt.SigningMethodEdDSA, k.ed, "ed1", jwt.MapClaims{"sub": nil}, nil), "sub"},
		{"sub with U+0000", idToken(t, jwt.SigningMethodEdDSA, k.ed, "ed1", jwt.MapClaims{"sub": "ali\x00ce"}, nil), "U+0000"},
		{"alg none", "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + jwtPart(fmt.Sprintf(`{"sub":"alice","exp":%d}`, hour)) + ".", "not accepted"},
	}
	for _, b := range bad {
		for _, path := range []string{"/api/sync/pull", "/api/sync/push", "/api/sync/events", "/api/sync/events/ticket"} {
			method := "POST"
			if path == "/api/sync/events" {
				method = "GET"
			}
			r := e.do(method, path, map[string]string{"Authorization": "Bearer " + b.tok},
				[]byte(`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"bad1","name":"x"}]}}}`))
			if r.status != 401 || errorCode(t, r.body) != "unauthorized" || !strings.Contains(string(r.body), b.msg) {
				t.Errorf("%s on %s: %d %s, want 401 mentioning %q", b.name, path, r.status, r.body, b.msg)
			}
			if strings.Contains(string(r.body), b.tok) || strings.Contains(string(r.body), strings.Split(b.tok, ".")[1]) {
				t.Errorf("%s: the answer repeats the token", b.name)
			}
		}
	}
	if after := e.snapshot(); after != before {
		t.Errorf("refused tokens changed the data:\nbefore %s\nafter  %s", before, after)
	}
}

// TestKeySetRotation: a new kid in the key set is picked up without a restart, and a
// flood of unknown kids does not become a flood of fetches.
func TestKeySetRotation(t *testing.T) {
	k := testIdP()
	ks := newKeySetServer(t)
	ks.add(edJWK("ed1", k.ed.Public().(ed25519.PublicKey)))
	e := newIdPEnv(t, mhttp.KeySetOptions{URL: ks.srv.URL, UnknownKID: time.Hour})
	pull := func(tok string) reply {
		return e.do("POST", "/api/sync/pull", map[string]string{"Authorization": "Bearer " + tok}, []byte(`{"lastPulledAt":null}`))
	}
	if r := pull(idToken(t, jwt.SigningMethodEdDSA, k.ed, "ed1", nil, nil)); r.status != 200 {
		t.Fatalf("ed1: %d %s", r.status, r.body)
	}
	// The provider rotates: ed2 appears.
	ks.add(edJWK("ed2", k.ed2.Public().(ed25519.PublicKey)))
	if r := pull(idToken(t, jwt.SigningMethodEdDSA, k.ed2, "ed2", nil, nil)); r.status != 200 {
		t.Fatalf("ed2 after rotation: %d %s", r.status, r.body)
	}
	if n := ks.fetches.Load(); n != 2 {
		t.Errorf("%d fetches after one rotation, want 2", n)
	}
	// A flood of made-up kids: refused at once, no fetch (the next one is allowed in an hour).
	start := time.Now()
	var wg sync.WaitGroup
	var refused atomic.Int64
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := pull(idToken(t, jwt.SigningMethodEdDSA, k.ed2, fmt.Sprintf("made-up-%d", i), nil, nil))
			if r.status == 401 && strings.Contains(string(r.body), "kid") {
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	if refused.Load() != 100 {
		t.Errorf("%d of 100 made-up kids refused", refused.Load())
	}
	if n := ks.fetches.Load(); n != 2 {
		t.Errorf("a flood of 100 unknown kids caused %d fetches", n-2)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the flood took %v: refusals waited", d)
	}
	// Known kids keep working meanwhile.
	if r := pull(idToken(t, jwt.SigningMethodEdDSA, k.ed, "ed1", nil, nil)); r.status != 200 {
		t.Errorf("ed1 after the flood: %d", r.status)
	}
}

// TestKeySetFile: --jwks-file, with the file replaced while running (read again on an
// unknown kid), and a custom user claim.
func TestKeySetFile(t *testing.T) {
	k := testIdP()
	file := filepath.Join(t.TempDir(), "jwks.json")
	write := func(keys ...map[string]string) {
		b, _ := json.Marshal(map[string]any{"keys": keys})
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(ecJWK("ec1", &k.ec.PublicKey))
	e := newIdPEnv(t, mhttp.KeySetOptions{File: file, UserClaim: "uid", UnknownKID: time.Millisecond})
	pull := func(tok string) reply {
		return e.do("POST", "/api/sync/pull", map[string]string{"Authorization": "Bearer " + tok}, []byte(`{"lastPulledAt":null}`))
	}
	if r := pull(idToken(t, jwt.SigningMethodES256, k.ec, "ec1", jwt.MapClaims{"uid": "u-42"}, nil)); r.status != 200 {
		t.Fatalf("ec1 with uid: %d %s", r.status, r.body)
	}
	if r := pull(idToken(t, jwt.SigningMethodES256, k.ec, "ec1", nil, nil)); r.status != 401 || !strings.Contains(string(r.body), "uid") {
		t.Errorf("token without the user claim: %d %s", r.status, r.body)
	}
	write(ecJWK("ec1", &k.ec.PublicKey), rsaJWK("rsa1", &k.rsa.PublicKey))
	if r := pull(idToken(t, jwt.SigningMethodRS256, k.rsa, "rsa1", jwt.MapClaims{"uid": "u-42"}, nil)); r.status != 200 {
		t.Errorf("rsa1 after the file changed: %d %s", r.status, r.body)
	}
	// A missing or empty key set fails at start.
	a, _ := mhttp.NewAuth(secret)
	if err := a.UseKeySet(context.Background(), mhttp.KeySetOptions{File: file + ".missing"}); err == nil {
		t.Error("a missing key set file was accepted")
	}
	os.WriteFile(file, []byte(`{"keys":[]}`), 0o600)
	if err := a.UseKeySet(context.Background(), mhttp.KeySetOptions{File: file}); err == nil || !strings.Contains(err.Error(), "no usable key") {
		t.Errorf("an empty key set: %v", err)
	}
}
