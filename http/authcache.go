package http

import (
	"crypto/sha256"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// A client sends the same token with every request until it expires, and verifying
// it (parsing its JSON twice, checking an HMAC or a signature) cost about a seventh of
// a small push's CPU. So Auth remembers the tokens it verified: by their SHA-256, so
// that a cached entry cannot be reached by any other token, at most tokenCacheSize of
// them, each for at most tokenCacheTTL and never past its exp (with Leeway).
// Refused tokens are never cached: each is parsed again, and refused again.
//
// tokenCacheTTL bounds how long a token signed with a key that its provider has since
// removed from its key set is still accepted; the key set itself is fetched again only
// every KeySetOptions.Refresh (an hour by default), so the cache adds little to that.
const (
	tokenCacheSize = 8192
	tokenCacheTTL  = time.Minute
)

// tokenCache maps a token's SHA-256 to the identity it was verified as.
type tokenCache struct {
	c *lru.Cache[[sha256.Size]byte, cachedIdentity]
}

type cachedIdentity struct {
	id    Identity
	until time.Time // the entry is good before this
}

func newTokenCache() *tokenCache {
	c, err := lru.New[[sha256.Size]byte, cachedIdentity](tokenCacheSize)
	if err != nil {
		panic(err) // only for a size ≤ 0
	}
	return &tokenCache{c: c}
}

// get returns the identity tok was verified as, if that is cached and still good at now.
func (t *tokenCache) get(tok string, now time.Time) (Identity, bool) {
	key := sha256.Sum256([]byte(tok))
	e, ok := t.c.Get(key)
	if !ok {
		return Identity{}, false
	}
	if !now.Before(e.until) {
		t.c.Remove(key)
		return Identity{}, false
	}
	return e.id, true
}

// put remembers that tok was verified as id at now.
func (t *tokenCache) put(tok string, id Identity, now time.Time) {
	until := now.Add(tokenCacheTTL)
	if exp := id.Expires.Add(Leeway); exp.Before(until) {
		until = exp
	}
	t.c.Add(sha256.Sum256([]byte(tok)), cachedIdentity{id: id, until: until})
}
