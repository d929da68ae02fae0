package client

import (
	"github.com/melonsync/melonsync"
)

type migrationInfo struct {
	schemaVersion           int
	migration               *melonsync.Migration
	shouldSaveSchemaVersion bool
}

// getMigrationInfo decides what WatermelonDB's getMigrationInfo decides (see the table
// in WatermelonDB's Implementation/SyncImpl):
//
//	LPA   MEA   LS    CV   migration  set LS=CV?
//	null  X     X     10   null       yes  (first sync)
//	100   null  X     X    null       no   (migration syncs not enabled)
//	100   X     10    10   null       no   (up to date)
//	100   9     9     10   {9-10}     yes
//	100   9     null  10   {9-10}     yes  (fallback: from MEA)
//	100   9     11    10   error           (LS > CV)
//	100   11    X     10   error           (MEA > CV)
func getMigrationInfo(tx *Tx, db *DB, log *SyncLog, lastPulledAt *int64, enabledAt int) (migrationInfo, error) {
	s := db.Schema()
	isFirstSync := lastPulledAt == nil
	current := s.Version

	lps64, err := readLocalInt(tx, melonsync.KeyLastPulledSchemaVersion)
	if err != nil {
		return migrationInfo{}, err
	}
	var lastSynced *int
	if lps64 != nil {
		v := int(*lps64)
		lastSynced = &v
	}
	log.update(func(l *SyncLog) { l.LastPulledSchemaVersion = copyPtr(lastSynced) })
	if lastSynced != nil && isFirstSync {
		log.warn("lastPulledSchemaVersion is set, but this is the first sync; this most likely means that the backend does not return a correct timestamp")
	}

	enabled := enabledAt != 0
	if enabled {
		if enabledAt < 1 {
			return migrationInfo{}, programmerError("invalid migrationsEnabledAtVersion %d", enabledAt)
		}
		if enabledAt > current {
			return migrationInfo{}, programmerError("migrationsEnabledAtVersion (%d) must not be greater than current schema version (%d)", enabledAt, current)
		}
		if s.Migrations == nil {
			return migrationInfo{}, programmerError("migration syncs cannot be enabled on a database that does not support migrations (the schema has no migrations)")
		}
		if enabledAt < s.Migrations.Min {
			return migrationInfo{}, programmerError("migrationsEnabledAtVersion is too low - not possible to migrate from schema version %d", enabledAt)
		}
		if lastSynced != nil && *lastSynced > current {
			return migrationInfo{}, programmerError("last synced schema version (%d) is greater than current schema version (%d); this indicates programmer error", *lastSynced, current)
		}
	}

	from := enabledAt
	if lastSynced != nil {
		from = *lastSynced
	}
	shouldMigrate := enabled && from < current && !isFirstSync
	var migration *melonsync.Migration
	if shouldMigrate && s.Migrations != nil {
		migration, err = s.SyncChanges(from)
		if err != nil {
			return migrationInfo{}, programmerError("cannot compute the migration sync from schema version %d to %d: %v", from, current, err)
		}
	}
	log.update(func(l *SyncLog) { l.Migration = migration })
	if migration != nil && lastSynced == nil {
		log.warn("performing a fallback migration sync from migrationsEnabledAtVersion %d to %d; it might not contain all necessary migrations", from, current)
	}
	return migrationInfo{
		schemaVersion:           current,
		migration:               migration,
		shouldSaveSchemaVersion: shouldMigrate || isFirstSync,
	}, nil
}
