// Drives WatermelonDB's own SQLite adapter (better-sqlite3) on a database file, for the
// Go client's file-format round-trip test (client/wmdb_test.go).
//
//   node roundtrip.js write SCHEMA.json FILE.db   create or open FILE with SCHEMA and write
//                                                 the fixture below, then dump
//   node roundtrip.js read SCHEMA.json FILE.db    open FILE with SCHEMA (running its
//                                                 migrations), dump, make a few edits, dump
//
// SCHEMA is melonsync's hand-written schema form, with optional "migrations".
// Output (stdout, one JSON object): { before, after, master, userVersion }, where a dump
// is { tables: {name: [raw records sorted by id, deleted ones included]}, local: {...},
// unsynced: bool }. WatermelonDB's own logs go to stderr.
'use strict'

const fs = require('fs')
// WatermelonDB logs through console.log; keep stdout for the result.
console.log = (...args) => process.stderr.write(args.join(' ') + '\n')
console.warn = console.log
console.error = console.log

const { Database, Model, appSchema, tableSchema } = require('@nozbe/watermelondb')
const {
  schemaMigrations,
  createTable,
  addColumns,
  unsafeExecuteSql,
} = require('@nozbe/watermelondb/Schema/migrations')
const SQLiteAdapter = require('@nozbe/watermelondb/adapters/sqlite').default
const { hasUnsyncedChanges } = require('@nozbe/watermelondb/sync')
const BetterSqlite = require('better-sqlite3')

const LOCAL_KEYS = ['__watermelon_last_pulled_at', '__watermelon_last_pulled_schema_version', 'go', 'node']

function buildSchema(spec) {
  const tables = spec.tables.map((t) => tableSchema({ name: t.name, columns: t.columns }))
  const schema = appSchema({ version: spec.version, tables })
  let migrations
  if (spec.migrations && spec.migrations.length) {
    migrations = schemaMigrations({
      migrations: spec.migrations.map((m) => ({
        toVersion: m.toVersion,
        steps: m.steps.map((s) => {
          if (s.type === 'create_table') return createTable({ name: s.name, columns: s.columns })
          if (s.type === 'add_columns') return addColumns({ table: s.table, columns: s.columns })
          if (s.type === 'sql') return unsafeExecuteSql(s.sql)
          throw new Error(`unknown step ${s.type}`)
        }),
      })),
    })
  }
  return { schema, migrations }
}

function open(spec, file) {
  const { schema, migrations } = buildSchema(spec)
  const adapter = new SQLiteAdapter({ schema, migrations, dbName: file, jsi: false })
  const modelClasses = spec.tables.map((t) => {
    const M = class extends Model {}
    M.table = t.name
    return M
  })
  return new Database({ adapter, modelClasses })
}

async function dump(db, spec) {
  const out = { tables: {}, local: {} }
  for (const t of spec.tables) {
    const coll = db.get(t.name)
    const live = await coll.query().fetch()
    const deletedIds = await db.adapter.getDeletedRecords(t.name)
    const deleted = await Promise.all(deletedIds.map((id) => coll.find(id)))
    out.tables[t.name] = live
      .concat(deleted)
      .map((r) => ({ ...r._raw }))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  }
  for (const k of LOCAL_KEYS) {
    const v = await db.adapter.getLocal(k)
    if (v != null) out.local[k] = v
  }
  out.unsynced = await hasUnsyncedChanges({ database: db })
  return out
}

function has(spec, table, column) {
  const t = spec.tables.find((x) => x.name === table)
  return !!t && (!column || t.columns.some((c) => c.name === column))
}

// prepare creates a record with a fixed id and status, setting fields via _setRaw.
function prepare(db, table, id, status, fields) {
  return db.get(table).prepareCreate((r) => {
    r._raw.id = id
    for (const [k, v] of Object.entries(fields)) r._setRaw(k, v)
    if (status) r._raw._status = status
  })
}

async function writeFixture(db, spec) {
  await db.write(async () => {
    const recs = [
      prepare(db, 'projects', 'p_synced', 'synced', { name: 'Synced', is_favorite: true, position: 1.5 }),
      prepare(db, 'projects', 'p_created', null, { name: 'Créé "quoted" \'x\' 🍉', is_favorite: false, position: -2 }),
      prepare(db, 'projects', 'p_updated', 'synced', { name: 'Before', position: 1e15 }),
      prepare(db, 'projects', 'p_deleted', 'synced', { name: 'Doomed' }),
      prepare(db, 'tasks', 't_synced', 'synced', {
        project_id: 'p_synced', name: 'Task', is_done: true, position: 0.1,
        ...(has(spec, 'tasks', 'description') ? { description: 'desc' } : {}),
      }),
      prepare(db, 'tasks', 't_created', null, { project_id: 'p_created', name: 'New task', is_done: false, position: 3 }),
    ]
    await db.batch(...recs)
    const upd = await db.get('projects').find('p_updated')
    await upd.update((r) => {
      r._setRaw('name', 'After')
      r._setRaw('is_favorite', true)
    })
    const created = await db.get('tasks').find('t_created')
    await created.update((r) => r._setRaw('position', 4))
    const del = await db.get('projects').find('p_deleted')
    await del.markAsDeleted()
  })
  await db.adapter.setLocal('__watermelon_last_pulled_at', '1700000000123')
  await db.adapter.setLocal('node', 'wrote this')
}

async function editAsNode(db) {
  await db.write(async () => {
    const projects = db.get('projects')
    try {
      const g = await projects.find('g_synced')
      await g.update((r) => r._setRaw('name', 'edited by node'))
    } catch (e) {
      // not there: nothing to edit
    }
    await projects.create((r) => {
      r._raw.id = 'n_new'
      r._setRaw('name', 'made by node')
      r._setRaw('position', 7)
    })
  })
  await db.adapter.setLocal('node', 'was here')
}

function master(file) {
  const d = new BetterSqlite(file, { readonly: true })
  const rows = d
    .prepare("select type, name, tbl_name, coalesce(sql, '') as sql from sqlite_master order by name")
    .all()
  const userVersion = d.pragma('user_version', { simple: true })
  d.close()
  return { master: rows.map((r) => [r.type, r.name, r.tbl_name, r.sql]), userVersion }
}

async function main() {
  const [cmd, schemaFile, file] = process.argv.slice(2)
  const spec = JSON.parse(fs.readFileSync(schemaFile, 'utf8'))
  const db = open(spec, file)
  await db.adapter.underlyingAdapter.initializingPromise
  let before = null
  let after
  if (cmd === 'write') {
    await writeFixture(db, spec)
    after = await dump(db, spec)
  } else if (cmd === 'read') {
    before = await dump(db, spec)
    await editAsNode(db)
    after = await dump(db, spec)
  } else {
    throw new Error(`unknown command ${cmd}`)
  }
  process.stdout.write(JSON.stringify({ before, after, ...master(file) }) + '\n')
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`roundtrip: ${e && e.stack ? e.stack : e}\n`)
    process.exit(1)
  },
)
