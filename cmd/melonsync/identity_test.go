package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestServeIdentityProvider: serve with --jwks-file, an issuer from the environment and
// --cors-origins accepts the provider's tokens, refuses others, and answers browsers.
func TestServeIdentityProvider(t *testing.T) {
	t.Setenv("MELONSYNC_JWT_SECRET", "")
	t.Setenv("MELONSYNC_JWT_ISSUER", "https://idp.test/")
	dir := t.TempDir()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	jwks := fmt.Sprintf(`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","alg":"EdDSA","use":"sig","x":%q}]}`, base64.RawURLEncoding.EncodeToString(pub))
	file := filepath.Join(dir, "jwks.json")
	os.WriteFile(file, []byte(jwks), 0o600)

	const app = "http://localhost:5173"
	if m := NewServeMain(&bytes.Buffer{}, &bytes.Buffer{}); m.ParseFlags([]string{"--schema", "x.json", "--jwks-file", file}) != nil {
		t.Error("flags refused")
	} else if m.JWTIssuer != "https://idp.test/" {
		t.Errorf("issuer from the environment: %q", m.JWTIssuer)
	}
	srv := runServe(t, "--addr", "127.0.0.1:0", "--db", filepath.Join(dir, "m.db"), "--schema", "../../examples/todo/schema.json",
		"--jwks-file", file, "--jwt-user-claim", "uid", "--cors-origins", app)
	addr := srv.addr
	sign := func(iss string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iss": iss, "uid": "u1", "exp": time.Now().Add(time.Hour).Unix()})
		tok.Header["kid"] = "k1"
		s, _ := tok.SignedString(priv)
		return s
	}
	pull := func(tok string) (*http.Response, string) {
		req, _ := http.NewRequest("POST", "http://"+addr+"/api/sync/pull", strings.NewReader(`{"lastPulledAt":null}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Origin", app)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp, b.String()
	}
	if resp, body := pull(sign("https://idp.test/")); resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != app {
		t.Errorf("provider token: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	if resp, body := pull(sign("https://elsewhere.test/")); resp.StatusCode != 401 || !strings.Contains(body, "issuer") || resp.Header.Get("Access-Control-Allow-Origin") != app {
		t.Errorf("wrong issuer: %d %s", resp.StatusCode, body)
	}
	if err := srv.stop(); err != nil {
		t.Errorf("serve returned %v", err)
	}

	for _, args := range [][]string{
		{"--schema", "x.json", "--jwks-url", "https://a.test/jwks.json", "--jwks-file", file},
		{"--schema", "x.json", "--jwt-audience", "x"},
		{"--schema", "x.json", "--cors-origins", "app.example.com"},
	} {
		t.Setenv("MELONSYNC_JWT_ISSUER", "")
		if err := NewServeMain(&bytes.Buffer{}, &bytes.Buffer{}).ParseFlags(args); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	// A key set that cannot be loaded stops the start.
	m := NewServeMain(&bytes.Buffer{}, &bytes.Buffer{})
	m.ParseFlags([]string{"--addr", "127.0.0.1:0", "--db", filepath.Join(dir, "m2.db"), "--schema", "../../examples/todo/schema.json", "--jwks-file", file + ".gone"})
	if err := m.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "jwks-file") {
		t.Errorf("missing key set file: %v", err)
	}
}
