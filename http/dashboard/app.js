// melonsync admin dashboard: plain JavaScript over /admin/api/. No framework, no
// build step, nothing loaded from elsewhere. Every string from the server goes into
// the page as text (never as HTML).
'use strict';

const TOKEN_KEY = 'melonsync-admin-token';
const app = document.getElementById('app');
let overviewCache = null;

// ---- DOM helpers -------------------------------------------------------------

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const kid of kids.flat()) el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  return el;
}

// ---- formatting --------------------------------------------------------------

const nf = new Intl.NumberFormat('en');
const num = (n) => nf.format(n || 0);

function ago(ms) {
  if (!ms) return 'never';
  const d = Date.now() - ms;
  if (d < 0) return 'just now';
  if (d < 60e3) return `${Math.max(1, Math.round(d / 1e3))} s ago`;
  if (d < 3600e3) return `${Math.round(d / 60e3)} min ago`;
  if (d < 48 * 3600e3) return `${Math.round(d / 3600e3)} h ago`;
  return `${Math.round(d / 86400e3)} days ago`;
}

function clock(ms) {
  if (!ms) return '—';
  const d = new Date(ms);
  const t = d.toLocaleTimeString('en-GB', { hour12: false });
  const today = new Date().toDateString() === d.toDateString();
  return today ? t : `${d.toLocaleDateString('en-CA')} ${t}`;
}

function when(ms) {
  return ms ? h('span', { title: new Date(ms).toISOString() }, ago(ms)) : h('span', { class: 'muted' }, 'never');
}

// A protocol timestamp (ms since the epoch, possibly bumped): shown as the number and
// its time.
function ts(v) {
  if (!v) return h('span', { class: 'muted' }, v === 0 ? '0 (first sync)' : '—');
  return h('span', { class: 'mono', title: new Date(v).toISOString() }, String(v));
}

const deviceName = (d) => d === '' ? '(no device header)' : d;
const devicePath = (d) => d === '' ? '~' : encodeURIComponent(d);

// ---- API ---------------------------------------------------------------------

class APIError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(path, opts = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const res = await fetch('/admin/api/' + path, {
    method: opts.method || 'GET',
    headers: Object.assign({ Authorization: 'Bearer ' + token }, opts.body ? { 'Content-Type': 'application/json' } : {}),
    body: opts.body ? JSON.stringify(opts.body) : undefined,
  });
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) {
    const e = body && body.error;
    if (res.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin('That admin token is not accepted.');
      throw new APIError(401, 'unauthorized', 'signed out');
    }
    throw new APIError(res.status, e ? e.code : 'http_' + res.status, e ? e.message : `the server answered ${res.status}`);
  }
  return body;
}

// ---- login -------------------------------------------------------------------

function showLogin(error) {
  const input = h('input', { type: 'password', name: 'token', id: 'token', placeholder: 'admin token', autocomplete: 'current-password', required: true, autofocus: true });
  const err = error ? h('div', { class: 'page-error', role: 'alert' }, error) : null;
  const form = h('form', {
    id: 'login',
    onsubmit: async (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      try {
        overviewCache = await api('overview');
        render();
      } catch (e) {
        if (!(e instanceof APIError && e.status === 401)) showLogin(e.message);
      }
    },
  },
  h('div', { class: 'brand' }, h('span', { class: 'dot' }), h('div', {}, 'melonsync', h('small', {}, 'admin'))),
  h('p', {}, 'Sign in with the server\u2019s admin token (--admin-token or MELONSYNC_ADMIN_TOKEN).'),
  err, input, h('button', { class: 'btn primary', type: 'submit' }, 'Sign in'));
  app.replaceChildren(h('div', { class: 'login' }, form));
  input.focus();
}

// ---- shell and routing -------------------------------------------------------

const NAV = [
  ['#/', 'Overview', 'overview'],
  ['#/users', 'Users', 'users'],
  ['#/records', 'Records', 'records'],
  ['#/groups', 'Groups', 'groups'],
];

function shell(active, content) {
  const nav = NAV.filter(([, , key]) => key !== 'groups' || (overviewCache && overviewCache.access))
    .map(([href, label, key]) => h('a', { href, class: key === active ? 'on' : null }, label));
  return h('div', { class: 'shell' },
    h('nav', { class: 'side' },
      h('div', { class: 'brand' }, h('span', { class: 'dot' }), h('div', {}, 'melonsync', h('small', {}, 'admin'))),
      nav, h('div', { class: 'grow' }),
      h('button', { class: 'link', onclick: () => { sessionStorage.removeItem(TOKEN_KEY); showLogin(); } }, 'Sign out')),
    h('main', { id: 'main' }, content));
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query] = raw.split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), q: new URLSearchParams(query || '') };
}

async function render() {
  if (!sessionStorage.getItem(TOKEN_KEY)) return showLogin();
  const { parts, q } = parseHash();
  const page = parts[0] || 'overview';
  const pages = { overview: overviewPage, users: parts[1] !== undefined ? userPage : usersPage, records: recordsPage, groups: groupsPage };
  const fn = pages[page] || notFoundPage;
  app.replaceChildren(shell(page, h('div', { class: 'loading' }, 'Loading\u2026')));
  const main = document.getElementById('main');
  try {
    main.replaceChildren(await fn(parts, q));
  } catch (e) {
    if (e instanceof APIError && e.status === 401) return;
    main.replaceChildren(errorBox(e));
  }
}

function errorBox(e) {
  return h('div', { class: 'page-error', role: 'alert' },
    h('b', {}, e.code ? `${e.code}: ` : 'Error: '), e.message || String(e));
}

function header(title, sub, ...right) {
  return h('div', { class: 'head' }, h('div', {}, h('h1', {}, title), sub ? h('p', {}, sub) : null), h('div', { class: 'toolbar' }, right));
}

function empty(title, text) {
  return h('div', { class: 'empty' }, h('b', {}, title), text);
}

window.addEventListener('hashchange', render);

// ---- overview ----------------------------------------------------------------

function stat(label, value, sub, cls) {
  return h('div', { class: 'stat' }, h('div', { class: 'label' }, label), h('div', { class: 'value ' + (cls || '') }, value), sub ? h('div', { class: 'sub' }, sub) : null);
}

// barChart draws one series of the last hour's per-minute buckets as bars.
function barChart(title, series, key, color) {
  const W = 560, H = 150, top = 10, bottom = 20, left = 30;
  const vals = series.map((b) => b[key] || 0);
  const total = vals.reduce((a, b) => a + b, 0);
  const max = Math.max(1, ...vals);
  const step = (W - left) / vals.length;
  const y = (v) => top + (H - top - bottom) * (1 - v / max);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${title}: ${total} in the last hour` });
  const ticks = max >= 4 ? [0, Math.round(max / 2), max] : [0, max];
  for (const v of ticks) {
    const gy = y(v);
    svg.append(s('line', { class: 'grid-line', x1: left, x2: W, y1: gy, y2: gy }));
    svg.append(s('text', { class: 'axis', x: left - 6, y: gy + 3.5, 'text-anchor': 'end' }, v));
  }
  vals.forEach((v, i) => {
    if (!v) return;
    const x = left + i * step + 1;
    svg.append(s('rect', { x, y: y(v), width: Math.max(1, step - 2), height: H - bottom - y(v), fill: color, rx: 1.5 },
      s('title', {}, `${clock(series[i].start)}: ${v}`)));
  });
  [['\u221260 min', left, 'start'], ['\u221230 min', left + (W - left) / 2, 'middle'], ['now', W, 'end']].forEach(([t, x, a]) =>
    svg.append(s('text', { class: 'axis', x, y: H - 4, 'text-anchor': a }, t)));
  return h('div', { class: 'panel chart' }, h('h3', {}, title, h('span', {}, `${num(total)} in the last hour`)), svg);
}

async function overviewPage() {
  const o = overviewCache = await api('overview');
  const lh = o.lastHour;
  const liveTotal = o.records.reduce((a, r) => a + r.live, 0);
  const logSub = o.syncLog.on
    ? `${num(o.syncLog.entries)} of ${num(o.syncLog.maxEntries)} kept${o.syncLog.dropped ? `, ${num(o.syncLog.dropped)} dropped` : ''}`
    : 'off (--sync-log-max-entries 0)';
  return h('div', {},
    header('Overview', `Schema version ${o.schema.version} \u00b7 ${o.schema.tables.length} tables${o.dev ? ' \u00b7 development mode' : ''}`,
      h('button', { class: 'btn', onclick: render }, 'Refresh')),
    h('div', { class: 'grid stats' },
      stat('Users', num(o.users), 'seen syncing or owning records'),
      stat('Devices, 24 h', num(o.devices24h), 'seen in the last day'),
      stat('Records', num(liveTotal), `${o.records.length} tables`),
      stat('Pulls, 1 h', num(lh.pulls)),
      stat('Pushes, 1 h', num(lh.pushes)),
      stat('Conflicts, 1 h', num(lh.conflicts), 'pushes answered 409', lh.conflicts ? 'bad' : ''),
      stat('Rejected, 1 h', num(lh.rejected), 'records refused', lh.rejected ? 'rej' : ''),
      stat('Sync log', num(o.syncLog.entries), logSub)),
    h('div', { class: 'grid charts' },
      barChart('Pushes per minute', o.series, 'pushes', '#15803d'),
      barChart('Pulls per minute', o.series, 'pulls', '#2563eb'),
      barChart('Conflicts per minute', o.series, 'conflicts', '#dc2626'),
      barChart('Rejected records per minute', o.series, 'rejected', '#9ca3af')),
    h('div', { class: 'panel flush' }, h('h2', {}, 'Records per table'),
      h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, h('th', {}, 'Table'), h('th', { class: 'num' }, 'Live'), h('th', { class: 'num' }, 'Deleted (tombstones)'), h('th', {}, ''))),
        h('tbody', {}, o.records.map((r) => h('tr', {},
          h('td', { class: 'mono' }, r.table), h('td', { class: 'num' }, num(r.live)), h('td', { class: 'num' }, num(r.deleted)),
          h('td', {}, h('a', { href: `#/records?table=${encodeURIComponent(r.table)}` }, 'Browse')))))))));
}

// ---- users -------------------------------------------------------------------

async function usersPage(parts, q) {
  const query = q.get('q') || '';
  const { users } = await api('users?limit=200&q=' + encodeURIComponent(query));
  const input = h('input', { type: 'search', placeholder: 'Search user id\u2026', value: query, 'aria-label': 'search users' });
  const form = h('form', { class: 'toolbar', onsubmit: (e) => { e.preventDefault(); location.hash = '#/users?q=' + encodeURIComponent(input.value.trim()); } },
    input, h('button', { class: 'btn', type: 'submit' }, 'Search'));
  const body = users.length === 0
    ? empty(query ? `No user id contains \u201c${query}\u201d` : 'No users yet', query ? 'Try a shorter part of the id.' : 'Users appear here after their first sync.')
    : h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, ['User', 'Devices', 'Last seen', 'Pulls', 'Pushes', 'Health'].map((t, i) => h('th', { class: i && i !== 2 && i !== 5 ? 'num' : null }, t)))),
      h('tbody', {}, users.map((u) => h('tr', { class: 'click', onclick: () => { location.hash = '#/users/' + encodeURIComponent(u.user); } },
        h('td', {}, h('a', { href: '#/users/' + encodeURIComponent(u.user), class: 'mono' }, u.user)),
        h('td', { class: 'num' }, num(u.devices)),
        h('td', {}, u.lastSeen ? when(u.lastSeen) : h('span', { class: 'muted' }, 'owns records, never synced here')),
        h('td', { class: 'num' }, num(u.pulls)), h('td', { class: 'num' }, num(u.pushes)),
        h('td', {}, health(u)))))));
  return h('div', {}, header('Users', 'Everyone who synced, or owns records.'), form, h('div', { class: 'panel flush' }, body));
}

function health(u) {
  const out = [];
  if (u.revoked) out.push(h('span', { class: 'badge bad' }, `${u.revoked} revoked`));
  if (u.conflictsInRow >= 3) out.push(h('span', { class: 'badge bad' }, `${u.conflictsInRow} conflicts in a row`));
  else if (u.conflictsInRow) out.push(h('span', { class: 'badge warn' }, `${u.conflictsInRow} recent conflict${u.conflictsInRow > 1 ? 's' : ''}`));
  if (!out.length) out.push(h('span', { class: 'badge ok' }, 'ok'));
  return out;
}

// ---- one user ----------------------------------------------------------------

async function act(path, done) {
  try {
    await api(path, { method: 'POST' });
    flash = done;
    render();
  } catch (e) {
    if (!(e instanceof APIError && e.status === 401)) {
      document.getElementById('main').prepend(errorBox(e));
    }
  }
}
let flash = '';

function deviceCard(user, d) {
  const base = `users/${encodeURIComponent(user)}/devices/${devicePath(d.device)}`;
  const name = deviceName(d.device);
  const status = d.revokedAt ? h('span', { class: 'badge bad' }, 'revoked')
    : d.lastStatus >= 400 ? h('span', { class: d.lastStatus === 409 ? 'badge bad' : 'badge warn' }, d.lastStatus === 409 ? 'last push: 409 conflict' : `last ${d.lastStatus} ${d.lastCode}`)
    : d.lastStatus ? h('span', { class: 'badge ok' }, 'in sync') : h('span', { class: 'badge plain' }, 'no sync yet');
  const kinds = { revoked: 'bad', repeated_conflicts: 'bad', rejections: 'rej', replacement_pending: '' };
  return h('div', { class: 'device' + (d.revokedAt ? ' revoked' : ''), 'data-device': d.device },
    h('div', { class: 'top' }, h('span', { class: 'name' }, name), status),
    h('dl', { class: 'kv' },
      h('dt', {}, 'Last pull'), h('dd', {}, when(d.lastPull)),
      h('dt', {}, 'Last push'), h('dd', {}, when(d.lastPush)),
      h('dt', {}, 'lastPulledAt'), h('dd', {}, d.lastTimestamp ? ts(d.lastTimestamp) : h('span', { class: 'muted' }, '—')),
      h('dt', {}, 'Schema version'), h('dd', {}, d.schemaVersion || '—'),
      h('dt', {}, 'Pulls / pushes'), h('dd', {}, `${num(d.pulls)} / ${num(d.pushes)}`),
      h('dt', {}, 'First seen'), h('dd', {}, when(d.firstSeen))),
    d.signs.length ? h('div', { class: 'signs' }, d.signs.map((sg) =>
      h('div', { class: 'sign ' + (kinds[sg.kind] || ''), 'data-sign': sg.kind }, h('b', {}, sg.kind.replace(/_/g, ' ')), sg.message))) : null,
    h('div', { class: 'actions' },
      h('button', { class: 'btn small', disabled: d.replacePending || null, onclick: () => act(base + '/replace', `The next pull of ${name} will be a replacement sync.`) },
        d.replacePending ? 'Replacement pending' : 'Force replacement sync'),
      d.revokedAt
        ? h('button', { class: 'btn small', onclick: () => act(base + '/restore', `${name} may sync again.`) }, 'Restore')
        : h('button', { class: 'btn small danger', onclick: () => { if (confirm(`Revoke ${name}? Its requests will be refused with 401 device_revoked.`)) act(base + '/revoke', `${name} is revoked.`); } }, 'Revoke')));
}

function entryClass(e) {
  if (e.status === 409) return 'conflict';
  if (e.status >= 400) return 'failed';
  if (e.nRejected > 0) return 'rejected';
  return 'synced';
}

function idList(label, m, n) {
  const ids = Object.entries(m || {}).flatMap(([t, xs]) => xs.map((id) => [t, id]));
  if (!ids.length) return null;
  return h('div', { class: 'ids' }, h('b', {}, `${label} (${n}): `),
    ids.map(([t, id]) => h('code', { title: t }, `${t}/${id}`)), n > ids.length ? h('span', { class: 'muted' }, ` and ${n - ids.length} more`) : null);
}

function countsText(tables) {
  const parts = Object.entries(tables || {}).map(([t, c]) => {
    const bits = [];
    if (c.created) bits.push(`+${c.created}`);
    if (c.updated) bits.push(`~${c.updated}`);
    if (c.deleted) bits.push(`\u2212${c.deleted}`);
    return `${t} ${bits.join(' ')}`;
  });
  return parts.length ? parts.join(', ') : 'no records';
}

function timeline(entries) {
  if (!entries.length) return empty('No syncs logged', 'Pulls and pushes of this user appear here.');
  const label = { synced: ['ok', 'synced'], conflict: ['bad', 'conflict'], rejected: ['rej', 'rejected'], failed: ['warn', 'failed'] };
  return h('ol', { class: 'timeline' }, entries.map((e) => {
    const cls = entryClass(e);
    const [bc, bt] = label[cls];
    return h('li', { class: 'tl ' + cls, 'data-kind': e.kind, 'data-status': e.status },
      h('span', { class: 'mark' }),
      h('div', { class: 'card' },
        h('div', { class: 'line1' },
          h('span', { class: 'when', title: new Date(e.at).toISOString() }, clock(e.at)),
          h('span', { class: 'badge ' + e.kind }, e.kind),
          h('span', { class: 'badge ' + bc }, e.status === 200 ? bt : e.code === bt ? `${bt} \u00b7 ${e.status}` : `${bt} \u00b7 ${e.status} ${e.code}`),
          e.strategy ? h('span', { class: 'badge warn' }, e.strategy) : null,
          h('span', { class: 'mono muted' }, deviceName(e.device))),
        h('div', { class: 'line2' },
          h('span', {}, 'lastPulledAt ', ts(e.lastPulledAt), ' \u2192 ', e.timestamp ? ts(e.timestamp) : h('span', { class: 'muted' }, 'none')),
          h('span', {}, countsText(e.tables)),
          e.schemaVersion ? h('span', {}, `schema v${e.schemaVersion}`) : null,
          h('span', { class: 'muted' }, `${e.durationMs.toFixed(1)} ms \u00b7 ${e.route}`)),
        idList('Conflicts', e.conflicts, e.nConflicts),
        idList('Rejected', e.rejected, e.nRejected)));
  }));
}

async function userPage(parts) {
  const user = parts[1];
  const u = await api('users/' + encodeURIComponent(user) + '?limit=100');
  const note = flash ? h('div', { class: 'notice', role: 'status' }, flash) : null;
  flash = '';
  const records = u.records.filter((r) => r.live || r.deleted);
  return h('div', {},
    h('div', { class: 'crumbs' }, h('a', { href: '#/users' }, 'Users'), ' / '),
    header(user, `${u.devices.length} device${u.devices.length === 1 ? '' : 's'}`,
      h('a', { class: 'btn', href: `#/records?owner=${encodeURIComponent(user)}` }, 'Their records'),
      h('button', { class: 'btn', onclick: () => { if (confirm(`Force a replacement sync on every device of ${user}?`)) act(`users/${encodeURIComponent(user)}/replace`, `The next pull of every device of ${user} will be a replacement sync.`); } }, 'Force replacement on all devices')),
    note,
    h('h2', {}, 'Devices'),
    u.devices.length ? h('div', { class: 'grid devices' }, u.devices.map((d) => deviceCard(user, d)))
      : h('div', { class: 'panel' }, empty('No device synced yet', 'This user owns records but none of their devices synced since the log began.')),
    h('div', { class: 'grid', style: null },
      h('div', { class: 'panel' },
        h('div', { class: 'head', style: null }, h('h2', {}, 'Sync log'),
          h('div', { class: 'legend' }, h('span', {}, h('i', { style: null, class: 'lg-ok' }), 'synced'),
            h('span', {}, h('i', { class: 'lg-bad' }), 'conflict'), h('span', {}, h('i', { class: 'lg-rej' }), 'rejected'),
            h('span', {}, h('i', { class: 'lg-warn' }), 'failed'))),
        timeline(u.log)),
      h('div', { class: 'panel flush' }, h('h2', {}, 'Records'),
        records.length ? h('table', {},
          h('thead', {}, h('tr', {}, h('th', {}, 'Table'), h('th', { class: 'num' }, 'Live'), h('th', { class: 'num' }, 'Deleted'))),
          h('tbody', {}, records.map((r) => h('tr', {},
            h('td', {}, h('a', { class: 'mono', href: `#/records?table=${encodeURIComponent(r.table)}&owner=${encodeURIComponent(user)}` }, r.table)),
            h('td', { class: 'num' }, num(r.live)), h('td', { class: 'num' }, num(r.deleted))))))
          : empty('No records', 'This user owns no records.'))));
}

// ---- records -----------------------------------------------------------------

async function recordsPage(parts, q) {
  const o = overviewCache || (overviewCache = await api('overview'));
  const tables = o.schema.tables.map((t) => t.name);
  const table = q.get('table') || tables[0];
  const t = o.schema.tables.find((x) => x.name === table);
  const sel = h('select', { name: 'table', 'aria-label': 'table' }, tables.map((n) => h('option', { value: n, selected: n === table || null }, n)));
  const id = h('input', { name: 'id', placeholder: 'id', value: q.get('id') || '' });
  const owner = h('input', { name: 'owner', placeholder: 'owner (user id)', value: q.get('owner') || '' });
  const cols = t ? t.columns : [];
  const colSel = h('select', { name: 'column', 'aria-label': 'column' }, h('option', { value: '' }, 'any column'),
    cols.map((c) => h('option', { value: c, selected: c === q.get('column') || null }, c)));
  const value = h('input', { name: 'value', placeholder: 'value', value: q.get('value') || '' });
  const group = t && t.group ? h('input', { name: 'group', placeholder: `${t.group} id`, value: q.get('group') || '' }) : null;
  const deleted = h('input', { type: 'checkbox', name: 'deleted', checked: q.get('deleted') === 'true' || null });
  const form = h('form', {
    class: 'toolbar',
    onsubmit: (e) => {
      e.preventDefault();
      const p = new URLSearchParams({ table: sel.value });
      for (const [k, el] of [['id', id], ['owner', owner], ['group', group]]) if (el && el.value.trim()) p.set(k, el.value.trim());
      if (colSel.value) { p.set('column', colSel.value); p.set('value', value.value); }
      if (deleted.checked) p.set('deleted', 'true');
      location.hash = '#/records?' + p;
    },
  }, sel, id, owner, group, colSel, value, h('label', { class: 'check' }, deleted, 'tombstones'), h('button', { class: 'btn primary', type: 'submit' }, 'Show'));
  sel.addEventListener('change', () => { location.hash = '#/records?table=' + encodeURIComponent(sel.value); });
  const p = new URLSearchParams(q);
  p.delete('table');
  p.set('limit', '200');
  let body;
  try {
    const r = await api(`tables/${encodeURIComponent(table)}/records?${p}`);
    body = r.records.length === 0 ? empty('No records match', 'Change the filters, or include tombstones.')
      : h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, h('th', {}, 'id'), h('th', {}, 'owner'), t && t.group ? h('th', {}, t.group) : null, h('th', {}, 'version'), h('th', {}, 'device'),
          r.columns.map((c) => h('th', {}, c)))),
        h('tbody', {}, r.records.map((x) => h('tr', { class: x.deleted ? 'muted' : null },
          h('td', { class: 'mono' }, x.id, x.deleted ? h('span', { class: 'badge rej', style: null }, ' deleted') : null),
          h('td', {}, h('a', { class: 'mono', href: '#/users/' + encodeURIComponent(x.owner) }, x.owner)),
          t && t.group ? h('td', { class: 'mono' }, x.group || '—') : null,
          h('td', {}, ts(x.version)), h('td', { class: 'mono' }, x.device || '—'),
          r.columns.map((c) => h('td', {}, x.deleted ? '' : fmtValue(x.values[c]))))))));
  } catch (e) {
    if (e instanceof APIError && e.status === 401) throw e;
    body = errorBox(e);
  }
  return h('div', {}, header('Records', 'Rows as the store holds them, with owner and version.'), form, h('div', { class: 'panel flush' }, body));
}

function fmtValue(v) {
  if (v === null || v === undefined) return h('span', { class: 'muted' }, 'null');
  if (typeof v === 'boolean') return h('span', { class: 'mono' }, String(v));
  if (typeof v === 'number') return h('span', { class: 'mono' }, String(v));
  const str = String(v);
  return str.length > 80 ? h('span', { title: str }, str.slice(0, 80) + '\u2026') : str;
}

// ---- groups ------------------------------------------------------------------

async function groupsPage(parts, q) {
  const g = await api('groups' + (q.get('kind') ? `?kind=${encodeURIComponent(q.get('kind'))}&id=${encodeURIComponent(q.get('id') || '')}` : ''));
  if (g.group) return groupDetail(g);
  if (!g.kinds.length) return h('div', {}, header('Groups'), h('div', { class: 'panel' }, empty('No access rules', 'The schema has no "access" object: every record belongs to its creator.')));
  return h('div', {}, header('Groups', 'Groups of the schema\u2019s access rules, and who is in them.'),
    g.kinds.map((k) => h('div', { class: 'panel flush' },
      h('h2', {}, `${k.name} `, h('span', { class: 'muted small' }, `members in ${k.members} (${k.groupColumn} \u2192 ${k.userColumn}); rows of ${k.tables.map((t) => t.table).join(', ') || 'no table'}`)),
      k.groups.length === 0 ? empty('No groups yet', `A ${k.name} appears when its first member row is pushed.`)
        : h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, `${k.name} id`), h('th', { class: 'num' }, 'Members'))),
          h('tbody', {}, k.groups.map((x) => h('tr', { class: 'click', onclick: () => { location.hash = `#/groups?kind=${encodeURIComponent(k.name)}&id=${encodeURIComponent(x.id)}`; } },
            h('td', {}, h('a', { class: 'mono', href: `#/groups?kind=${encodeURIComponent(k.name)}&id=${encodeURIComponent(x.id)}` }, x.id)),
            h('td', { class: 'num' }, num(x.members)))))))));
}

function groupDetail(g) {
  return h('div', {},
    h('div', { class: 'crumbs' }, h('a', { href: '#/groups' }, 'Groups'), ' / ', g.kind, ' / '),
    header(g.group, `${g.members.length} member${g.members.length === 1 ? '' : 's'}`),
    h('div', { class: 'panel flush' }, h('h2', {}, 'Members'),
      g.members.length ? h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'User'), h('th', {}, 'Membership row'), h('th', {}, 'Version'))),
        h('tbody', {}, g.members.map((m) => h('tr', {},
          h('td', {}, h('a', { class: 'mono', href: '#/users/' + encodeURIComponent(m.user) }, m.user)),
          h('td', { class: 'mono' }, m.id), h('td', {}, ts(m.version))))))
        : empty('No members', 'Every member left this group.')),
    h('div', { class: 'panel flush' }, h('h2', {}, 'Rows of this group'),
      h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Table'), h('th', { class: 'num' }, 'Rows'), h('th', {}, ''))),
        h('tbody', {}, g.tables.map((t) => h('tr', {}, h('td', { class: 'mono' }, t.table), h('td', { class: 'num' }, t.more ? `${num(t.rows)}+` : num(t.rows)),
          h('td', {}, h('a', { href: `#/records?table=${encodeURIComponent(t.table)}&group=${encodeURIComponent(g.group)}` }, 'Browse'))))))));
}

function notFoundPage() {
  return h('div', {}, header('Not found'), h('div', { class: 'panel' }, empty('There is no such page', h('a', { href: '#/' }, 'Back to the overview'))));
}

render();
