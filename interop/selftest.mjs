#!/usr/bin/env node
// Checks the driver's own mechanics against a tiny in-process fake sync server (NOT a
// test of melonsync: the fake knows one user, no migrations and no replacement).
//
//   node selftest.mjs
//
// Exits 0 when every check passed.

import http from 'node:http'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'

const here = dirname(fileURLToPath(import.meta.url))

// ---- fake server: one user, records with versions, created-vs-updated by device ----
function fakeServer() {
  let clock = 1000
  const tables = {} // table -> id -> {raw, version, createdAt, createdBy, deleted}
  const tick = () => ++clock
  const json = (res, status, body) => {
    res.writeHead(status, { 'Content-Type': 'application/json' })
    res.end(JSON.stringify(body))
  }
  return http.createServer((req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      if (req.headers.authorization !== 'Bearer good') return json(res, 401, { error: { code: 'unauthorized', message: 'bad token', details: {} } })
      const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : {}
      const device = req.headers['x-melon-device'] || ''
      if (req.url === '/api/sync/pull') {
        const since = body.lastPulledAt || 0
        const changes = {}
        for (const t of ['projects', 'tasks']) {
          changes[t] = { created: [], updated: [], deleted: [] }
          for (const [id, r] of Object.entries(tables[t] || {})) {
            if (r.version <= since) continue
            if (r.deleted) {
              if (since) changes[t].deleted.push(id)
            } else if (!since || (r.createdAt > since && r.createdBy !== device)) changes[t].created.push(r.raw)
            else changes[t].updated.push(r.raw)
          }
        }
        return json(res, 200, { changes, timestamp: clock })
      }
      if (req.url === '/api/sync/push') {
        const conflicts = {}
        for (const [t, ch] of Object.entries(body.changes)) {
          for (const raw of [...ch.created, ...ch.updated]) {
            const r = (tables[t] || {})[raw.id]
            if (r && r.version > body.lastPulledAt && r.lastBy !== device) (conflicts[t] ||= []).push(raw.id)
          }
        }
        if (Object.keys(conflicts).length) return json(res, 409, { error: { code: 'conflict', message: 'conflict: pull first', details: { conflicts } } })
        const v = tick()
        for (const [t, ch] of Object.entries(body.changes)) {
          tables[t] ||= {}
          for (const raw of [...ch.created, ...ch.updated]) {
            const { _status, _changed, ...clean } = raw
            const r = tables[t][raw.id]
            tables[t][raw.id] = { raw: { ...(r ? r.raw : {}), ...clean }, version: v, createdAt: r ? r.createdAt : v, createdBy: r ? r.createdBy : device, lastBy: device }
          }
          for (const id of ch.deleted) if (tables[t][id]) Object.assign(tables[t][id], { deleted: true, version: v, lastBy: device })
        }
        return json(res, 200, { ok: true, timestamp: v })
      }
      json(res, 404, { error: { code: 'not_found', message: 'no such endpoint', details: {} } })
    })
  })
}

const schema = {
  version: 1,
  tables: [
    { name: 'projects', columns: [{ name: 'name', type: 'string' }, { name: 'position', type: 'number' }] },
    { name: 'tasks', columns: [{ name: 'project_id', type: 'string', isIndexed: true }, { name: 'name', type: 'string' }, { name: 'is_done', type: 'boolean' }] },
  ],
}

function runDriver(scenario) {
  const dir = mkdtempSync(join(tmpdir(), 'melon-selftest-'))
  const file = join(dir, 'scenario.json')
  writeFileSync(file, JSON.stringify(scenario))
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [join(here, 'driver.mjs'), file], { stdio: ['pipe', 'pipe', 'inherit'] })
    let out = ''
    p.stdout.on('data', (d) => {
      out += d
      for (const line of out.split('\n').slice(0, -1)) {
        const msg = JSON.parse(line)
        if (msg.checkpoint) p.stdin.write('{}\n')
      }
      out = out.slice(out.lastIndexOf('\n') + 1)
      if (out === '') return
    })
    let all = ''
    p.stdout.on('data', (d) => (all += d))
    p.on('close', (code) => {
      rmSync(dir, { recursive: true, force: true })
      const lines = all.trim().split('\n')
      resolve({ code, result: JSON.parse(lines[lines.length - 1]) })
    })
  })
}

const srv = fakeServer()
await new Promise((r) => srv.listen(0, '127.0.0.1', r))
const url = `http://127.0.0.1:${srv.address().port}`
let failures = 0
const check = (name, cond, detail) => {
  if (!cond) failures++
  console.log(`${cond ? 'ok  ' : 'FAIL'} ${name}${cond ? '' : `: ${detail}`}`)
}

{
  const { code, result } = await runDriver({
    name: 'two clients', url, schema,
    clients: { A: { token: 'good' }, B: { token: 'good' } },
    steps: [
      { op: 'create', client: 'A', table: 'projects', id: 'p1', values: { name: 'Home', position: 1 } },
      { op: 'expect', client: 'A', table: 'projects', records: [{ id: 'p1', _status: 'created', name: 'Home' }] },
      { op: 'sync', client: 'A' },
      { op: 'expect', client: 'A', table: 'projects', records: [{ id: 'p1', _status: 'synced', _changed: '' }] },
      { op: 'sync', client: 'B' },
      { op: 'update', client: 'B', table: 'projects', id: 'p1', values: { name: 'Home!' } },
      { op: 'expect', client: 'B', table: 'projects', records: [{ id: 'p1', _status: 'updated', _changed: 'name' }] },
      {
        op: 'sync', client: 'A',
        beforePush: [{ op: 'sync', client: 'B' }],
      },
      { op: 'update', client: 'A', table: 'projects', id: 'p1', values: { position: 7 } },
      { op: 'sync', client: 'A', beforePush: [{ op: 'update', client: 'B', table: 'projects', id: 'p1', values: { name: 'B again' } }, { op: 'sync', client: 'B' }], expectError: 'conflict' },
      { op: 'sync', client: 'A' },
      { op: 'sync', client: 'B' },
      { op: 'expectConverged', clients: ['A', 'B'] },
      { op: 'expect', client: 'B', table: 'projects', records: [{ id: 'p1', name: 'B again', position: 7 }] },
      { op: 'markAsDeleted', client: 'A', table: 'projects', id: 'p1' },
      { op: 'expect', client: 'A', table: 'projects', records: [{ id: 'p1', _status: 'deleted' }] },
      { op: 'checkpoint', name: 'mid' },
      { op: 'sync', client: 'A' },
      { op: 'sync', client: 'B' },
      { op: 'expect', client: 'B', table: 'projects', records: [] },
      { op: 'http', client: 'A', method: 'POST', path: '/api/sync/pull', body: { lastPulledAt: null, schemaVersion: 1, migration: null }, expectStatus: 200, expectJSON: { changes: { projects: { created: [] } } } },
      { op: 'http', method: 'POST', path: '/api/sync/pull', headers: { Authorization: 'Bearer bad' }, body: {}, expectStatus: 401 },
      { op: 'dump', client: 'A' },
    ],
  })
  check('mechanics scenario passes', code === 0 && result.ok, JSON.stringify(result, null, 1).slice(0, 3000))
}

{
  // Must fail: wrong expectation.
  const { code, result } = await runDriver({
    url, schema, clients: { A: { token: 'good' } },
    steps: [{ op: 'create', client: 'A', table: 'tasks', id: 't1', values: { name: 'x' } }, { op: 'expect', client: 'A', table: 'tasks', records: [{ id: 't1', name: 'y' }] }],
  })
  check('wrong expectation fails', code === 1 && !result.ok && /t1\.name/.test(result.error), JSON.stringify(result))
}

{
  // Must fail: WatermelonDB logs an error (server sends a record the client has as created).
  const { code, result } = await runDriver({
    url, schema, clients: { A: { token: 'good', device: '' } , B: { token: 'good' } },
    steps: [
      { op: 'sync', client: 'A' },
      { op: 'create', client: 'B', table: 'tasks', id: 't9', values: { name: 'x' } },
      { op: 'sync', client: 'B' },
      { op: 'create', client: 'A', table: 'tasks', id: 't9', values: { name: 'local' } },
      { op: 'sync', client: 'A' },
    ],
  })
  check('WatermelonDB error log fails the scenario', code === 1 && /already exists locally/.test(result.error || ''), JSON.stringify(result).slice(0, 2000))
}

{
  // allowLogs lets the same run pass.
  const { code, result } = await runDriver({
    url, schema, clients: { A: { token: 'good', device: '' }, B: { token: 'good' } },
    steps: [
      { op: 'sync', client: 'A' },
      { op: 'create', client: 'B', table: 'tasks', id: 't10', values: { name: 'x' } },
      { op: 'sync', client: 'B' },
      { op: 'create', client: 'A', table: 'tasks', id: 't10', values: { name: 'local' } },
      { op: 'sync', client: 'A', allowLogs: ['already exists locally'], expectLogs: ['already exists locally'] },
    ],
  })
  check('allowLogs/expectLogs', code === 0 && result.ok, JSON.stringify(result).slice(0, 2000))
}

{
  const { code, result } = await runDriver({
    url, schema, clients: { A: { token: 'bad' } },
    steps: [{ op: 'sync', client: 'A', expectError: '401 unauthorized' }, { op: 'sync', client: 'A' }],
  })
  check('auth error surfaces', code === 1 && /pull failed: 401 unauthorized: bad token/.test(result.error), JSON.stringify(result).slice(0, 2000))
}

{
  // Schema upgrade in memory keeps the data and migrates.
  const s2 = {
    version: 2,
    tables: [...schema.tables.map((t) => (t.name === 'tasks' ? { ...t, columns: [...t.columns, { name: 'note', type: 'string', isOptional: true }] } : t)), { name: 'tags', columns: [{ name: 'label', type: 'string' }] }],
    migrations: [{ toVersion: 2, steps: [{ type: 'create_table', name: 'tags', columns: [{ name: 'label', type: 'string' }] }, { type: 'add_columns', table: 'tasks', columns: [{ name: 'note', type: 'string', isOptional: true }] }] }],
  }
  const { code, result } = await runDriver({
    url, schema: s2, clients: { A: { token: 'good', schemaVersion: 1 } },
    steps: [
      { op: 'create', client: 'A', table: 'tasks', id: 'u1', values: { name: 'kept' } },
      { op: 'expect', client: 'A', table: 'tasks', records: [{ id: 'u1', name: 'kept', note: '$absent' }] },
      { op: 'upgradeSchema', client: 'A', version: 2 },
      { op: 'expect', client: 'A', table: 'tasks', records: [{ id: 'u1', name: 'kept', note: null, _status: 'created' }] },
      { op: 'create', client: 'A', table: 'tags', id: 'g1', values: { label: 'red' } },
      { op: 'dump', client: 'A' },
    ],
  })
  check('upgradeSchema keeps data and migrates', code === 0 && result.ok && result.steps.at(-1).dump.__local.schemaVersion === 2, JSON.stringify(result).slice(0, 3000))
}

srv.close()
console.log(failures ? `${failures} check(s) failed` : 'all checks passed')
process.exit(failures ? 1 : 0)
