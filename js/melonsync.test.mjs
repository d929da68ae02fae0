// Tests of melonsync.js without a server: node --test js/melonsync.test.mjs
// (go test ./interop runs them).
import test from 'node:test'
import assert from 'node:assert/strict'
import { gunzipSync } from 'node:zlib'
import { createSync, liveUpdates, serialize, ConflictError, AuthError, UnavailableError, NetworkError } from './melonsync.js'

// fakeFetch answers with the given replies in order and records the requests.
function fakeFetch(replies) {
  const calls = []
  const f = async (url, init) => {
    calls.push({ url, ...init })
    const r = replies.shift()
    if (r instanceof Error) throw r
    const body = r.body === undefined ? '{}' : JSON.stringify(r.body)
    return new Response(body, { status: r.status || 200, headers: r.headers || { 'Content-Type': 'application/json' } })
  }
  f.calls = calls
  return f
}

test('pull and push send the token, the device and the body', async () => {
  const f = fakeFetch([{ body: { changes: {}, timestamp: 7 } }, { body: { ok: true, timestamp: 8, experimentalRejectedIds: { t: ['x'] } } }])
  const s = createSync({ url: 'http://s.test/', token: async () => 'TOK', device: 'dev-1', fetch: f })
  assert.deepEqual(await s.pullChanges({ lastPulledAt: undefined, schemaVersion: 3, migration: null }), { changes: {}, timestamp: 7 })
  assert.deepEqual(await s.pushChanges({ changes: { t: { created: [], updated: [], deleted: [] } }, lastPulledAt: 7 }), { experimentalRejectedIds: { t: ['x'] }, rejectedReasons: {} })
  assert.equal(f.calls[0].url, 'http://s.test/api/sync/pull')
  assert.equal(f.calls[0].headers.Authorization, 'Bearer TOK')
  assert.equal(f.calls[0].headers['X-Melon-Device'], 'dev-1')
  assert.deepEqual(JSON.parse(f.calls[0].body), { lastPulledAt: null, schemaVersion: 3, migration: null })
  assert.equal(f.calls[1].url, 'http://s.test/api/sync/push')
  assert.equal(f.calls[1].headers['Content-Encoding'], undefined) // small: not gzipped
})

test('large pushes are gzipped', async () => {
  const f = fakeFetch([{ body: { ok: true } }])
  const s = createSync({ url: 'http://s.test', token: 'T', fetch: f, gzipMinBytes: 100 })
  const changes = { t: { created: [{ id: 'a', name: 'x'.repeat(500) }], updated: [], deleted: [] } }
  await s.pushChanges({ changes, lastPulledAt: 1 })
  assert.equal(f.calls[0].headers['Content-Encoding'], 'gzip')
  assert.deepEqual(JSON.parse(gunzipSync(f.calls[0].body).toString()), { changes, lastPulledAt: 1 })
})

test('non-2xx answers throw typed errors', async () => {
  const err = (status, code, headers) => ({ status, headers: { 'Content-Type': 'application/json', ...headers }, body: { error: { code, message: 'm', details: { conflicts: { t: ['a'] } } } } })
  const f = fakeFetch([err(409, 'conflict'), err(401, 'unauthorized'), err(503, 'unavailable', { 'Retry-After': '3' }), err(507, 'storage_full', { 'Retry-After': '30' }), err(400, 'invalid_request'), new TypeError('Failed to fetch')])
  const s = createSync({ url: 'http://s.test', token: 'T', fetch: f })
  const push = () => s.pushChanges({ changes: {}, lastPulledAt: 1 })
  await assert.rejects(push, (e) => e instanceof ConflictError && e.status === 409 && e.code === 'conflict' && /"conflicts"/.test(e.message))
  await assert.rejects(push, (e) => e instanceof AuthError && e.status === 401)
  await assert.rejects(push, (e) => e instanceof UnavailableError && e.retryAfter === 3)
  await assert.rejects(push, (e) => e instanceof UnavailableError && e.status === 507 && e.code === 'storage_full' && e.retryAfter === 30)
  await assert.rejects(push, (e) => e.name === 'MelonSyncError' && e.status === 400)
  await assert.rejects(push, (e) => e instanceof NetworkError && e.status === 0)
})

test('a bad device id is refused', () => {
  assert.throws(() => createSync({ url: 'http://s.test', device: 'a b', fetch: fakeFetch([]) }), TypeError)
})

test('serialize folds calls made while one runs', async () => {
  let runs = 0
  let release
  const fn = serialize(() => { runs++; return new Promise((r) => (release = r)) })
  const p = fn()
  fn()
  fn()
  release()
  await new Promise((r) => setTimeout(r, 10))
  release()
  await p
  assert.equal(runs, 2)
})

// FakeES is an EventSource the test drives.
class FakeES {
  static all = []
  constructor(url) {
    this.url = url
    this.listeners = {}
    this.closed = false
    FakeES.all.push(this)
  }
  addEventListener(type, fn) {
    this.listeners[type] = fn
  }
  emit(type, data) {
    this.listeners[type]({ data: JSON.stringify(data) })
  }
  close() {
    this.closed = true
  }
}

test('liveUpdates opens with a ticket, syncs on changes and re-tickets after expiry', async () => {
  FakeES.all = []
  const f = fakeFetch([{ body: { ticket: 'T1', expiresAt: 1 } }, { body: { ticket: 'T2', expiresAt: 2 } }])
  const seen = []
  const live = liveUpdates({ url: 'http://s.test', token: 'TOK', device: 'd1', fetch: f, EventSource: FakeES, onChange: async (ts) => seen.push(ts) })
  await new Promise((r) => setTimeout(r, 20))
  assert.equal(FakeES.all.length, 1)
  assert.equal(FakeES.all[0].url, 'http://s.test/api/sync/events?ticket=T1')
  assert.equal(f.calls[0].url, 'http://s.test/api/sync/events/ticket')
  assert.equal(f.calls[0].headers.Authorization, 'Bearer TOK')
  FakeES.all[0].emit('ready', { timestamp: 1 })
  FakeES.all[0].emit('changes', { timestamp: 5 })
  await new Promise((r) => setTimeout(r, 20))
  assert.deepEqual(seen, [5]) // not on the first connect
  FakeES.all[0].emit('expired', {})
  await new Promise((r) => setTimeout(r, 50))
  assert.ok(FakeES.all[0].closed)
  assert.equal(FakeES.all.length, 2)
  assert.equal(FakeES.all[1].url, 'http://s.test/api/sync/events?ticket=T2')
  FakeES.all[1].emit('ready', { timestamp: 9 })
  await new Promise((r) => setTimeout(r, 20))
  assert.deepEqual(seen, [5, 9]) // a reconnect syncs: it may have missed changes
  live.close()
  assert.ok(FakeES.all[1].closed)
})
