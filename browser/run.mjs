#!/usr/bin/env node
// Drives the test app (app/) in headless Chromium with puppeteer-core: two browser
// contexts are two devices with their own IndexedDB. Usage: node run.mjs CONFIG.json
// where CONFIG is {chromium, appURL, otherAppURL, serverURL, token, screenshot,
// userDataDir}. Prints one JSON line: {ok, error, steps: [{name, ms}], ...}.
import { readFileSync } from 'node:fs'
import puppeteer from 'puppeteer-core'

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const steps = []
const out = { ok: false, steps }
const allowedLogs = ["Deleting database failed because it's blocked by another connection"]

async function step(name, fn) {
  const started = performance.now()
  try {
    return await fn()
  } finally {
    steps.push({ name, ms: Math.round(performance.now() - started) })
  }
}

function check(cond, msg) {
  if (!cond) throw new Error(msg)
}

async function waitFor(page, fn, arg, what, ms = 15000) {
  try {
    await page.waitForFunction(fn, { timeout: ms, polling: 100 }, arg)
  } catch (e) {
    throw new Error(`timed out waiting for ${what}`)
  }
}

const browser = await puppeteer.launch({
  executablePath: cfg.chromium,
  headless: true,
  userDataDir: cfg.userDataDir,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
})
const pages = []
try {
  const open = async (name, url) => {
    const ctx = await browser.createBrowserContext()
    const page = await ctx.newPage()
    page.on('pageerror', (e) => out[`${name}PageError`] = String(e))
    await page.goto(url, { waitUntil: 'load' })
    pages.push({ name, page })
    return page
  }
  const init = (page) => page.evaluate((c) => window.app.init(c), { serverURL: cfg.serverURL, token: cfg.token })
  const list = (page) => page.evaluate(() => window.app.list())
  const sync = async (page, what) => {
    const r = await page.evaluate(() => window.app.sync())
    check(r.ok, `${what}: sync failed: ${r.message}`)
  }

  const A = await open('A', cfg.appURL)
  const B = await open('B', cfg.appURL)
  const devA = await init(A)
  const devB = await init(B)
  check(devA !== devB, 'both contexts have the same device id')

  await step('A creates two tasks and syncs', async () => {
    await A.evaluate(() => window.app.create('t1', 'first'))
    await A.evaluate(() => window.app.create('t2', 'second'))
    await sync(A, 'A')
    const l = await list(A)
    check(l.length === 2 && l.every((r) => r.status === 'synced'), `A after sync: ${JSON.stringify(l)}`)
  })

  await step('A reloads: IndexedDB keeps the data', async () => {
    await new Promise((r) => setTimeout(r, 1500)) // LokiJS autosaves to IndexedDB
    await A.reload({ waitUntil: 'load' })
    const dev = await init(A)
    check(dev === devA, `device id changed on reload: ${devA} → ${dev}`)
    const l = await list(A)
    check(l.length === 2 && l.every((r) => r.status === 'synced'), `A after reload: ${JSON.stringify(l)}`)
  })

  await step('B syncs and gets them', async () => {
    await sync(B, 'B')
    const l = await list(B)
    check(JSON.stringify(l.map((r) => r.name)) === '["first","second"]', `B after sync: ${JSON.stringify(l)}`)
  })

  await step('a live update reaches A', async () => {
    await A.evaluate(() => window.app.startLive())
    await new Promise((r) => setTimeout(r, 1000)) // the stream opens
    await B.evaluate(() => window.app.create('t3', 'from B'))
    await sync(B, 'B')
    await waitFor(A, () => document.body.textContent.includes('from B'), undefined, "B's task to appear on A")
    const n = await A.evaluate(() => window.app.events.length)
    check(n === 1, `A got ${n} events for one push of B`)
  })

  await step("A's own push is not announced to A", async () => {
    await A.evaluate(() => window.app.rename('t2', 'second, renamed'))
    await sync(A, 'A')
    await new Promise((r) => setTimeout(r, 1500))
    const n = await A.evaluate(() => window.app.events.length)
    check(n === 1, `A got events for its own push: ${n}`)
    await A.evaluate(() => window.app.stopLive())
  })

  await step('concurrent edit: 409, then both converge', async () => {
    await sync(B, 'B')
    await B.evaluate(() => window.app.rename('t1', 'B-edit'))
    const held = B.evaluate(() => window.app.sync({ holdPush: true }))
    await waitFor(B, () => window.app.atPush === true, undefined, "B's push")
    await A.evaluate(() => window.app.rename('t1', 'A-edit'))
    await sync(A, 'A')
    await B.evaluate(() => window.app.release())
    const r = await held
    check(!r.ok && r.status === 409 && r.name === 'ConflictError' && r.code === 'conflict', `B's held push: ${JSON.stringify(r)}`)
    out.conflict = r.message
    await sync(B, 'B again')
    await sync(A, 'A again')
    const a = await list(A)
    const b = await list(B)
    check(JSON.stringify(a) === JSON.stringify(b), `A and B differ: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`)
    const t1 = a.find((x) => x.id === 't1')
    check(t1 && t1.name === 'B-edit', `t1 after the merge: ${JSON.stringify(t1)} (B's local change wins)`)
    check(a.every((x) => x.status === 'synced'), `unsynced records: ${JSON.stringify(a)}`)
  })

  await step('a disallowed origin is blocked', async () => {
    const C = await open('C', cfg.otherAppURL)
    const blocked = await C.evaluate((u, t) => window.app.probe(u, t), cfg.serverURL, cfg.token)
    check(blocked.error && /Failed to fetch/.test(blocked.error), `from another origin: ${JSON.stringify(blocked)}`)
    const allowed = await A.evaluate((u, t) => window.app.probe(u, t), cfg.serverURL, cfg.token)
    check(allowed.status === 200, `from the app's origin: ${JSON.stringify(allowed)}`)
  })

  await step('screenshot', async () => {
    await A.screenshot({ path: cfg.screenshot, fullPage: true })
  })

  for (const { name, page } of pages) {
    const logs = await page.evaluate(() => window.app.logs)
    const bad = logs.filter((l) => !allowedLogs.some((a) => l.includes(a)) && !(name === 'C' && l.includes('Failed to fetch')))
    check(bad.length === 0, `page ${name} logged: ${bad.join(' | ')}`)
    if (out[`${name}PageError`]) throw new Error(`page ${name}: ${out[`${name}PageError`]}`)
  }
  out.ok = true
} catch (e) {
  out.error = e.message
  try {
    if (pages[0]) await pages[0].page.screenshot({ path: cfg.screenshot })
  } catch (e2) {}
} finally {
  await browser.close()
}
console.log(JSON.stringify(out))
process.exit(out.ok ? 0 : 1)
