package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// activity is what the serve processes' PostgreSQL backends were doing, sampled
// from pg_stat_activity: how many were active on average, and how many of those
// waited on a heavyweight lock (a row, a table, an advisory lock). It shows whether
// pushes wait on each other in the database.
type activity struct {
	samples, active, locked int64
}

func (a activity) String() string {
	if a.samples == 0 {
		return ""
	}
	share := 0.0
	if a.active > 0 {
		share = 100 * float64(a.locked) / float64(a.active)
	}
	return fmt.Sprintf("%.1f backends active, %.0f%% of them waiting on a lock", float64(a.active)/float64(a.samples), share)
}

// sampleActivity samples the backends named app every 20 ms until ctx ends.
func sampleActivity(ctx context.Context, dsn, app string) activity {
	var a activity
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return a
	}
	defer conn.Close(context.Background())
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return a
		case <-t.C:
		}
		var active, locked int64
		err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'active'),
			count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'Lock')
			FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&active, &locked)
		if err != nil {
			return a
		}
		a.samples++
		a.active += active
		a.locked += locked
	}
}
