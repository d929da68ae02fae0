// An example write hook for "melonsync serve --hook-url" (Node + Express): it refuses
// tasks whose name is longer than 80 characters and trims the names of the others.
//
//   npm install express && MELONSYNC_HOOK_SECRET=s3cret node server.js   # 127.0.0.1:9090
const crypto = require('node:crypto')
const express = require('express')

const secret = process.env.MELONSYNC_HOOK_SECRET
const app = express()

// X-Melon-Signature is "sha256=" + hex HMAC-SHA256(secret, X-Melon-Timestamp + "." + raw body).
function verified(req) {
  const ts = req.get('X-Melon-Timestamp') || ''
  const want = 'sha256=' + crypto.createHmac('sha256', secret).update(ts + '.').update(req.body).digest('hex')
  const got = req.get('X-Melon-Signature') || ''
  const fresh = Math.abs(Date.now() / 1000 - Number(ts)) < 300 // refuse replays
  return fresh && got.length === want.length && crypto.timingSafeEqual(Buffer.from(got), Buffer.from(want))
}

app.post('/melonsync-hook', express.raw({ type: 'application/json', limit: '32mb' }), (req, res) => {
  if (!verified(req)) return res.status(401).send('bad signature') // the push answers 503
  const { changes } = JSON.parse(req.body)
  const tasks = changes.tasks || { created: [], updated: [] }
  const rejected = [], reasons = {}, rewritten = []
  for (const task of [...tasks.created, ...tasks.updated]) {
    if (typeof task.name !== 'string') continue
    if (task.name.length > 80) {
      rejected.push(task.id)
      reasons[task.id] = 'name too long (80 characters at most)'
    } else if (task.name.trim() !== task.name) {
      rewritten.push({ id: task.id, name: task.name.trim() })
    }
  }
  res.json({ rejected: { tasks: rejected }, reasons, changes: { tasks: { updated: rewritten } } })
})

app.listen(9090, '127.0.0.1')
