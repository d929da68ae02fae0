package client

// WatermelonDB's synchronize-migration.test.js.

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/schema"
)

// stSchema10 is the test schema at version 10 with two more tables; with migrations
// it has WatermelonDB's test migrations: 8 (nothing), 9 (create attachments), 10 (add
// attachment_versions.reactions).
func stSchema10(t *testing.T, withMigrations bool) *schema.Schema {
	t.Helper()
	src := `{
  "version": 10,
  "tables": [
    {"name": "mock_projects", "columns": [{"name": "name", "type": "string"}]},
    {"name": "attachments", "columns": [{"name": "parent_id", "type": "string", "isIndexed": true}]},
    {"name": "attachment_versions", "columns": [{"name": "reactions", "type": "string"}]}
  ]`
	if withMigrations {
		src += `,
  "migrations": [
    {"toVersion": 10, "steps": [{"type": "add_columns", "table": "attachment_versions", "columns": [{"name": "reactions", "type": "string"}]}]},
    {"toVersion": 9, "steps": [{"type": "create_table", "name": "attachments", "columns": [{"name": "parent_id", "type": "string", "isIndexed": true}]}]},
    {"toVersion": 8, "steps": []}
  ]`
	}
	s, err := schema.Parse([]byte(src + "}"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func stSync(t *testing.T, db *DB, pull *stPuller, mea int) error {
	t.Helper()
	return Synchronize(context.Background(), db, SyncOptions{PullChanges: pull.Pull, PushChanges: (&stPusher{}).Push, MigrationsEnabledAtVersion: mea})
}

func stLastSchemaVersion(t *testing.T, db *DB) *int {
	t.Helper()
	v, err := LastPulledSchemaVersion(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMigrationSyncRemembersSchemaVersionOnFirstSync(t *testing.T) {
	for _, tc := range []struct {
		name string
		migs bool
		mea  int
	}{{"migrations enabled", true, 7}, {"migrations not enabled", false, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			db := ldbOpen(t, stSchema10(t, tc.migs))
			pull := stEmptyPull(1500)
			if err := stSync(t, db, pull, tc.mea); err != nil {
				t.Fatal(err)
			}
			c := pull.Calls()[0]
			if c.LastPulledAt != nil || c.SchemaVersion != 10 || c.Migration != nil {
				t.Errorf("pull args %+v", c)
			}
			if v := stLastSchemaVersion(t, db); v == nil || *v != 10 {
				t.Errorf("last pulled schema version %v, want 10", v)
			}
			if v, _ := stGetLocal(t, db, melonsync.KeyLastPulledSchemaVersion); v != "10" {
				t.Errorf("%s = %q", melonsync.KeyLastPulledSchemaVersion, v)
			}
		})
	}
}

func TestMigrationSyncNotRememberedWhenNotEnabled(t *testing.T) {
	db := ldbOpen(t, stSchema10(t, false))
	stSetLocal(t, db, melonsync.KeyLastPulledAt, "100")
	pull := stEmptyPull(1500)
	if err := stSync(t, db, pull, 0); err != nil {
		t.Fatal(err)
	}
	c := pull.Calls()[0]
	if c.LastPulledAt == nil || *c.LastPulledAt != 100 || c.SchemaVersion != 10 || c.Migration != nil {
		t.Errorf("pull args %+v", c)
	}
	if v := stLastSchemaVersion(t, db); v != nil {
		t.Errorf("last pulled schema version %d, want none", *v)
	}
}

func TestMigrationSyncNoneWhenUpToDate(t *testing.T) {
	db := ldbOpen(t, stSchema10(t, true))
	stSetLocal(t, db, melonsync.KeyLastPulledAt, "1500")
	stSetLocal(t, db, melonsync.KeyLastPulledSchemaVersion, "10")
	pull := stEmptyPull(2500)
	if err := stSync(t, db, pull, 7); err != nil {
		t.Fatal(err)
	}
	c := pull.Calls()[0]
	if *c.LastPulledAt != 1500 || c.SchemaVersion != 10 || c.Migration != nil {
		t.Errorf("pull args %+v", c)
	}
	if v := stLastSchemaVersion(t, db); *v != 10 {
		t.Errorf("last pulled schema version %d", *v)
	}
}

func TestMigrationSyncOnSchemaVersionBump(t *testing.T) {
	db := ldbOpen(t, stSchema10(t, true))
	stSetLocal(t, db, melonsync.KeyLastPulledAt, "1500")
	stSetLocal(t, db, melonsync.KeyLastPulledSchemaVersion, "9")
	pull := stEmptyPull(2500)
	log := &SyncLog{}
	if err := Synchronize(context.Background(), db, SyncOptions{PullChanges: pull.Pull, MigrationsEnabledAtVersion: 7, Log: log}); err != nil {
		t.Fatal(err)
	}
	want := &melonsync.Migration{From: 9, Tables: []string{}, Columns: []melonsync.MigrationColumns{{Table: "attachment_versions", Columns: []string{"reactions"}}}}
	c := pull.Calls()[0]
	if *c.LastPulledAt != 1500 || c.SchemaVersion != 10 || !cmp.Equal(c.Migration, want) {
		t.Errorf("pull args %+v migration %+v", c, c.Migration)
	}
	if !cmp.Equal(log.Migration, want) || *log.LastPulledSchemaVersion != 9 {
		t.Errorf("log migration %+v, last schema version %v", log.Migration, log.LastPulledSchemaVersion)
	}
	if v := stLastSchemaVersion(t, db); *v != 10 {
		t.Errorf("last pulled schema version %d", *v)
	}
}

func TestMigrationSyncFallback(t *testing.T) {
	db := ldbOpen(t, stSchema10(t, true))
	stSetLocal(t, db, melonsync.KeyLastPulledAt, "1500")
	pull := stEmptyPull(2500)
	log := &SyncLog{}
	if err := Synchronize(context.Background(), db, SyncOptions{PullChanges: pull.Pull, MigrationsEnabledAtVersion: 8, Log: log}); err != nil {
		t.Fatal(err)
	}
	want := &melonsync.Migration{From: 8, Tables: []string{"attachments"}, Columns: []melonsync.MigrationColumns{{Table: "attachment_versions", Columns: []string{"reactions"}}}}
	if c := pull.Calls()[0]; !cmp.Equal(c.Migration, want) {
		t.Errorf("migration %+v, want %+v", c.Migration, want)
	}
	if v := stLastSchemaVersion(t, db); v == nil || *v != 10 {
		t.Errorf("last pulled schema version %v", v)
	}
	if len(log.Warnings) == 0 || !strings.Contains(strings.Join(log.Warnings, "\n"), "fallback") {
		t.Errorf("no warning about the fallback migration: %v", log.Warnings)
	}
}

func TestMigrationSyncNotRememberedWhenPullFails(t *testing.T) {
	db := ldbOpen(t, stSchema10(t, true))
	pull := &stPuller{fn: func(context.Context, PullArgs) (*PullResult, error) { return nil, errors.New("pull-fail") }}
	if err := stSync(t, db, pull, 8); err == nil {
		t.Fatal("no error")
	}
	if v := stLastSchemaVersion(t, db); v != nil {
		t.Errorf("last pulled schema version %d", *v)
	}
}

func TestMigrationSyncProgrammerErrors(t *testing.T) {
	db := ldbOpen(t, stSchema10(t, true))
	noMigs := ldbOpen(t, stSchema10(t, false))
	for _, tc := range []struct {
		db   *DB
		mea  int
		want string
	}{
		{db, -9, "invalid migrationsEnabledAtVersion"},
		{db, 11, "migrationsEnabledAtVersion (11) must not be greater than current schema version"},
		{noMigs, 9, "migration syncs cannot be enabled on a database that does not support migrations"},
		{db, 6, "migrationsEnabledAtVersion is too low - not possible to migrate from schema version 6"},
	} {
		pull := stEmptyPull(1500)
		err := stSync(t, tc.db, pull, tc.mea)
		if !errors.Is(err, ErrProgrammer) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("mea %d: %v, want a programmer error %q", tc.mea, err, tc.want)
		}
		if len(pull.Calls()) != 0 {
			t.Errorf("mea %d: pulled anyway", tc.mea)
		}
	}
}

func TestMigrationSyncFailsWhenLastSyncedVersionIsNewer(t *testing.T) {
	db := ldbOpen(t, stSchema10(t, true))
	stSetLocal(t, db, melonsync.KeyLastPulledAt, "1500")
	stSetLocal(t, db, melonsync.KeyLastPulledSchemaVersion, "11")
	err := stSync(t, db, stEmptyPull(2500), 10)
	if !errors.Is(err, ErrProgrammer) || !strings.Contains(err.Error(), "last synced schema version (11) is greater than current schema version (10)") {
		t.Fatalf("error %v", err)
	}
}

// A first sync with a last synced schema version set is odd (the server's timestamps
// are wrong) but not an error: it is noted in the log.
func TestMigrationSyncWarnsOnSchemaVersionWithoutTimestamp(t *testing.T) {
	db := ldbOpen(t, stSchema10(t, true))
	stSetLocal(t, db, melonsync.KeyLastPulledSchemaVersion, "9")
	log := &SyncLog{}
	if err := Synchronize(context.Background(), db, SyncOptions{PullChanges: stEmptyPull(100).Pull, MigrationsEnabledAtVersion: 8, Log: log}); err != nil {
		t.Fatal(err)
	}
	if len(log.Warnings) == 0 {
		t.Error("no warning")
	}
	if v := stLastSchemaVersion(t, db); *v != 10 {
		t.Errorf("last pulled schema version %d, want 10", *v)
	}
}
