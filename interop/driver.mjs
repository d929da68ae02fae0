#!/usr/bin/env node
// Runs one interop scenario: real WatermelonDB clients (LokiJS adapter, in memory) that
// sync against a melonsync server. Usage:
//
//   node driver.mjs SCENARIO.json     (or "-" / nothing: the scenario on standard input)
//
// Prints one JSON line with the result (last line of standard output) and exits 0 when
// the scenario passed, 1 when it failed, 2 when it could not be read. The scenario format
// is described in README.md next to this file.
//
// A "checkpoint" step prints {"checkpoint": NAME} on standard output and waits for one
// JSON line on standard input (then the scenario must come from a file): the runner can
// act on the server meanwhile (restart it, say) and may answer {"url": NEW_URL}.

import { createRequire } from 'node:module'
import { readFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import zlib from 'node:zlib'
import { inspect } from 'node:util'
import { createInterface } from 'node:readline'
import { AsyncLocalStorage } from 'node:async_hooks'

const require = createRequire(import.meta.url)

// ---------------------------------------------------------------------------------------
// Console capture. WatermelonDB reports protocol problems through console.error/warn;
// every message goes to the sink of the step whose async work logged it (or to the
// set-up's), and to allLogs.

const realConsole = { ...console }
const stepSink = new AsyncLocalStorage()
const setupLogs = []
const allLogs = []

function formatArg(a) {
  if (typeof a === 'string') return a
  if (a instanceof Error) return `${a.name}: ${a.message}`
  return inspect(a, { depth: 4, breakLength: Infinity })
}

function capture(level) {
  return (...args) => {
    const entry = { level, message: args.map(formatArg).join(' ') }
    const sink = stepSink.getStore() || setupLogs
    sink.push(entry)
    allLogs.push(entry)
    if (process.env.MELON_INTEROP_VERBOSE) realConsole.error(`[${level}]`, entry.message)
  }
}
console.log = capture('log')
console.info = capture('info')
console.debug = capture('debug')
console.warn = capture('warn')
console.error = capture('error')

// Warnings WatermelonDB prints for the adapter options this driver must use in Node.
const setupAllowed = ['{useIncrementalIndexedDB: false} option is now deprecated']

// Required after the capture is installed, so that nothing escapes it.
const { Database, Model } = require('@nozbe/watermelondb')
const { appSchema, tableSchema } = require('@nozbe/watermelondb/Schema')
const {
  schemaMigrations,
  createTable,
  addColumns,
  unsafeExecuteSql,
} = require('@nozbe/watermelondb/Schema/migrations')
const LokiJSAdapter = require('@nozbe/watermelondb/adapters/lokijs').default
const { synchronize } = require('@nozbe/watermelondb/sync')
const { LokiMemoryAdapter } = require('lokijs')
// The repo's JS helper (js/melonsync.js), for clients with "protocol": "helper".
const melonsync = await import(new URL('../js/melonsync.js', import.meta.url).href)

// ---------------------------------------------------------------------------------------
// Schema: both JSON forms of the app schema and of migrations, as in SPEC §2.

function normColumn(c) {
  const col = { name: c.name, type: c.type }
  if (c.isOptional) col.isOptional = true
  if (c.isIndexed) col.isIndexed = true
  return col
}

function normColumns(cols) {
  if (Array.isArray(cols)) return cols.map(normColumn)
  if (cols && typeof cols === 'object') return Object.values(cols).map(normColumn)
  return []
}

function normTable(t, nameHint) {
  const columns = t.columnArray ? normColumns(t.columnArray) : normColumns(t.columns)
  return { name: t.name || nameHint, columns }
}

// → { version, tables: [{name, columns}] }
function normSchema(s) {
  if (!s || typeof s !== 'object') throw new Error('scenario: schema missing')
  const tables = Array.isArray(s.tables)
    ? s.tables.map((t) => normTable(t))
    : Object.entries(s.tables || {}).map(([name, t]) => normTable(t, name))
  if (!(s.version > 0)) throw new Error('scenario: schema version missing')
  return { version: s.version, tables }
}

function normStep(st) {
  switch (st.type) {
    case 'create_table': {
      const t = st.schema ? normTable(st.schema) : normTable(st.table && typeof st.table === 'object' ? st.table : st)
      return { type: 'create_table', table: t }
    }
    case 'add_columns':
      return { type: 'add_columns', table: st.table, columns: normColumns(st.columns) }
    case 'sql':
      return { type: 'sql', sql: st.sql }
    default:
      throw new Error(`scenario: unknown migration step ${st.type}`)
  }
}

// → [{toVersion, steps}] sorted
function normMigrations(m) {
  if (!m) return []
  const list = Array.isArray(m) ? m : m.sortedMigrations || m.migrations || []
  return list
    .map((mig) => ({ toVersion: mig.toVersion, steps: (mig.steps || []).map(normStep) }))
    .sort((a, b) => a.toVersion - b.toVersion)
}

// The schema as a client at `version` has it: tables and columns added by later
// migrations are taken out.
function schemaAt(full, migrations, version) {
  if (version === undefined || version === full.version) return full
  if (version > full.version) throw new Error(`scenario: schema version ${version} is newer than the schema (${full.version})`)
  let tables = full.tables.map((t) => ({ name: t.name, columns: [...t.columns] }))
  for (const mig of [...migrations].reverse()) {
    if (mig.toVersion <= version) break
    for (const st of [...mig.steps].reverse()) {
      if (st.type === 'create_table') tables = tables.filter((t) => t.name !== st.table.name)
      if (st.type === 'add_columns') {
        const names = new Set(st.columns.map((c) => c.name))
        tables = tables.map((t) => (t.name === st.table ? { ...t, columns: t.columns.filter((c) => !names.has(c.name)) } : t))
      }
    }
  }
  const oldest = migrations.length ? migrations[0].toVersion - 1 : full.version
  if (version < oldest) throw new Error(`scenario: migrations do not reach back to version ${version}`)
  return { version, tables }
}

function jsSchema(s) {
  return appSchema({ version: s.version, tables: s.tables.map((t) => tableSchema({ name: t.name, columns: t.columns })) })
}

function jsMigrations(migrations, version) {
  return schemaMigrations({
    migrations: migrations
      .filter((m) => m.toVersion <= version)
      .map((m) => ({
        toVersion: m.toVersion,
        steps: m.steps.map((st) => {
          if (st.type === 'create_table') return createTable({ name: st.table.name, columns: st.table.columns })
          if (st.type === 'add_columns') return addColumns({ table: st.table, columns: st.columns })
          return unsafeExecuteSql(st.sql)
        }),
      })),
  })
}

// ---------------------------------------------------------------------------------------
// HTTP: a fresh connection per request (node:http, agent: false).

const MAX_TRACE_BODY = 4000

function clip(s) {
  if (typeof s !== 'string') return s
  return s.length > MAX_TRACE_BODY ? `${s.slice(0, MAX_TRACE_BODY)}… (${s.length} chars)` : s
}

function request(baseUrl, { method, path, headers = {}, body, gzipBody = false }) {
  const url = new URL(path, baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`)
  let payload =
    body === undefined || body === null
      ? null
      : typeof body === 'string' || body instanceof Uint8Array
        ? Buffer.from(body)
        : Buffer.from(JSON.stringify(body))
  const h = { ...headers }
  if (payload && gzipBody) {
    payload = zlib.gzipSync(payload)
    h['Content-Encoding'] = 'gzip'
  }
  if (payload) h['Content-Length'] = String(payload.length)
  const mod = url.protocol === 'https:' ? https : http
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const req = mod.request(url, { method, headers: h, agent: false }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('error', reject)
      res.on('end', () => {
        let buf = Buffer.concat(chunks)
        const enc = res.headers['content-encoding']
        try {
          if (enc === 'gzip') buf = zlib.gunzipSync(buf)
        } catch (e) {
          reject(new Error(`${method} ${url.pathname}: bad gzip body: ${e.message}`))
          return
        }
        const text = buf.toString('utf8')
        let json
        try {
          json = text ? JSON.parse(text) : undefined
        } catch (e) {
          json = undefined
        }
        resolve({
          status: res.statusCode,
          headers: res.headers,
          text,
          json,
          ms: performance.now() - started,
          requestBytes: payload ? payload.length : 0,
          responseBytes: chunks.reduce((n, c) => n + c.length, 0),
        })
      })
    })
    req.on('error', reject)
    if (payload) req.write(payload)
    req.end()
  })
}

function describeError(res) {
  const e = res.json && res.json.error
  if (e && typeof e === 'object') {
    const details = e.details && Object.keys(e.details).length ? ` ${JSON.stringify(e.details)}` : ''
    return `${res.status} ${e.code}: ${e.message}${details}`
  }
  return `${res.status} ${clip(res.text)}`
}

// ---------------------------------------------------------------------------------------
// Clients

class Client {
  constructor(name, spec, scenario) {
    this.name = name
    this.spec = spec
    this.scenario = scenario
    this.token = spec.token || (spec.user && scenario.tokens ? scenario.tokens[spec.user] : undefined)
    this.device = spec.device === undefined ? `device-${name}` : spec.device
    this.sendDeviceHeader = spec.sendDeviceHeader !== false && !!this.device
    this.sendCreatedAsUpdated = !!spec.sendCreatedAsUpdated
    this.migrationsEnabledAtVersion = spec.migrationsEnabledAtVersion === undefined ? 1 : spec.migrationsEnabledAtVersion
    // "api": POST /api/sync/*; "docs": GET/POST /sync as WatermelonDB's docs; "guide":
    // the sync guide's examples (GET /api/sync/pull?since=…, bodies without a type)
    this.protocol = spec.protocol || 'api'
    this.gzip = spec.gzip !== false
    this.gzipRequests = !!spec.gzipRequests
    this.dbName = spec.dbName || `melon-interop-${name}`
    this.exchanges = []
    this.persistence = new LokiMemoryAdapter()
    if (this.protocol === 'helper') {
      // js/melonsync.js, with a fetch over this client's traced requests.
      this.helper = melonsync.createSync({
        url: this.url,
        token: this.token,
        device: this.sendDeviceHeader ? this.device : undefined,
        sendCreatedAsUpdated: this.sendCreatedAsUpdated,
        gzipMinBytes: this.gzipRequests ? 0 : undefined,
        fetch: (url, init) => this.helperFetch(url, init),
      })
    }
  }

  // A fetch for the helper: the request goes through call() (traced, fresh connection).
  async helperFetch(url, init) {
    const u = new URL(url)
    const res = await this.call(init.method, `${u.pathname.slice(1)}${u.search}`, init.body, init.headers, { raw: true })
    return {
      ok: res.status >= 200 && res.status < 300,
      status: res.status,
      headers: { get: (k) => res.headers[k.toLowerCase()] ?? null },
      json: async () => JSON.parse(res.text),
    }
  }

  get url() {
    return this.spec.url || this.scenario.url
  }

  headers() {
    const h = { 'Content-Type': 'application/json', Accept: 'application/json' }
    if (this.gzip) h['Accept-Encoding'] = 'gzip'
    if (this.token) h.Authorization = `Bearer ${this.token}`
    if (this.sendDeviceHeader) h['X-Melon-Device'] = this.device
    if (this.sendCreatedAsUpdated) h['X-Melon-Send-Created-As-Updated'] = 'true'
    return h
  }

  async open(version) {
    const { schema, migrations } = this.scenario
    this.version = version
    this.schema = schemaAt(schema, migrations, version)
    const adapter = new LokiJSAdapter({
      dbName: this.dbName,
      schema: jsSchema(this.schema),
      migrations: jsMigrations(migrations, this.schema.version),
      useWebWorker: false,
      useIncrementalIndexedDB: false,
      extraLokiOptions: { autosave: false },
      // The persistence behind the in-memory Loki database, kept across re-opens.
      _testLokiAdapter: this.persistence,
      onSetUpError: (e) => {
        this.setupError = e
      },
    })
    const modelClasses = this.schema.tables.map((t) => {
      const cls = class extends Model {}
      cls.table = t.name
      Object.defineProperty(cls, 'name', { value: `Model_${t.name}` })
      return cls
    })
    this.adapter = adapter
    this.db = new Database({ adapter, modelClasses })
    await this.db.adapter.getLocal('__melon_interop_probe') // waits for the set-up
    if (this.setupError) throw this.setupError
  }

  // Re-opens the same Loki database (saved to its in-memory persistence) with a newer
  // schema and migrations, as an app update does: WatermelonDB migrates the local
  // database, and the next sync is a migration sync.
  async reopen(version) {
    const loki = this.adapter._driver.loki
    await new Promise((resolve, reject) => loki.saveDatabase((err) => (err ? reject(err) : resolve())))
    await new Promise((resolve) => loki.close(() => resolve()))
    await this.open(version)
  }

  async call(method, path, body, extraHeaders = {}, { raw = false } = {}) {
    const res = await request(this.url, {
      method,
      path,
      headers: { ...this.headers(), ...extraHeaders },
      body,
      gzipBody: this.gzipRequests && !raw,
    })
    this.exchanges.push({
      method,
      path,
      request: body === undefined ? undefined : body instanceof Uint8Array ? `(${body.length} bytes)` : clip(typeof body === 'string' ? body : JSON.stringify(body)),
      status: res.status,
      response: clip(res.text),
      ms: Math.round(res.ms * 10) / 10,
      requestBytes: res.requestBytes,
      responseBytes: res.responseBytes,
    })
    if (this.exchanges.length > 8) this.exchanges.shift()
    return res
  }

  async pull({ lastPulledAt, schemaVersion, migration }) {
    if (this.helper) return this.helper.pullChanges({ lastPulledAt, schemaVersion, migration })
    let res
    if (this.protocol === 'docs') {
      // Exactly as WatermelonDB's docs build it ("null" for a first sync).
      const urlParams = `last_pulled_at=${lastPulledAt}&schema_version=${schemaVersion}&migration=${encodeURIComponent(JSON.stringify(migration))}`
      res = await this.call('GET', `sync?${urlParams}`)
    } else if (this.protocol === 'guide') {
      // The guide's incremental-sync example: the timestamp in the URL ("null" first).
      res = await this.call('GET', `api/sync/pull?since=${lastPulledAt}`)
    } else {
      res = await this.call('POST', 'api/sync/pull', { lastPulledAt: lastPulledAt ?? null, schemaVersion, migration: migration ?? null })
    }
    if (res.status !== 200 || !res.json) throw new Error(`pull failed: ${describeError(res)}`)
    return res.json
  }

  async push({ changes, lastPulledAt }) {
    if (this.helper) {
      const r = await this.helper.pushChanges({ changes, lastPulledAt })
      this.lastPushAnswer = r
      return r
    }
    let res
    if (this.protocol === 'docs') {
      // fetch() with a string body sends it as text/plain, as in WatermelonDB's docs.
      res = await this.call('POST', `sync?last_pulled_at=${lastPulledAt}`, JSON.stringify(changes), { 'Content-Type': 'text/plain;charset=UTF-8' })
    } else if (this.protocol === 'guide') {
      // The guide's pushChanges: fetch() with a string body and no headers of its own.
      res = await this.call('POST', 'api/sync/push', JSON.stringify({ changes, lastPulledAt }), { 'Content-Type': 'text/plain;charset=UTF-8' })
    } else {
      res = await this.call('POST', 'api/sync/push', { changes, lastPulledAt })
    }
    if (res.status !== 200 || !res.json) throw new Error(`push failed: ${describeError(res)}`)
    // What an app shows its user: the server's reasons for refused records.
    this.lastPushAnswer = res.json
    const { experimentalRejectedIds } = res.json
    return experimentalRejectedIds ? { experimentalRejectedIds } : {}
  }

  collection(table) {
    const c = this.db.collections.get(table)
    if (!c) throw new Error(`client ${this.name} (schema version ${this.schema.version}) has no table ${table}`)
    return c
  }

  // Every local raw record of a table, including ones marked as deleted.
  raws(table) {
    this.collection(table)
    const coll = this.adapter._driver.loki.getCollection(table)
    return coll.data.map((doc) => {
      const { $loki, meta, ...raw } = doc
      return raw
    })
  }

  async dump() {
    const out = {}
    for (const t of this.schema.tables) out[t.name] = this.raws(t.name).sort((a, b) => (a.id < b.id ? -1 : 1))
    out.__local = {
      lastPulledAt: await this.db.adapter.getLocal('__watermelon_last_pulled_at'),
      lastPulledSchemaVersion: await this.db.adapter.getLocal('__watermelon_last_pulled_schema_version'),
      schemaVersion: this.schema.version,
    }
    return out
  }
}

// ---------------------------------------------------------------------------------------
// Matching helpers

function changedSet(v) {
  if (Array.isArray(v)) return [...v].sort().join(',')
  if (typeof v !== 'string') return v
  return v
    .split(',')
    .filter((x) => x)
    .sort()
    .join(',')
}

// Partial deep match: objects match when every expected key matches ("$absent": key must be
// missing, "$any": anything present); arrays match element by element with equal length;
// {"$set": [...]}: an array with these values in any order.
function mismatch(actual, expected, path = '') {
  if (expected === '$any') return actual === undefined ? `${path || 'value'}: missing` : null
  if (expected && typeof expected === 'object' && !Array.isArray(expected) && Object.keys(expected).length === 1 && '$set' in expected) {
    const norm = (a) => JSON.stringify([...a].map((x) => JSON.stringify(x)).sort())
    if (!Array.isArray(actual) || norm(actual) !== norm(expected.$set)) return `${path}: expected ${JSON.stringify(expected.$set)} in any order, got ${JSON.stringify(actual)}`
    return null
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return `${path}: expected an array, got ${JSON.stringify(actual)}`
    if (actual.length !== expected.length) return `${path}: expected ${expected.length} items, got ${actual.length}: ${clip(JSON.stringify(actual))}`
    for (let i = 0; i < expected.length; i++) {
      const m = mismatch(actual[i], expected[i], `${path}[${i}]`)
      if (m) return m
    }
    return null
  }
  if (expected && typeof expected === 'object') {
    if (!actual || typeof actual !== 'object') return `${path}: expected an object, got ${JSON.stringify(actual)}`
    for (const [k, v] of Object.entries(expected)) {
      if (v === '$absent') {
        if (k in actual) return `${path}.${k}: expected absent, got ${JSON.stringify(actual[k])}`
        continue
      }
      const m = mismatch(actual[k], v, `${path}.${k}`)
      if (m) return m
    }
    return null
  }
  return actual === expected ? null : `${path || 'value'}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`
}

class StepFailure extends Error {}

function fail(msg) {
  throw new StepFailure(msg)
}

// ---------------------------------------------------------------------------------------
// Steps

let stdinLines = null
function nextStdinLine() {
  if (!stdinLines) {
    const rl = createInterface({ input: process.stdin })
    const queue = []
    const waiters = []
    rl.on('line', (l) => (waiters.length ? waiters.shift()(l) : queue.push(l)))
    rl.on('close', () => waiters.splice(0).forEach((w) => w(null)))
    stdinLines = () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiters.push(r)))
  }
  return stdinLines()
}

class Runner {
  constructor(scenario) {
    this.scenario = scenario
    this.clients = {}
    this.results = []
    this.allowLogs = scenario.allowLogs || []
  }

  client(name) {
    const c = this.clients[name]
    if (!c) throw new Error(`unknown client ${name}`)
    return c
  }

  async setUp() {
    const s = this.scenario
    for (const [name, spec] of Object.entries(s.clients || {})) {
      const c = new Client(name, spec, s)
      await c.open(spec.schemaVersion === undefined ? s.schema.version : spec.schemaVersion)
      this.clients[name] = c
    }
    const bad = setupLogs.filter((l) => (l.level === 'warn' || l.level === 'error') && !setupAllowed.concat(this.allowLogs).some((a) => l.message.includes(a)))
    if (bad.length) throw new Error(`WatermelonDB logged while opening the databases: ${bad.map((l) => `${l.level}: ${l.message}`).join(' | ')}`)
  }

  // Runs a list of steps; returns false after the first failure.
  async runSteps(steps, prefix = '') {
    for (let i = 0; i < steps.length; i++) {
      const ok = await this.runStep(steps[i], `${prefix}${i}`)
      if (!ok) return false
    }
    return true
  }

  async runStep(step, index) {
    const logs = []
    const result = { index, op: step.op, ...(step.client ? { client: step.client } : {}), ...(step.name ? { name: step.name } : {}) }
    this.results.push(result)
    const started = performance.now()
    const firstLog = allLogs.length
    let error = null
    try {
      const fn = this[`op_${step.op}`]
      if (!fn) throw new Error(`unknown step op ${JSON.stringify(step.op)}`)
      await stepSink.run(logs, () => fn.call(this, step, result, index))
    } catch (e) {
      error = e
    }
    result.ms = Math.round((performance.now() - started) * 10) / 10
    let allowed = setupAllowed.concat(this.allowLogs, step.allowLogs || [])
    let seen = logs
    if (step.op === 'parallel') {
      // Everything logged meanwhile, whichever branch it was charged to.
      seen = allLogs.slice(firstLog)
      allowed = allowed.concat(allowedIn(step.branches || []))
    }
    const relevant = seen.filter((l) => l.level !== 'log' && l.level !== 'debug' && l.level !== 'info')
    if (relevant.length || step.showLogs) result.logs = step.showLogs ? logs : relevant
    const bad = relevant.filter((l) => (l.level === 'warn' || l.level === 'error') && !allowed.some((a) => l.message.includes(a)))
    if (bad.length) {
      const said = `WatermelonDB logged ${bad.length} unexpected warning(s)/error(s): ${bad.map((l) => `${l.level}: ${l.message}`).join(' | ')}`
      if (!error) error = new StepFailure(said)
      else if (error instanceof StepFailure) error.message += `; and ${said}`
    }
    for (const want of step.expectLogs || []) {
      if (!error && !seen.some((l) => l.message.includes(want))) error = new StepFailure(`expected WatermelonDB to log ${JSON.stringify(want)}; it did not`)
    }
    if (error) {
      result.ok = false
      result.error = error instanceof StepFailure ? error.message : `${error.name}: ${error.message}`
      if (step.client && this.clients[step.client]) result.exchanges = this.clients[step.client].exchanges.slice(-4)
      return false
    }
    result.ok = true
    return true
  }

  async op_create(step, result) {
    const c = this.client(step.client)
    const coll = c.collection(step.table)
    const rec = await c.db.write(() =>
      coll.create((r) => {
        if (step.id) r._raw.id = step.id
        for (const [k, v] of Object.entries(step.values || {})) r._setRaw(k, v)
      }),
    )
    result.id = rec.id
  }

  // Creates `count` records at once (ids PREFIX-0 …), values with "{i}" replaced.
  async op_createMany(step, result) {
    const c = this.client(step.client)
    const coll = c.collection(step.table)
    const prefix = step.idPrefix || `${step.table}-`
    const fill = (v, i) => (typeof v === 'string' ? v.replaceAll('{i}', String(i)) : v)
    await c.db.write(() =>
      c.db.batch(
        Array.from({ length: step.count }, (_, i) =>
          coll.prepareCreate((r) => {
            r._raw.id = `${prefix}${i}`
            for (const [k, v] of Object.entries(step.values || {})) r._setRaw(k, fill(v, i))
          }),
        ),
      ),
    )
    result.count = step.count
  }

  // The record, or null when step.ignoreMissing and it is missing or marked as deleted.
  async find(c, table, id, step = {}) {
    let rec
    try {
      rec = await c.collection(table).find(id)
    } catch (e) {
      if (step.ignoreMissing) return null
      fail(`client ${c.name}: ${table}#${id} not found locally (${e.message})`)
    }
    if (step.ignoreMissing && rec._raw._status === 'deleted') return null
    return rec
  }

  async op_update(step, result) {
    const c = this.client(step.client)
    const rec = await this.find(c, step.table, step.id, step)
    if (!rec) {
      result.skipped = true
      return
    }
    await c.db.write(() =>
      rec.update((r) => {
        for (const [k, v] of Object.entries(step.values || {})) r._setRaw(k, v)
      }),
    )
  }

  async op_markAsDeleted(step, result) {
    const c = this.client(step.client)
    const rec = await this.find(c, step.table, step.id, step)
    if (!rec) {
      result.skipped = true
      return
    }
    await c.db.write(() => rec.markAsDeleted())
  }

  async op_destroyPermanently(step, result) {
    const c = this.client(step.client)
    const rec = await this.find(c, step.table, step.id, step)
    if (!rec) {
      result.skipped = true
      return
    }
    await c.db.write(() => rec.destroyPermanently())
  }

  // Runs lists of steps concurrently (say, several clients syncing at once). Logs of
  // concurrent steps may land in either step's report.
  async op_parallel(step, result, index) {
    const before = this.results.length
    const oks = await Promise.all((step.branches || []).map((list, b) => this.runSteps(list, `${index}.${b}.`)))
    if (oks.some((ok) => !ok)) {
      const f = this.results.slice(before).find((r) => r.ok === false)
      fail(`parallel step ${f.index} (${f.op}${f.client ? ` ${f.client}` : ''}) failed: ${f.error}`)
    }
  }

  async op_sync(step, result, index) {
    const c = this.client(step.client)
    const log = {}
    const timing = {}
    let nested = true
    const runNested = async (list, tag) => {
      if (!list || !list.length) return
      const before = this.results.length
      nested = await this.runSteps(list, `${index}.${tag}.`)
      if (!nested) {
        const f = this.results.slice(before).find((r) => r.ok === false)
        throw new StepFailure(`${tag} step ${f.index} (${f.op}${f.client ? ` ${f.client}` : ''}) failed: ${f.error}`)
      }
    }
    let syncError = null
    try {
      await synchronize({
        database: c.db,
        pullChanges: async (args) => {
          const t = performance.now()
          const r = await c.pull(args)
          timing.pullMs = Math.round(performance.now() - t)
          timing.pulledAt = performance.now()
          result.pull = summarizeChanges(r.changes, { timestamp: r.timestamp, ...(r.experimentalStrategy ? { experimentalStrategy: r.experimentalStrategy } : {}) })
          if (step.recordPull) result.pulled = r
          return r
        },
        pushChanges: async (args) => {
          if (timing.pulledAt) timing.applyMs = Math.round(performance.now() - timing.pulledAt)
          await runNested(step.beforePush, 'beforePush')
          result.push = summarizeChanges(args.changes, { lastPulledAt: args.lastPulledAt })
          if (step.recordPush) result.pushed = args.changes
          const t = performance.now()
          const r = await c.push(args)
          result.pushAnswer = c.lastPushAnswer
          timing.pushMs = Math.round(performance.now() - t)
          timing.pushedAt = performance.now()
          if (step.losePushResponse) {
            // The server applied the push, but the client never hears back.
            result.lostPushResponse = r
            throw new Error('network error (simulated): the push response was lost')
          }
          return r
        },
        sendCreatedAsUpdated: c.sendCreatedAsUpdated,
        migrationsEnabledAtVersion: c.migrationsEnabledAtVersion || undefined,
        log,
        ...(step.turbo ? { unsafeTurbo: true } : {}),
      })
    } catch (e) {
      syncError = e
    }
    if (timing.pushedAt) timing.markMs = Math.round(performance.now() - timing.pushedAt)
    else if (timing.pulledAt && timing.applyMs === undefined) timing.applyMs = Math.round(performance.now() - timing.pulledAt)
    delete timing.pulledAt
    delete timing.pushedAt
    result.timing = timing
    result.log = summarizeLog(log)
    if (!nested) throw syncError
    if (syncError instanceof StepFailure) throw syncError
    if (step.expectError) {
      // true: any error (a connection cut mid-answer fails as "aborted" or as
      // "read ECONNRESET", depending on which Node notices first).
      const wants = step.expectError === true ? [] : Array.isArray(step.expectError) ? step.expectError : [step.expectError]
      if (!syncError) fail(`sync succeeded; expected an error containing ${JSON.stringify(step.expectError)}`)
      const missing = wants.filter((w) => !syncError.message.includes(w))
      if (missing.length) fail(`sync failed with ${JSON.stringify(syncError.message)}; expected an error containing ${JSON.stringify(missing)}`)
      result.expectedError = syncError.message
    } else if (syncError && step.allowError && [].concat(step.allowError).some((w) => syncError.message.includes(w))) {
      result.allowedError = syncError.message
    } else if (syncError) {
      throw syncError
    }
    await runNested(step.after, 'after')
    if (step.expectPull) {
      if (!result.pull) fail('nothing was pulled')
      const m = mismatch(result.pull, step.expectPull, 'pull')
      if (m) fail(`pull answer: ${m}`)
    }
    if (step.expectPush !== undefined) {
      if (step.expectPush === null) {
        if (result.push) fail(`expected nothing to be pushed, pushed ${JSON.stringify(result.push)}`)
      } else {
        if (!result.push) fail('nothing was pushed')
        const m = mismatch(result.push, step.expectPush, 'push')
        if (m) fail(`pushed changes: ${m}`)
      }
    }
    if (step.expectPushAnswer) {
      if (!result.pushAnswer) fail('no push answer')
      const m = mismatch(result.pushAnswer, step.expectPushAnswer, 'push answer')
      if (m) fail(`push answer: ${m}`)
    }
    if (step.expectLog) {
      const m = mismatch(result.log, step.expectLog, 'log')
      if (m) fail(`sync log: ${m}`)
    }
  }

  async op_expect(step, result) {
    const c = this.client(step.client)
    const raws = c.raws(step.table)
    const byId = new Map(raws.map((r) => [r.id, r]))
    const problems = []
    for (const want of step.records || []) {
      const have = byId.get(want.id)
      if (!have) {
        problems.push(`${step.table}#${want.id}: missing`)
        continue
      }
      for (const [k, v] of Object.entries(want)) {
        const actual = k === '_changed' ? changedSet(have[k]) : have[k]
        const expected = k === '_changed' ? changedSet(v) : v
        if (expected === '$absent' ? k in have : JSON.stringify(actual) !== JSON.stringify(expected)) {
          problems.push(`${step.table}#${want.id}.${k}: expected ${JSON.stringify(v)}, got ${JSON.stringify(have[k])}`)
        }
      }
    }
    for (const id of step.absent || []) if (byId.has(id)) problems.push(`${step.table}#${id}: expected absent, got ${JSON.stringify(byId.get(id))}`)
    const exact = step.exact === undefined ? step.records !== undefined && step.count === undefined : step.exact
    if (exact) {
      const listed = new Set((step.records || []).map((r) => r.id))
      const extra = raws.filter((r) => !listed.has(r.id)).map((r) => `${r.id}(${r._status})`)
      if (extra.length) problems.push(`${step.table}: unexpected local records ${extra.slice(0, 20).join(', ')}${extra.length > 20 ? ` … (${extra.length})` : ''}`)
    }
    if (step.count !== undefined) {
      const n = step.countStatus ? raws.filter((r) => r._status === step.countStatus).length : raws.length
      if (n !== step.count) problems.push(`${step.table}: expected ${step.count} records${step.countStatus ? ` with _status ${step.countStatus}` : ''}, got ${n}`)
    }
    if (problems.length) {
      result.local = raws.length <= 20 ? raws : `${raws.length} records`
      fail(`client ${c.name}: ${problems.join('; ')}`)
    }
  }

  // The clients hold the same records with the same values in every table they share, and
  // (unless synced: false) have nothing left to push.
  async op_expectConverged(step, result) {
    const names = step.clients
    if (!names || names.length < 2) throw new Error('expectConverged needs two clients or more')
    const clients = names.map((n) => this.client(n))
    const problems = []
    const tables = step.tables || clients[0].schema.tables.map((t) => t.name).filter((t) => clients.every((c) => c.schema.tables.some((x) => x.name === t)))
    let records = 0
    for (const table of tables) {
      const views = clients.map((c) => {
        const cols = c.schema.tables.find((t) => t.name === table).columns.map((x) => x.name)
        return { c, cols, raws: new Map(c.raws(table).map((r) => [r.id, r])) }
      })
      const shared = views[0].cols.filter((col) => views.every((v) => v.cols.includes(col)))
      for (const v of views) {
        if (step.synced !== false) {
          const dirty = [...v.raws.values()].filter((r) => r._status !== 'synced')
          if (dirty.length) problems.push(`client ${v.c.name}: ${table} has unsynced records ${dirty.slice(0, 10).map((r) => `${r.id}(${r._status}${r._changed ? `:${r._changed}` : ''})`).join(', ')}`)
        }
      }
      const base = views[0]
      records += base.raws.size
      for (const v of views.slice(1)) {
        for (const [id, r] of base.raws) {
          const o = v.raws.get(id)
          if (!o) {
            problems.push(`${table}#${id}: on ${base.c.name}, missing on ${v.c.name}`)
            continue
          }
          for (const col of shared) if (r[col] !== o[col]) problems.push(`${table}#${id}.${col}: ${base.c.name} has ${JSON.stringify(r[col])}, ${v.c.name} has ${JSON.stringify(o[col])}`)
        }
        for (const id of v.raws.keys()) if (!base.raws.has(id)) problems.push(`${table}#${id}: on ${v.c.name}, missing on ${base.c.name}`)
      }
    }
    result.records = records
    if (problems.length) fail(`not converged: ${problems.slice(0, 25).join('; ')}${problems.length > 25 ? ` … (${problems.length} differences)` : ''}`)
  }

  async op_upgradeSchema(step) {
    const c = this.client(step.client)
    const version = step.version === undefined ? this.scenario.schema.version : step.version
    if (version <= c.schema.version) throw new Error(`upgradeSchema: client ${c.name} is at version ${c.schema.version} already`)
    await c.reopen(version)
  }

  async op_http(step, result) {
    const c = step.client ? this.client(step.client) : null
    const headers = { ...(c ? c.headers() : { 'Content-Type': 'application/json' }), ...(step.headers || {}) }
    for (const [k, v] of Object.entries(headers)) if (v === null) delete headers[k]
    const res = await request(step.url || (c ? c.url : this.scenario.url), {
      method: step.method || 'POST',
      path: step.path.replace(/^\//, ''),
      headers,
      body: step.body,
      gzipBody: !!step.gzipBody,
    })
    result.status = res.status
    result.response = res.json !== undefined ? res.json : clip(res.text)
    if (typeof result.response === 'object' && JSON.stringify(result.response).length > MAX_TRACE_BODY) result.response = clip(JSON.stringify(result.response))
    const problems = []
    if (step.expectStatus !== undefined && res.status !== step.expectStatus) problems.push(`status ${res.status}, expected ${step.expectStatus}`)
    if (step.expectJSON !== undefined) {
      const m = mismatch(res.json, step.expectJSON, 'body')
      if (m) problems.push(m)
    }
    for (const s of step.expectBodyContains || []) if (!res.text.includes(s)) problems.push(`body lacks ${JSON.stringify(s)}`)
    for (const s of step.expectBodyNotContains || []) if (res.text.includes(s)) problems.push(`body contains ${JSON.stringify(s)}`)
    if (problems.length) {
      result.request = { method: step.method || 'POST', path: step.path, body: step.body === undefined ? undefined : clip(JSON.stringify(step.body)) }
      result.response = clip(res.text)
      fail(`http ${step.method || 'POST'} ${step.path}: ${problems.join('; ')}`)
    }
  }

  async op_dump(step, result) {
    result.dump = await this.client(step.client).dump()
  }

  async op_sleep(step) {
    await new Promise((r) => setTimeout(r, step.ms || 0))
  }

  async op_checkpoint(step, result, index) {
    process.stdout.write(`${JSON.stringify({ checkpoint: step.name || 'checkpoint' })}\n`)
    const line = await nextStdinLine()
    if (line === null) throw new Error('checkpoint: standard input closed (the runner must answer checkpoints)')
    const answer = line.trim() ? JSON.parse(line) : {}
    if (answer.error) fail(`checkpoint ${step.name}: ${answer.error}`)
    if (answer.url) {
      this.scenario.url = answer.url
      result.url = answer.url
    }
    if (answer.tokens) Object.assign(this.scenario.tokens || (this.scenario.tokens = {}), answer.tokens)
    if (answer.steps) {
      // Steps the runner made up meanwhile (say, checks of what another client holds).
      const before = this.results.length
      if (!(await this.runSteps(answer.steps, `${index}.cp.`))) {
        const f = this.results.slice(before).find((r) => r.ok === false)
        fail(`checkpoint step ${f.index} (${f.op}${f.client ? ` ${f.client}` : ''}) failed: ${f.error}`)
      }
    }
  }
}

// {tables: {t: {created: [ids], updated: [ids], deleted: [ids]}}} with sorted ids; tables
// Large lists are replaced by their length.
function summarizeChanges(changes, extra) {
  const tables = {}
  let count = 0
  for (const [t, ch] of Object.entries(changes || {})) {
    const entry = {}
    for (const kind of ['created', 'updated', 'deleted']) {
      const list = (ch && ch[kind]) || []
      const ids = list.map((r) => (typeof r === 'string' ? r : r && r.id)).sort()
      count += ids.length
      entry[kind] = ids.length > 200 ? ids.length : ids
    }
    tables[t] = entry
  }
  return { ...extra, count, tables }
}

function allowedIn(lists) {
  const out = []
  for (const list of lists) {
    for (const st of list) {
      out.push(...(st.allowLogs || []))
      if (st.beforePush) out.push(...allowedIn([st.beforePush]))
      if (st.after) out.push(...allowedIn([st.after]))
      if (st.branches) out.push(...allowedIn(st.branches))
    }
  }
  return out
}

function summarizeLog(log) {
  const out = {}
  for (const [k, v] of Object.entries(log)) {
    if (v instanceof Date) continue
    if (k === 'error' && v) out.error = v.message || String(v)
    else out[k] = v
  }
  if (log.startedAt && log.finishedAt) out.ms = log.finishedAt - log.startedAt
  return out
}

// ---------------------------------------------------------------------------------------

async function readScenario(arg) {
  if (arg && arg !== '-') return JSON.parse(readFileSync(arg, 'utf8'))
  const chunks = []
  for await (const c of process.stdin) chunks.push(c)
  return JSON.parse(Buffer.concat(chunks).toString('utf8'))
}

function emit(obj, code) {
  process.stdout.write(`${JSON.stringify(obj)}\n`, () => process.exit(code))
}

async function main() {
  let scenario
  try {
    scenario = await readScenario(process.argv[2])
    const rawSchema = scenario.schema
    scenario.schema = normSchema(rawSchema)
    scenario.migrations = normMigrations(scenario.migrations || rawSchema.migrations)
    if (!scenario.url) throw new Error('scenario: url missing')
  } catch (e) {
    emit({ ok: false, error: `cannot read the scenario: ${e.message}` }, 2)
    return
  }
  const started = performance.now()
  const runner = new Runner(scenario)
  const out = { name: scenario.name, ok: false }
  try {
    await runner.setUp()
    out.ok = await runner.runSteps(scenario.steps || [])
    if (!out.ok) {
      const failed = runner.results.find((r) => r.ok === false)
      out.error = `step ${failed.index} (${failed.op}${failed.client ? ` ${failed.client}` : ''}${failed.name ? ` "${failed.name}"` : ''}): ${failed.error}`
    }
  } catch (e) {
    out.error = `${e.name}: ${e.message}`
  }
  out.ms = Math.round(performance.now() - started)
  out.steps = runner.results
  const setupProblems = setupLogs.filter((l) => (l.level === 'warn' || l.level === 'error') && !setupAllowed.some((a) => l.message.includes(a)))
  if (setupProblems.length) out.setupLogs = setupProblems
  emit(out, out.ok ? 0 : 1)
}

process.on('unhandledRejection', (e) => {
  emit({ ok: false, error: `unhandled rejection: ${e && e.stack ? e.stack : e}` }, 1)
})

main()
