package postgres

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/server"
)

// TestTimeouts: pulls run under their own statement timeout, writes under the
// connection's; a statement that runs into one answers unavailable.
func TestTimeouts(t *testing.T) {
	dsn := os.Getenv("MELONSYNC_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("MELONSYNC_TEST_POSTGRES is not set")
	}
	ctx := context.Background()
	name := "melon_test_timeouts_" + time.Now().Format("150405.000000")[7:]
	s, err := Open(ctx, dsn, WithSchema(name), WithReadTimeout(300*time.Millisecond), WithStatementTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		s.pool.Exec(ctx, `DROP SCHEMA `+quoteIdent(name)+` CASCADE`)
		s.Close()
	}()
	var got string
	err = s.Read(ctx, func(rt server.ReadTx) error {
		if err := rt.(*readTx).tx.QueryRow(ctx, `SHOW statement_timeout`).Scan(&got); err != nil {
			return err
		}
		_, err := rt.(*readTx).tx.Exec(ctx, `SELECT pg_sleep(1)`)
		return wrap("sleep", err)
	})
	if got != "300ms" {
		t.Errorf("pull statement_timeout = %q, want 300ms", got)
	}
	if !errors.Is(err, melonsync.ErrUnavailable) {
		t.Errorf("a pull running into its timeout: %v, want unavailable", err)
	}
	err = s.Write(ctx, func(wt server.WriteTx) error {
		return wt.(*writeTx).tx.QueryRow(ctx, `SHOW statement_timeout`).Scan(&got)
	})
	if err != nil || got != "5s" {
		t.Errorf("write statement_timeout = %q (%v), want 5s", got, err)
	}
}
