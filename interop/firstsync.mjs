#!/usr/bin/env node
// A first sync of the real WatermelonDB client (LokiJS adapter, in memory) through the
// js/ helper, paged or not, in a process of its own so that its peak memory is its own:
//
//   node firstsync.mjs URL TOKEN SCHEMA.json [PAGE_SIZE]
//
// With FIRSTSYNC_SQLITE=FILE.db the client uses WatermelonDB's own SQLite adapter (Node,
// better-sqlite3) on that file instead, with the packages installed in
// FIRSTSYNC_MODULES (a directory holding node_modules with @nozbe/watermelondb and
// better-sqlite3; default client/testdata/wmdb-sqlite, see its install.sh).
//
// Prints one JSON line: records, rounds, time, CPU time (user + system, seconds), peak
// RSS, the largest pull answer (bytes of JSON), WatermelonDB's error and warning logs,
// progress reports, and a digest of every record (for comparing a paged sync with an
// unpaged one).

import { createRequire } from 'node:module'
import { readFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { createSync } from '../js/melonsync.js'

const sqliteFile = process.env.FIRSTSYNC_SQLITE || ''
const modules = process.env.FIRSTSYNC_MODULES || new URL('../client/testdata/wmdb-sqlite/', import.meta.url).pathname
const require = createRequire(sqliteFile ? `${modules.replace(/\/?$/, '/')}package.json` : import.meta.url)
const logs = []
for (const level of ['log', 'warn', 'error', 'info']) {
  console[level] = (...a) => logs.push({ level, message: a.map(String).join(' ') })
}
const { Database, Model } = require('@nozbe/watermelondb')
const { appSchema, tableSchema } = require('@nozbe/watermelondb/Schema')
const { synchronize } = require('@nozbe/watermelondb/sync')

const [url, token, schemaFile, pageArg] = process.argv.slice(2)
const pageSize = pageArg ? Number(pageArg) : 0
const spec = JSON.parse(readFileSync(schemaFile, 'utf8'))
const tables = spec.tables.map((t) => tableSchema({ name: t.name, columns: t.columns.map((c) => ({ name: c.name, type: c.type, isOptional: !!c.isOptional, ...(sqliteFile && c.isIndexed ? { isIndexed: true } : {}) })) }))
const schema = appSchema({ version: spec.version, tables })
const modelClasses = spec.tables.map((t) => class extends Model { static table = t.name })
const adapter = sqliteFile
  ? new (require('@nozbe/watermelondb/adapters/sqlite').default)({ schema, dbName: sqliteFile, jsi: false })
  : new (require('@nozbe/watermelondb/adapters/lokijs').default)({ schema, useWebWorker: false, useIncrementalIndexedDB: false, dbName: 'firstsync', extraLokiOptions: { autosave: false } })
const database = new Database({ adapter, modelClasses })

let peakRSS = 0
const sample = () => { peakRSS = Math.max(peakRSS, process.memoryUsage().rss) }
const timer = setInterval(sample, 20)
let largest = 0
const progress = []
// Measures every answer's JSON size (what a phone's JS engine must hold as one string).
const measuringFetch = async (...a) => {
  const res = await fetch(...a)
  const text = await res.text()
  largest = Math.max(largest, text.length)
  return new Response(text, { status: res.status, headers: res.headers })
}
const sync = createSync({ url, token, device: `firstsync-${pageSize}`, fetch: measuringFetch, pageSize: pageSize || undefined,
  onProgress: (p) => progress.push(p) })
const pageRecords = () => progress.map((p, i) => p.pulled - (i ? progress[i - 1].pulled : 0))

const cpu0 = process.cpuUsage()
const started = performance.now()
const { rounds } = await sync.syncAll(() => synchronize({ database, ...sync.syncOptions() }))
const seconds = (performance.now() - started) / 1000
const cpu = process.cpuUsage(cpu0)
const cpuSeconds = (cpu.user + cpu.system) / 1e6
sample()
clearInterval(timer)

const hash = createHash('sha256')
let records = 0
for (const t of spec.tables) {
  const rows = await database.get(t.name).query().fetch()
  records += rows.length
  const raws = rows.map((r) => r._raw).sort((x, y) => (x.id < y.id ? -1 : 1))
  for (const raw of raws) {
    hash.update(t.name + JSON.stringify([raw.id, raw._status, ...t.columns.map((c) => raw[c.name])]))
  }
}
// The one warning the in-memory adapter's options cause in Node (see driver.mjs).
const setupWarning = '{useIncrementalIndexedDB: false} option is now deprecated'
const bad = logs.filter((l) => (l.level === 'error' || l.level === 'warn') && !l.message.includes(setupWarning))
console.info = () => {}
process.stdout.write(JSON.stringify({ records, rounds, seconds, cpuSeconds, adapter: sqliteFile ? 'sqlite' : 'lokijs', peakRSS, largest, progress: progress.slice(0, 3).concat(progress.slice(-1)), progressReports: progress.length, maxPage: Math.max(0, ...pageRecords()), logs: bad, digest: hash.digest('hex') }) + '\n')
process.exit(0)
