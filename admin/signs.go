package admin

import (
	"fmt"
	"time"
)

// Sign is something about a device that an operator looking into "my phone doesn't
// show the task" wants to see first.
type Sign struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// RepeatedConflicts is how many 409s in a row make a sign: a client that keeps
// pushing without pulling in between (or whose pull fails) never gets its changes in.
const RepeatedConflicts = 3

// StaleAfter is how long without a successful pull makes a device look stale.
const StaleAfter = 7 * 24 * time.Hour

// Signs returns the unsynced-looking signs of d for a server on schemaVersion.
func Signs(d Device, schemaVersion int, now time.Time) []Sign {
	var out []Sign
	add := func(kind, format string, args ...any) {
		out = append(out, Sign{kind, fmt.Sprintf(format, args...)})
	}
	if d.RevokedAt > 0 {
		add("revoked", "revoked by an operator: every request is refused with device_revoked")
	}
	if d.ReplaceRequested > d.ReplacedAt {
		add("replacement_pending", "a replacement sync was requested: the next pull sends the whole data set")
	}
	if d.ConflictsInRow >= RepeatedConflicts {
		add("repeated_conflicts", "%d pushes in a row answered 409 conflict: the client pushes without pulling first, or its pull fails", d.ConflictsInRow)
	}
	if d.LastStatus >= 400 && d.LastStatus != 409 && d.RevokedAt == 0 {
		code := d.LastCode
		if code == "" {
			code = "an error"
		}
		add("last_request_failed", "the last request failed with %d %s", d.LastStatus, code)
	}
	if d.LastPush > 0 && d.LastPull > 0 && d.LastPush > d.LastPull && now.Sub(time.UnixMilli(d.LastPull)) > time.Hour {
		add("pushes_without_pull", "pushes arrive but the last successful pull was %s ago", since(now, d.LastPull))
	}
	if d.Pulls > 0 && d.LastPull == 0 {
		add("never_pulled", "no pull of this device ever succeeded")
	} else if d.LastPull > 0 && now.Sub(time.UnixMilli(d.LastPull)) > StaleAfter {
		add("stale", "no successful pull for %s", since(now, d.LastPull))
	}
	if d.SchemaVersion > 0 && schemaVersion > 0 && d.SchemaVersion < schemaVersion {
		add("old_schema", "the app runs schema version %d; the server serves %d", d.SchemaVersion, schemaVersion)
	}
	if d.Rejected > 0 {
		add("rejections", "%d record(s) pushed by this device were rejected", d.Rejected)
	}
	return out
}

func since(now time.Time, ms int64) string {
	d := now.Sub(time.UnixMilli(ms))
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	case d >= 2*time.Hour:
		return fmt.Sprintf("%d hours", int(d/time.Hour))
	default:
		return fmt.Sprintf("%d minutes", int(d/time.Minute))
	}
}
