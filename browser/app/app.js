// A small WatermelonDB web app: LokiJS on IndexedDB, synced with melonsync through the
// js/ helper. Bundled with esbuild (IIFE); the test drives it through window.app.
import { Database, Model } from '@nozbe/watermelondb'
import { appSchema, tableSchema } from '@nozbe/watermelondb/Schema'
import { schemaMigrations } from '@nozbe/watermelondb/Schema/migrations'
import LokiJSAdapter from '@nozbe/watermelondb/adapters/lokijs'
import { synchronize } from '@nozbe/watermelondb/sync'
import { createSync, liveUpdates, deviceId } from '../../js/melonsync.js'

// The server's examples/todo schema at version 3.
const schema = appSchema({
  version: 3,
  tables: [
    tableSchema({
      name: 'projects',
      columns: [
        { name: 'name', type: 'string' },
        { name: 'is_favorite', type: 'boolean' },
        { name: 'position', type: 'number' },
      ],
    }),
    tableSchema({
      name: 'comments',
      columns: [
        { name: 'task_id', type: 'string', isIndexed: true },
        { name: 'body', type: 'string' },
      ],
    }),
    tableSchema({
      name: 'tasks',
      columns: [
        { name: 'project_id', type: 'string', isIndexed: true },
        { name: 'name', type: 'string' },
        { name: 'is_done', type: 'boolean' },
        { name: 'position', type: 'number' },
        { name: 'description', type: 'string', isOptional: true },
      ],
    }),
  ],
})

class Task extends Model {
  static table = 'tasks'
}
class Project extends Model {
  static table = 'projects'
}
class Comment extends Model {
  static table = 'comments'
}

const logs = []
for (const level of ['warn', 'error']) {
  const orig = console[level].bind(console)
  console[level] = (...args) => {
    logs.push(`${level}: ${args.map((a) => (a instanceof Error ? a.message : String(a))).join(' ')}`)
    orig(...args)
  }
}

let database
let server
let live
const events = []

function show(text) {
  document.getElementById('status').textContent = text
}

async function render() {
  const rows = await database.get('tasks').query().fetch()
  const ul = document.getElementById('tasks')
  ul.textContent = ''
  for (const r of rows.sort((a, b) => (a.id < b.id ? -1 : 1))) {
    const li = document.createElement('li')
    li.textContent = `${r._raw.name} (${r._raw._status})`
    ul.appendChild(li)
  }
}

window.app = {
  logs,
  events,
  async init({ serverURL, token }) {
    const adapter = new LokiJSAdapter({
      schema,
      // migrationsEnabledAtVersion needs the adapter's migrations; this app started
      // at version 3, so they are empty.
      migrations: schemaMigrations({ migrations: [{ toVersion: 3, steps: [] }, { toVersion: 2, steps: [] }] }),
      dbName: 'melonsync-test',
      useWebWorker: false,
      useIncrementalIndexedDB: true,
    })
    database = new Database({ adapter, modelClasses: [Task, Project, Comment] })
    server = createSync({ url: serverURL, token: () => token, device: deviceId() })
    await render()
    show(`device ${server.options.device}`)
    return server.options.device
  },
  async create(id, name) {
    await database.write(() =>
      database.get('tasks').create((r) => {
        r._raw.id = id
        r._setRaw('name', name)
        r._setRaw('position', 1)
      }),
    )
    await render()
  },
  async rename(id, name) {
    const r = await database.get('tasks').find(id)
    await database.write(() => r.update(() => r._setRaw('name', name)))
    await render()
  },
  async list() {
    const rows = await database.get('tasks').query().fetch()
    return rows.map((r) => ({ id: r.id, name: r._raw.name, status: r._raw._status })).sort((a, b) => (a.id < b.id ? -1 : 1))
  },
  // Syncs; with holdPush, the push waits until release() is called (to make a
  // conflicting push from another device in between).
  async sync({ holdPush = false } = {}) {
    const { pullChanges, pushChanges } = server.syncOptions()
    try {
      await synchronize({
        database,
        pullChanges,
        pushChanges: async (args) => {
          if (holdPush) {
            await new Promise((resolve) => {
              window.app.atPush = true
              window.app.release = resolve
            })
          }
          return pushChanges(args)
        },
        migrationsEnabledAtVersion: 1,
      })
      await render()
      show('synced')
      return { ok: true }
    } catch (e) {
      show(`sync failed: ${e.message}`)
      return { ok: false, name: e.name, status: e.status, code: e.code, message: e.message }
    }
  },
  startLive() {
    live = liveUpdates({
      ...server.options,
      onChange: async (ts) => {
        events.push(ts)
        await window.app.sync()
      },
      onError: (e) => logs.push(`live: ${e.message}`),
    })
  },
  stopLive() {
    if (live) live.close()
  },
  // A plain fetch from this page's origin, to see CORS refuse or allow it.
  async probe(serverURL, token) {
    try {
      const res = await fetch(`${serverURL}/api/sync/pull`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
        body: JSON.stringify({ lastPulledAt: null }),
      })
      return { status: res.status }
    } catch (e) {
      return { error: e.name + ': ' + e.message }
    }
  },
}
