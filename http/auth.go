package http

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/melonsync/melonsync"
)

// Leeway is how far exp, nbf and iat may be off the server's clock.
const Leeway = 30 * time.Second

// maxTokenBytes bounds the size of a token, so that parsing one costs little.
const maxTokenBytes = 16 << 10

// maxUserBytes bounds a user id.
const maxUserBytes = 256

// Auth verifies bearer tokens and mints the server's own: HS256 tokens signed with the
// server's secret (as "melonsync token" mints), and, once UseKeySet was called, RS256,
// ES256 and EdDSA tokens of an identity provider whose key is in its key set (JWKS).
// Every token must have exp. It also mints and verifies event-stream tickets.
type Auth struct {
	secret    []byte
	ticketKey []byte
	now       func() time.Time
	keys      *keySet // nil: HS256 only
	verified  *tokenCache
}

// Identity is who a verified token speaks for, and until when.
type Identity struct {
	// User is the user id (the token's sub, or the key set's user claim).
	User string
	// Expires is the token's exp.
	Expires time.Time
}

// NewAuth returns an Auth for secret (at least 16 bytes).
func NewAuth(secret []byte) (*Auth, error) {
	if len(secret) < 16 {
		return nil, errors.New("auth: the JWT secret must be at least 16 bytes")
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("melonsync event-stream ticket v1"))
	return &Auth{secret: secret, ticketKey: m.Sum(nil), now: time.Now, verified: newTokenCache()}, nil
}

// Mint returns a token for user that expires after ttl.
func (a *Auth) Mint(user string, ttl time.Duration) (string, error) {
	if user == "" {
		return "", errors.New("auth: empty user id")
	}
	now := a.now()
	claims := jwt.RegisteredClaims{
		Subject:   user,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(a.secret)
}

// Verify checks an Authorization header ("Bearer <token>") and returns the user id.
// See Authenticate.
func (a *Auth) Verify(header string) (string, error) {
	id, err := a.Authenticate(header)
	return id.User, err
}

// Authenticate checks an Authorization header ("Bearer <token>"). HS256 tokens must be
// signed with the server's secret; RS256, ES256 and EdDSA tokens need a key set
// (UseKeySet) holding their key, and its issuer and audience when configured. Every
// token needs exp; exp, nbf and iat are honoured with Leeway. A token whose header has
// "crit" is refused: this server understands no JWS extensions (RFC 7515 §4.1.11). It
// fails with unauthorized, saying which check failed, never repeating the token.
func (a *Auth) Authenticate(header string) (Identity, error) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(header), " ")
	if header == "" {
		return Identity{}, unauthorized("missing Authorization header (expected: Bearer <token>)")
	}
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return Identity{}, unauthorized("malformed Authorization header (expected: Bearer <token>)")
	}
	if len(tok) > maxTokenBytes {
		return Identity{}, unauthorized(fmt.Sprintf("token is longer than %d bytes", maxTokenBytes))
	}
	now := a.now()
	if id, ok := a.verified.get(tok, now); ok {
		return id, nil
	}
	id, err := a.check(tok)
	if err == nil {
		a.verified.put(tok, id, now)
	}
	return id, err
}

// check verifies tok, as Authenticate describes, without the cache.
func (a *Auth) check(tok string) (Identity, error) {
	unverified, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		return Identity{}, unauthorized("malformed token (not a JWT)")
	}
	if _, ok := unverified.Header["crit"]; ok {
		return Identity{}, unauthorized(`token header has "crit" extensions, which this server does not understand (RFC 7515 §4.1.11)`)
	}
	alg, _ := unverified.Header["alg"].(string)
	switch alg {
	case "HS256":
		return a.verify(tok, hsRules{a})
	case "RS256", "ES256", "EdDSA":
		if a.keys == nil {
			return Identity{}, unauthorized(alg + " tokens are not accepted: no key set is configured (--jwks-url or --jwks-file)")
		}
		return a.verify(tok, a.keys)
	default:
		return Identity{}, unauthorized(fmt.Sprintf("token algorithm %q is not accepted (HS256, RS256, ES256 or EdDSA)", clip(alg, 16)))
	}
}

// rules are how one kind of token is checked.
type rules interface {
	parser(now func() time.Time) *jwt.Parser
	key(*jwt.Token) (any, error)
	userClaim() string
	describe(err error) string // the message of a failed check, or ""
}

// hsRules check HS256 tokens signed with the server's secret.
type hsRules struct{ a *Auth }

func (r hsRules) parser(now func() time.Time) *jwt.Parser {
	return jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithTimeFunc(now),
		jwt.WithLeeway(Leeway), jwt.WithExpirationRequired(), jwt.WithIssuedAt())
}
func (r hsRules) key(*jwt.Token) (any, error) { return r.a.secret, nil }
func (r hsRules) userClaim() string           { return "sub" }
func (r hsRules) describe(err error) string {
	if errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		return "token signature is not valid for the server's HS256 secret"
	}
	return ""
}

func (a *Auth) verify(tok string, r rules) (Identity, error) {
	claims := jwt.MapClaims{}
	_, err := r.parser(a.now).ParseWithClaims(tok, claims, r.key)
	if err != nil {
		return Identity{}, unauthorized(describe(err, r))
	}
	exp, _ := claims.GetExpirationTime() // present: WithExpirationRequired
	user, err := claimUser(claims, r.userClaim())
	if err != nil {
		return Identity{}, err
	}
	return Identity{User: user, Expires: exp.Time}, nil
}

// describe turns a failed parse into a message naming the check that failed.
func describe(err error, r rules) string {
	if msg := r.describe(err); msg != "" {
		return msg
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed token"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "token signature is not valid"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "token could not be verified"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "token is not valid yet (nbf is in the future)"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "token was issued in the future (iat)"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		for _, c := range []string{"exp", "iss", "aud"} {
			if strings.Contains(err.Error(), c+" claim is required") {
				return "token has no " + c + " claim; it is required"
			}
		}
		return "token lacks a required claim"
	default:
		return "token claims are not valid"
	}
}

// claimUser reads the user id from claim: a non-empty string of at most 256 bytes
// without U+0000.
func claimUser(claims jwt.MapClaims, claim string) (string, error) {
	v, ok := claims[claim]
	if !ok {
		return "", unauthorized(fmt.Sprintf("token has no %s (user id)", claim))
	}
	s, ok := v.(string)
	if !ok || s == "" {
		return "", unauthorized(fmt.Sprintf("token %s (user id) is not a non-empty string", claim))
	}
	if len(s) > maxUserBytes {
		return "", unauthorized(fmt.Sprintf("token %s is longer than %d characters", claim, maxUserBytes))
	}
	if strings.ContainsRune(s, 0) {
		return "", unauthorized(fmt.Sprintf("token %s contains U+0000", claim))
	}
	return s, nil
}

func unauthorized(msg string) error { return melonsync.Errorf(melonsync.EUnauthorized, "%s", msg) }

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// TicketTTL is how long an event-stream ticket may be used to open a stream.
const TicketTTL = time.Minute

// ticketAudience marks tickets; they are signed with a key derived from the secret, so
// that a ticket is never a bearer token and a bearer token never a ticket.
const ticketAudience = "melonsync:events"

// MintTicket returns an event-stream ticket for id and device: it opens GET
// /api/sync/events?ticket=… for TicketTTL (or until id expires, if sooner), and the
// stream it opens ends when id expires. It returns the ticket and its expiry.
func (a *Auth) MintTicket(id Identity, device string) (string, time.Time, error) {
	now := a.now()
	exp := now.Add(TicketTTL)
	if id.Expires.Before(exp) {
		exp = id.Expires
	}
	claims := jwt.MapClaims{
		"sub": id.User,
		"aud": ticketAudience,
		"iat": now.Unix(),
		"exp": exp.Unix(),
		"end": id.Expires.Unix(),
	}
	if device != "" {
		claims["dev"] = device
	}
	t, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(a.ticketKey)
	return t, time.Unix(exp.Unix(), 0), err
}

// VerifyTicket checks an event-stream ticket and returns its identity (Expires: when
// the stream must end) and device. It fails with unauthorized.
func (a *Auth) VerifyTicket(ticket string) (Identity, string, error) {
	if len(ticket) > maxTokenBytes {
		return Identity{}, "", unauthorized("ticket is too long")
	}
	claims := jwt.MapClaims{}
	p := jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithTimeFunc(a.now), jwt.WithLeeway(time.Second),
		jwt.WithExpirationRequired(), jwt.WithAudience(ticketAudience))
	if _, err := p.ParseWithClaims(ticket, claims, func(*jwt.Token) (any, error) { return a.ticketKey, nil }); err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return Identity{}, "", unauthorized("ticket expired; get a new one from POST /api/sync/events/ticket")
		}
		return Identity{}, "", unauthorized("ticket is not valid; get one from POST /api/sync/events/ticket")
	}
	user, err := claimUser(claims, "sub")
	if err != nil {
		return Identity{}, "", err
	}
	end, _ := claims["end"].(float64)
	device, _ := claims["dev"].(string)
	return Identity{User: user, Expires: time.Unix(int64(end), 0)}, device, nil
}

// Close stops refreshing the key set, if any.
func (a *Auth) Close() {
	if a.keys != nil {
		a.keys.cancel()
	}
}
