package client

// TEMPORARY: compile-only stand-in for the client database API of branch clientdb.
// Deleted when clientdb is merged.

import (
	"context"
	"errors"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/schema"
)

type Option func()
type DB struct{ s *schema.Schema }
type Tx struct{}
type Record = map[string]any
type Query struct{}
type LocalChanges struct {
	Changes melonsync.Changes
	Count   int
}
type ApplyOptions struct {
	SendCreatedAsUpdated bool
	ConflictResolver     func(table string, local, remote, resolved Record) Record
	OnConflict           func(table string, local, remote, resolved Record)
	Strategy             Strategy
	OnWarning            func(table, id, message string)
}

const (
	StrategyIncremental = "incremental"
	StrategyReplacement = "replacement"
)

type Strategy struct {
	Default          string
	Override         map[string]string
	ReplacementScope map[string][]Condition
}

func (s Strategy) For(table string) string                     { return "" }
func (s Strategy) Validate() error                             { return nil }
func validateRemoteRaw(table string, raw map[string]any) error { return nil }

type ChangeEvent struct{ Changes []struct{ FromSync bool } }

func (e ChangeEvent) HasLocalChanges() bool { return true }
func (db *DB) Path() string                 { return "" }

type Condition struct{}

func Where(c ...Condition) Query            { return Query{} }
func Eq(column string, value any) Condition { return Condition{} }

func Open(path string, s *schema.Schema, opts ...Option) (*DB, error)       { panic("stub") }
func (db *DB) Close() error                                                 { panic("stub") }
func (db *DB) Schema() *schema.Schema                                       { return db.s }
func (db *DB) Write(ctx context.Context, fn func(tx *Tx) error) error       { panic("stub") }
func (db *DB) Read(ctx context.Context, fn func(tx *Tx) error) error        { panic("stub") }
func (tx *Tx) Create(table string, values map[string]any) (Record, error)   { panic("stub") }
func (tx *Tx) Update(table, id string, values map[string]any) error         { panic("stub") }
func (tx *Tx) MarkAsDeleted(table, id string) error                         { panic("stub") }
func (tx *Tx) DestroyPermanently(table, id string) error                    { panic("stub") }
func (tx *Tx) Find(table, id string) (Record, error)                        { panic("stub") }
func (tx *Tx) Query(table string, q Query) ([]Record, error)                { panic("stub") }
func (tx *Tx) Count(table string, q Query) (int, error)                     { panic("stub") }
func (tx *Tx) GetLocal(key string) (string, bool, error)                    { panic("stub") }
func (tx *Tx) SetLocal(key, value string) error                             { panic("stub") }
func (tx *Tx) RemoveLocal(key string) error                                 { panic("stub") }
func (db *DB) FetchLocalChanges(ctx context.Context) (*LocalChanges, error) { panic("stub") }
func (db *DB) MarkAsSynced(ctx context.Context, lc *LocalChanges, rejected map[string][]string) error {
	panic("stub")
}
func (tx *Tx) ApplyRemoteChanges(changes melonsync.Changes, opts ApplyOptions) error { panic("stub") }
func (tx *Tx) InsertSynced(table string, rec Record) error                           { panic("stub") }
func (db *DB) HasUnsyncedChanges(ctx context.Context) (bool, error)                  { panic("stub") }
func (db *DB) Subscribe(tables []string, fn func(ChangeEvent)) (unsubscribe func())  { panic("stub") }

func (db *DB) GetLocal(ctx context.Context, key string) (string, bool, error) { panic("stub") }
func (db *DB) SetLocal(ctx context.Context, key, value string) error          { panic("stub") }

var ErrExists = errors.New("stub")
