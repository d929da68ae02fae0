package http

import (
	"strings"
	"testing"
	"time"
)

// clockAuth returns an Auth whose clock the test moves.
func clockAuth(t *testing.T) (*Auth, *time.Time) {
	t.Helper()
	a, err := NewAuth([]byte("cache-test-secret-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	a.now = func() time.Time { return now }
	return a, &now
}

func mustAuthenticate(t *testing.T, a *Auth, tok, want string) {
	t.Helper()
	id, err := a.Authenticate("Bearer " + tok)
	if err != nil || id.User != want {
		t.Fatalf("Authenticate = %q, %v; want %q", id.User, err, want)
	}
}

// TestTokenCacheHonoursExp: a cached token is refused once it expires, as an uncached
// one would be, although the cache's own lifetime has not run out.
func TestTokenCacheHonoursExp(t *testing.T) {
	a, now := clockAuth(t)
	tok, _ := a.Mint("ann", 10*time.Second)
	mustAuthenticate(t, a, tok, "ann")
	*now = now.Add(10*time.Second + Leeway - time.Second) // just before exp + Leeway: still good
	mustAuthenticate(t, a, tok, "ann")
	*now = now.Add(time.Second)
	if _, err := a.Authenticate("Bearer " + tok); err == nil || !strings.Contains(err.Error(), "token expired") {
		t.Fatalf("expired cached token: %v, want token expired", err)
	}
}

// TestTokenCacheLifetime: a token whose key is no longer accepted (here: the secret
// changed) is still accepted from the cache for at most tokenCacheTTL.
func TestTokenCacheLifetime(t *testing.T) {
	a, now := clockAuth(t)
	tok, _ := a.Mint("ann", time.Hour)
	mustAuthenticate(t, a, tok, "ann")
	a.secret = []byte("another-secret-0123456789abcdef")
	*now = now.Add(tokenCacheTTL - time.Second)
	mustAuthenticate(t, a, tok, "ann") // served from the cache
	*now = now.Add(time.Second)
	if _, err := a.Authenticate("Bearer " + tok); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("after the cache's lifetime: %v, want a signature error", err)
	}
}

// TestTokenCacheExactToken: a cached token lets in nothing but itself: not the same
// token with its signature changed, nor its claims with another signature.
func TestTokenCacheExactToken(t *testing.T) {
	a, _ := clockAuth(t)
	tok, _ := a.Mint("ann", time.Hour)
	mustAuthenticate(t, a, tok, "ann")
	dot := strings.LastIndex(tok, ".")
	flip := map[byte]byte{'A': 'B'}[tok[dot+1]]
	if flip == 0 {
		flip = 'A'
	}
	for _, bad := range []string{
		tok[:dot+1] + string(flip) + tok[dot+2:], // the signature's first character changed
		tok + "x",
		tok[:len(tok)-1],
	} {
		if _, err := a.Authenticate("Bearer " + bad); err == nil {
			t.Errorf("a variant of a cached token was accepted: %s", bad)
		}
	}
	mustAuthenticate(t, a, tok, "ann")
}
