package client

import (
	"context"
	"crypto/rand"
	"fmt"
	"strconv"
	"strings"

	"github.com/melonsync/melonsync"
)

// Local storage keys of melonsync (WatermelonDB's own keys are in package melonsync).
const (
	// KeyDeviceID holds the device id sent as X-Melon-Device (see DeviceID).
	KeyDeviceID = "__melonsync_device_id"
)

// readTimestamp reads a local-storage integer the way WatermelonDB does
// (parseInt(value) || null): missing, unparsable or 0 is "none".
func readLocalInt(tx *Tx, key string) (*int64, error) {
	v, ok, err := tx.GetLocal(key)
	if err != nil || !ok {
		return nil, err
	}
	n, perr := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if perr != nil {
		// parseInt("1500.5") is 1500; parseInt("abc") is NaN → null.
		if f, ferr := strconv.ParseFloat(strings.TrimSpace(v), 64); ferr == nil && f >= 1 && f < 1<<53 {
			n = int64(f)
		} else {
			return nil, nil
		}
	}
	if n == 0 {
		return nil, nil
	}
	return &n, nil
}

// LastPulledAt returns the server timestamp of the last successful pull, or nil when
// the database has never synced.
func LastPulledAt(ctx context.Context, db *DB) (*int64, error) {
	var out *int64
	err := db.Read(ctx, func(tx *Tx) error {
		var err error
		out, err = readLocalInt(tx, melonsync.KeyLastPulledAt)
		return err
	})
	return out, err
}

// LastPulledSchemaVersion returns the schema version at which the database last
// synced, or nil when it was never noted.
func LastPulledSchemaVersion(ctx context.Context, db *DB) (*int, error) {
	var out *int
	err := db.Read(ctx, func(tx *Tx) error {
		n, err := readLocalInt(tx, melonsync.KeyLastPulledSchemaVersion)
		if n != nil {
			v := int(*n)
			out = &v
		}
		return err
	})
	return out, err
}

// DeviceID returns the id this database uses as X-Melon-Device, creating and storing
// a random one (under KeyDeviceID) the first time. The server uses it to recognise the
// records this device pushed and its own retried pushes.
func DeviceID(ctx context.Context, db *DB) (string, error) {
	var id string
	err := db.Write(ctx, func(tx *Tx) error {
		v, ok, err := tx.GetLocal(KeyDeviceID)
		if err != nil {
			return err
		}
		if ok && v != "" {
			id = v
			return nil
		}
		id = newDeviceID()
		return tx.SetLocal(KeyDeviceID, id)
	})
	if err != nil {
		return "", fmt.Errorf("device id: %w", err)
	}
	return id, nil
}

// SetDeviceID stores id as this database's device id. It must match
// ^[A-Za-z0-9_.-]{1,64}$.
func SetDeviceID(ctx context.Context, db *DB, id string) error {
	if !validDeviceID(id) {
		return fmt.Errorf("device id %q must match ^[A-Za-z0-9_.-]{1,64}$", id)
	}
	return db.Write(ctx, func(tx *Tx) error { return tx.SetLocal(KeyDeviceID, id) })
}

func validDeviceID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func newDeviceID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 20)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "dev-" + string(b)
}
