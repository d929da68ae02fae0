package http

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// KeySetOptions configures the identity provider's tokens (UseKeySet).
type KeySetOptions struct {
	// URL of the key set (JWKS), e.g. https://example.auth0.com/.well-known/jwks.json.
	URL string
	// File holding the key set, instead of URL. It is read again like the URL would be
	// fetched again, so that a replaced file takes effect without a restart.
	File string
	// Issuer, when set, must equal the tokens' iss.
	Issuer string
	// Audience, when set, must be in the tokens' aud.
	Audience string
	// UserClaim names the claim holding the user id (default "sub").
	UserClaim string
	// Refresh is how often the key set is fetched again (default 1h).
	Refresh time.Duration
	// UnknownKID is the shortest time between two fetches caused by a token whose kid
	// is not in the key set (default 30s). Other such tokens are refused meanwhile, so
	// that a flood of made-up kids is not a flood of fetches.
	UnknownKID time.Duration
	// Client fetches the key set (default: a client with a 10 s timeout).
	Client *http.Client
	// Logger receives failed refreshes (default: discard).
	Logger *slog.Logger
}

// keySet checks tokens signed with a key of an identity provider's key set.
type keySet struct {
	kf               keyfunc.Keyfunc
	issuer, audience string
	claim            string
	cancel           context.CancelFunc
	source           string
}

// UseKeySet makes a accept RS256, ES256 and EdDSA tokens signed with a key of the key
// set at o.URL or in o.File, besides HS256 tokens. The key set is fetched (or read)
// once now, and UseKeySet fails when that fails or it holds no usable key; then again
// every o.Refresh, and when a token names a kid it does not hold (at most once per
// o.UnknownKID). Call Close to stop the refreshes.
func (a *Auth) UseKeySet(ctx context.Context, o KeySetOptions) error {
	if (o.URL == "") == (o.File == "") {
		return errors.New("auth: give exactly one of a key set URL and a key set file")
	}
	if o.UserClaim == "" {
		o.UserClaim = "sub"
	}
	if o.Refresh <= 0 {
		o.Refresh = time.Hour
	}
	if o.UnknownKID <= 0 {
		o.UnknownKID = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	client := o.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	source, where := o.URL, "--jwks-url "+o.URL
	if o.File != "" {
		abs, err := filepath.Abs(o.File)
		if err != nil {
			return fmt.Errorf("auth: --jwks-file: %w", err)
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("auth: --jwks-file: %w", err)
		}
		// The same code path as a URL: a file:// URL read through a file transport.
		dir, name := filepath.Split(abs)
		client = &http.Client{Transport: http.NewFileTransport(http.Dir(dir))}
		source, where = "file:///"+url.PathEscape(name), "--jwks-file "+o.File
	} else if u, err := url.Parse(o.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("auth: --jwks-url %q is not an http(s) URL", o.URL)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	strict := false
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{source}, keyfunc.Override{
		Client:                    client,
		HTTPTimeout:               10 * time.Second,
		NoErrorReturnFirstHTTPReq: &strict,
		RefreshInterval:           o.Refresh,
		RefreshUnknownKID:         rate.NewLimiter(rate.Every(o.UnknownKID), 1),
		// A token with an unknown kid waits at most this long for the next allowed
		// fetch (and the fetch itself); beyond it, it is refused at once.
		RateLimitWaitMax: 10 * time.Second,
		RefreshErrorHandlerFunc: func(string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				o.Logger.Warn("fetching the key set failed", "source", where, "err", err.Error())
			}
		},
	})
	if err != nil {
		cancel()
		return fmt.Errorf("auth: loading the key set (%s): %w", where, err)
	}
	keys, err := kf.Storage().KeyReadAll(ctx)
	if err == nil && len(keys) == 0 {
		err = errors.New("it holds no usable key")
	}
	if err != nil {
		cancel()
		return fmt.Errorf("auth: the key set (%s): %w", where, err)
	}
	a.keys = &keySet{kf: kf, issuer: o.Issuer, audience: o.Audience, claim: o.UserClaim, cancel: cancel, source: where}
	return nil
}

func (k *keySet) parser(now func() time.Time) *jwt.Parser {
	opts := []jwt.ParserOption{jwt.WithValidMethods([]string{"RS256", "ES256", "EdDSA"}), jwt.WithTimeFunc(now),
		jwt.WithLeeway(Leeway), jwt.WithExpirationRequired(), jwt.WithIssuedAt()}
	if k.issuer != "" {
		opts = append(opts, jwt.WithIssuer(k.issuer))
	}
	if k.audience != "" {
		opts = append(opts, jwt.WithAudience(k.audience))
	}
	return jwt.NewParser(opts...)
}

// errUnknownKID: the token's kid is not in the key set, even after a fetch (or no fetch
// was allowed yet).
var errUnknownKID = errors.New("unknown kid")

func (k *keySet) key(t *jwt.Token) (any, error) {
	key, err := k.kf.Keyfunc(t)
	if err != nil && (errors.Is(err, jwkset.ErrKeyNotFound) || strings.Contains(err.Error(), "rate limiter")) {
		return nil, errUnknownKID
	}
	return key, err
}

func (k *keySet) userClaim() string { return k.claim }

func (k *keySet) describe(err error) string {
	switch {
	case errors.Is(err, errUnknownKID):
		return "token key id (kid) is not in the key set"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return fmt.Sprintf("token issuer (iss) is not %q", k.issuer)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return fmt.Sprintf("token audience (aud) does not include %q", k.audience)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "token signature is not valid for its key in the key set"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "token could not be verified with the key set (its alg does not match its key)"
	}
	return ""
}
