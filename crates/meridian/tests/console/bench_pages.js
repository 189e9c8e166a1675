// Page time of every console page against a running server (e.g. `meridian serve --dev
// --demo`): signs in, requests each page N times one after another over keep-alive, and
// prints per page the client-side p50/p99 and the server's own p50/p99 from the
// meridian_http_request_duration_seconds summary of /metrics, with /healthz measured in the
// same run as the baseline.
// Usage: node bench_pages.js BASE_URL LOGIN PASSWORD [N=200]
'use strict';
const http = require('http');

const [base, login, password, nText] = process.argv.slice(2);
const n = Number(nText || 200);
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function request(method, path, { body, cookie } = {}) {
  return new Promise((resolve, reject) => {
    const url = new URL(path, base);
    const headers = { accept: 'text/html' };
    if (cookie) headers.cookie = cookie;
    if (body) { headers['content-type'] = 'application/json'; headers['content-length'] = Buffer.byteLength(body); }
    const started = process.hrtime.bigint();
    const req = http.request(url, { method, headers, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString(), ms: Number(process.hrtime.bigint() - started) / 1e6 }));
    });
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

(async () => {
  const signIn = await request('POST', '/v1/session', { body: JSON.stringify({ login, password }) });
  if (signIn.status !== 200) throw new Error(`sign-in: ${signIn.status} ${signIn.body}`);
  const cookie = signIn.headers['set-cookie'][0].split(';')[0];
  const apps = JSON.parse((await request('GET', '/v1/apps', { cookie })).body).apps;
  const app = apps[0].id;
  const recent = (await request('GET', `/console/apps/${app}/users`, { cookie })).body.match(/\?user=([^&"]+)&amp;kind=user/);
  const user = recent ? recent[1] : 'u1';
  const pages = [
    ['/healthz (baseline)', '/healthz'],
    ['login (signed out)', '/console/login'],
    ['overview', `/console/apps/${app}/overview`],
    ['users', `/console/apps/${app}/users`],
    ['user history', `/console/apps/${app}/users?user=${user}`],
    ['webhooks', `/console/apps/${app}/webhooks`],
    ['deliveries', `/console/apps/${app}/deliveries`],
    ['keys', `/console/apps/${app}/keys`],
    ['audit', `/console/apps/${app}/audit`],
    ['audit (all apps)', '/console/audit'],
    ['operators', '/console/operators'],
    ['admin', '/console/admin'],
    ['history rebuild', '/console/admin/history'],
  ];
  const rows = [];
  for (const [name, path] of pages) {
    const times = [];
    let refused = false;
    for (let i = 0; i < n && !refused; i++) {
      const r = await request('GET', path, { cookie: path === '/console/login' ? undefined : cookie });
      if (r.status === 403) { refused = true; break; }
      if (r.status !== 200) throw new Error(`${path}: ${r.status}`);
      times.push(r.ms);
    }
    if (refused) { console.log(`${name}: 403 for ${login} (not its page), skipped`); continue; }
    times.sort((a, b) => a - b);
    rows.push({ name, path, p50: quantile(times, 0.5), p99: quantile(times, 0.99), max: times[times.length - 1], bytes: 0 });
  }
  // The server's own view: the summary's quantiles per matched route.
  const metrics = (await request('GET', '/metrics')).body;
  const serverQuantile = (route, q) => {
    for (const line of metrics.split('\n')) {
      if (!line.startsWith('meridian_http_request_duration_seconds{')) continue;
      const labels = Object.fromEntries(Array.from(line.matchAll(/(\w+)="([^"]*)"/g), (m) => [m[1], m[2]]));
      if (labels.method === 'GET' && labels.route === route && labels.status === '200' && labels.quantile === q) return Number(line.split(' ').pop()) * 1000;
    }
    return NaN;
  };
  const routeOf = (path) => path.split('?')[0].replace(`/apps/${app}/`, '/apps/{app}/');
  const baseline = rows[0].p99;
  console.log(`${n} sequential requests per page, app ${app}, signed in as ${login}`);
  console.log('page                 client p50   client p99   server p50   server p99   client p99 / healthz p99');
  for (const r of rows) {
    const route = routeOf(r.path);
    const s50 = serverQuantile(route, '0.5');
    const s99 = serverQuantile(route, '0.99');
    console.log(`${r.name.padEnd(20)} ${r.p50.toFixed(2).padStart(8)} ms ${r.p99.toFixed(2).padStart(9)} ms ${s50.toFixed(2).padStart(9)} ms ${s99.toFixed(2).padStart(9)} ms ${(r.p99 / baseline).toFixed(1).padStart(10)}×`);
  }
  agent.destroy();
})().catch((e) => { console.error(e.stack || e.message); process.exit(1); });
