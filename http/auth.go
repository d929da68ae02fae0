package http

import (
	"errors"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/melonsync/melonsync"
)

// Auth verifies and mints HS256 bearer tokens whose "sub" claim is the user id.
type Auth struct {
	secret []byte
	now    func() time.Time
}

// NewAuth returns an Auth for secret (at least 16 bytes).
func NewAuth(secret []byte) (*Auth, error) {
	if len(secret) < 16 {
		return nil, errors.New("auth: the JWT secret must be at least 16 bytes")
	}
	return &Auth{secret: secret, now: time.Now}, nil
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
// Only HS256 with the server's secret is accepted; exp and nbf are honoured when
// present. It fails with unauthorized.
func (a *Auth) Verify(header string) (string, error) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(header), " ")
	if header == "" {
		return "", melonsync.Errorf(melonsync.EUnauthorized, "missing Authorization header (expected: Bearer <token>)")
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", melonsync.Errorf(melonsync.EUnauthorized, "malformed Authorization header (expected: Bearer <token>)")
	}
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(strings.TrimSpace(tok), &claims, func(*jwt.Token) (any, error) { return a.secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithTimeFunc(a.now), jwt.WithLeeway(5*time.Second))
	if err != nil {
		switch {
		case errors.Is(err, jwt.ErrTokenExpired):
			return "", melonsync.Errorf(melonsync.EUnauthorized, "token expired")
		case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
			return "", melonsync.Errorf(melonsync.EUnauthorized, "token signature or algorithm is not accepted")
		default:
			return "", melonsync.Errorf(melonsync.EUnauthorized, "invalid token")
		}
	}
	if claims.Subject == "" {
		return "", melonsync.Errorf(melonsync.EUnauthorized, "token has no sub (user id)")
	}
	if len(claims.Subject) > 256 {
		return "", melonsync.Errorf(melonsync.EUnauthorized, "token sub is longer than %d characters", 256)
	}
	return claims.Subject, nil
}
