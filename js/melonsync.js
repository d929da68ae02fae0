// melonsync — sync functions for WatermelonDB apps talking to a melonsync server.
// An ES module without dependencies or a build step; types in melonsync.d.ts.
//
//   import { synchronize } from '@nozbe/watermelondb/sync'
//   import { createSync, liveUpdates, deviceId } from './melonsync.js'
//
//   const server = createSync({ url: 'https://sync.example.com', token: () => getToken(), device: deviceId() })
//   const sync = () => synchronize({ database, ...server.syncOptions(), migrationsEnabledAtVersion: 1 })
//   const live = liveUpdates({ ...server.options, onChange: sync })
//   // live.close() on sign-out

/** The base class of every error a melonsync answer raises. */
export class MelonSyncError extends Error {
  constructor(message, { status = 0, code = '', details = {}, retryAfter = null, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause })
    this.name = 'MelonSyncError'
    /** HTTP status (0: no answer: network error) */
    this.status = status
    /** the error code of the answer's {"error": {"code"}} */
    this.code = code
    this.details = details
    /** seconds from Retry-After, or null */
    this.retryAfter = retryAfter
  }
}

/** 409: the server changed since the pull (or a rolling upgrade is in progress). The
 * sync fails; the next one pulls, merges and pushes again. */
export class ConflictError extends MelonSyncError {
  constructor(message, info) {
    super(message, info)
    this.name = 'ConflictError'
  }
}

/** 401 or 403: the token is missing, expired or refused, or the device was revoked. */
export class AuthError extends MelonSyncError {
  constructor(message, info) {
    super(message, info)
    this.name = 'AuthError'
  }
}

/** 429, 503 or 507 (the server's storage is full): try again after retryAfter seconds. */
export class UnavailableError extends MelonSyncError {
  constructor(message, info) {
    super(message, info)
    this.name = 'UnavailableError'
  }
}

/** No answer at all: offline, DNS, or a CORS refusal (the browser hides which). */
export class NetworkError extends MelonSyncError {
  constructor(message, info) {
    super(message, info)
    this.name = 'NetworkError'
  }
}

const DEVICE_RE = /^[A-Za-z0-9_.-]{1,64}$/

/**
 * A stable id for this local database, kept in localStorage under key when there is
 * one (a new random id otherwise). Send it as the device: a retried push whose answer
 * was lost is then not a conflict, and live updates skip this device's own pushes.
 */
export function deviceId(key = 'melonsync.device') {
  const store = typeof localStorage !== 'undefined' ? localStorage : null
  let id = store && store.getItem(key)
  if (!id || !DEVICE_RE.test(id)) {
    id = randomId()
    if (store) store.setItem(key, id)
  }
  return id
}

function randomId() {
  if (globalThis.crypto && typeof globalThis.crypto.randomUUID === 'function') return globalThis.crypto.randomUUID()
  return `d${Date.now().toString(36)}${Math.random().toString(36).slice(2, 12)}`
}

function normalize(options) {
  if (!options || typeof options.url !== 'string' || !options.url) throw new TypeError('melonsync: options.url is required')
  if (options.device !== undefined && options.device !== null && !DEVICE_RE.test(options.device)) {
    throw new TypeError('melonsync: options.device must match ^[A-Za-z0-9_.-]{1,64}$')
  }
  const given = options.fetch || globalThis.fetch
  if (typeof given !== 'function') throw new TypeError('melonsync: no fetch; pass options.fetch')
  // Called as a plain function: a browser's fetch refuses any other `this`.
  const f = options.fetch ? (...a) => given(...a) : (...a) => globalThis.fetch(...a)
  return {
    gzipMinBytes: 64 * 1024,
    sendCreatedAsUpdated: false,
    ...options,
    url: options.url.replace(/\/+$/, ''),
    fetch: f,
  }
}

async function tokenOf(o) {
  const t = typeof o.token === 'function' ? await o.token() : o.token
  return t || null
}

async function headersOf(o) {
  const h = { 'Content-Type': 'application/json', Accept: 'application/json' }
  const t = await tokenOf(o)
  if (t) h.Authorization = `Bearer ${t}`
  if (o.device) h['X-Melon-Device'] = o.device
  if (o.sendCreatedAsUpdated) h['X-Melon-Send-Created-As-Updated'] = 'true'
  return h
}

// errorOf turns a non-2xx answer into the matching error.
async function errorOf(res, what) {
  let body = null
  try {
    body = await res.json()
  } catch (e) {
    body = null
  }
  const e = body && typeof body.error === 'object' && body.error ? body.error : {}
  const ra = res.headers.get('Retry-After')
  const info = { status: res.status, code: e.code || '', details: e.details || {}, retryAfter: ra !== null && ra !== '' && !isNaN(+ra) ? +ra : null }
  const details = info.details && Object.keys(info.details).length ? ` ${JSON.stringify(info.details)}` : ''
  const msg = `melonsync ${what}: ${res.status}${e.code ? ` ${e.code}` : ''}${e.message ? `: ${e.message}` : ''}${details}`
  if (res.status === 409) return new ConflictError(msg, info)
  if (res.status === 401 || res.status === 403) return new AuthError(msg, info)
  if (res.status === 429 || res.status === 503 || res.status === 507) return new UnavailableError(msg, info)
  return new MelonSyncError(msg, info)
}

async function call(o, what, path, body, extraHeaders) {
  const headers = { ...(await headersOf(o)), ...extraHeaders }
  let res
  try {
    res = await o.fetch(`${o.url}${path}`, { method: 'POST', headers, body })
  } catch (cause) {
    throw new NetworkError(`melonsync ${what}: no answer from ${o.url} (${cause && cause.message ? cause.message : cause})`, { cause })
  }
  if (!res.ok) throw await errorOf(res, what)
  return res
}

// gzip compresses text with CompressionStream, or returns null where there is none.
async function gzip(text) {
  if (typeof CompressionStream === 'undefined' || typeof Blob === 'undefined' || typeof Response === 'undefined') return null
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream('gzip'))
  return new Uint8Array(await new Response(stream).arrayBuffer())
}

/**
 * Returns pullChanges and pushChanges for WatermelonDB's synchronize(), talking to the
 * melonsync server at options.url. Non-2xx answers throw a MelonSyncError subclass
 * (a 409 is a ConflictError: that sync fails, the next one merges; a 503, say from
 * the app's write hook, is an UnavailableError). Records the server refuses are passed
 * to options.onRejected(rejectedIds, reasons) with the reasons by id. Pushes of at
 * least options.gzipMinBytes (64 KiB) are gzipped where CompressionStream exists.
 */
export function createSync(options) {
  const o = normalize(options)
  // What the last paged pull said: whether more pages wait, and progress so far.
  const paging = { hasMore: false, pulled: 0, remaining: 0 }
  async function pullChanges({ lastPulledAt, schemaVersion, migration }) {
    const req = { lastPulledAt: lastPulledAt ?? null, schemaVersion, migration: migration ?? null }
    if (o.pageSize) req.pageSize = o.pageSize
    const res = await call(o, 'pull', '/api/sync/pull', JSON.stringify(req))
    const out = await res.json() // { changes, timestamp, experimentalStrategy?, hasMore?, remaining? }
    if (o.pageSize) {
      let n = 0
      for (const t of Object.values(out.changes || {})) n += (t.created || []).length + (t.updated || []).length
      paging.hasMore = out.hasMore === true || out.experimentalHasMore === true
      paging.pulled += n
      paging.remaining = paging.hasMore ? out.remaining || 0 : 0
      if (o.onProgress) o.onProgress({ pulled: paging.pulled, remaining: paging.remaining, hasMore: paging.hasMore })
    }
    return out
  }
  // syncAll runs sync (a function that runs synchronize() with these pullChanges and
  // pushChanges) until the server has no more pages: with options.pageSize, each
  // synchronize() takes one page, applies it and saves its timestamp, so an
  // interrupted first sync resumes where it stopped.
  async function syncAll(sync, { maxRounds = 100000 } = {}) {
    paging.pulled = 0
    for (let round = 1; ; round++) {
      paging.hasMore = false
      await sync()
      if (!paging.hasMore) return { rounds: round, pulled: paging.pulled }
      if (round >= maxRounds) throw new MelonSyncError(`melonsync syncAll: still more pages after ${round} rounds`, {})
    }
  }
  async function pushChanges({ changes, lastPulledAt }) {
    const text = JSON.stringify({ changes, lastPulledAt })
    let body = text
    const extra = {}
    if (o.gzipMinBytes >= 0 && text.length >= o.gzipMinBytes) {
      const zipped = await gzip(text)
      if (zipped) {
        body = zipped
        extra['Content-Encoding'] = 'gzip'
      }
    }
    const res = await call(o, 'push', '/api/sync/push', body, extra)
    const out = await res.json()
    if (!out || !out.experimentalRejectedIds) return {}
    // Refused records stay unsynced; the server's reasons (a write hook's) reach the app.
    const reasons = out.rejectedReasons || {}
    if (typeof o.onRejected === 'function') o.onRejected(out.experimentalRejectedIds, reasons)
    return { experimentalRejectedIds: out.experimentalRejectedIds, rejectedReasons: reasons }
  }
  return {
    options: o,
    pullChanges,
    pushChanges,
    /** pullChanges, pushChanges and sendCreatedAsUpdated, to spread into synchronize() */
    syncOptions() {
      return { pullChanges, pushChanges, sendCreatedAsUpdated: !!o.sendCreatedAsUpdated }
    },
    syncAll,
    /** a stream-only ticket for GET /api/sync/events?ticket=… ({ ticket, expiresAt }) */
    ticket: () => ticketOf(o),
  }
}

async function ticketOf(o) {
  const res = await call(o, 'events ticket', '/api/sync/events/ticket', '')
  return res.json()
}

/**
 * Wraps sync (a function running synchronize()) so that calls while one runs fold
 * into one more run after it: WatermelonDB refuses concurrent syncs.
 */
export function serialize(sync) {
  let running = null
  let again = false
  const run = async () => {
    try {
      do {
        again = false
        await sync()
      } while (again)
    } finally {
      running = null
    }
  }
  return () => {
    if (running) {
      again = true
      return running
    }
    running = run()
    return running
  }
}

/**
 * Follows the server's live updates and calls options.onChange(timestamp) when another
 * device changed this user's data (and after a reconnect, which may have missed some).
 * The stream is opened with a short-lived ticket (POST /api/sync/events/ticket with
 * the token), never with the token in the URL; a new ticket is fetched whenever the
 * stream ends (token expiry, network loss), with a growing delay after failures.
 * options: those of createSync plus onChange, onError (each failure), onOpen,
 * EventSource (to inject one), maxDelayMs (30000). Returns { close() }.
 */
export function liveUpdates(options) {
  const o = normalize(options)
  const ES = o.EventSource || globalThis.EventSource
  if (typeof ES !== 'function') throw new TypeError('melonsync: no EventSource; pass options.EventSource')
  if (typeof o.onChange !== 'function') throw new TypeError('melonsync: options.onChange is required')
  const onChange = serialize(() => o.onChange(lastTimestamp))
  let es = null
  let closed = false
  let timer = null
  let failures = 0
  let connects = 0
  let lastTimestamp = 0
  const fire = (ts) => {
    lastTimestamp = ts
    Promise.resolve(onChange()).catch((e) => o.onError && o.onError(e))
  }
  const retry = () => {
    if (closed) return
    const delay = failures === 0 ? 0 : Math.min(o.maxDelayMs || 30000, 500 * 2 ** Math.min(failures, 10))
    clearTimeout(timer)
    timer = setTimeout(open, delay)
  }
  async function open() {
    if (closed) return
    let t
    try {
      t = await ticketOf(o)
    } catch (e) {
      failures++
      if (o.onError) o.onError(e)
      if (e instanceof AuthError && e.status === 403) return // revoked: stop
      retry()
      return
    }
    if (closed) return
    const source = new ES(`${o.url}/api/sync/events?ticket=${encodeURIComponent(t.ticket)}`)
    es = source
    let ended = false
    const done = () => {
      if (ended) return
      ended = true
      source.close()
      if (es === source) es = null
      retry()
    }
    source.addEventListener('ready', (ev) => {
      failures = 0
      connects++
      const ts = JSON.parse(ev.data).timestamp
      if (o.onOpen) o.onOpen(ts)
      if (connects > 1) fire(ts) // changes may have come while it was down
    })
    source.addEventListener('changes', (ev) => fire(JSON.parse(ev.data).timestamp))
    source.addEventListener('expired', done) // the token expired: a new ticket, a fresh token
    source.onerror = () => {
      if (ended) return
      // EventSource would reconnect with the same ticket, which may have expired: take
      // over and open with a new one.
      failures++
      if (o.onError) o.onError(new NetworkError('melonsync events: the stream broke', { status: 0 }))
      done()
    }
  }
  open()
  return {
    close() {
      closed = true
      clearTimeout(timer)
      if (es) es.close()
      es = null
    },
  }
}
