// Drives the console in headless Chromium as an operator would: signs in through the
// form, visits every page, does one real action per page, switches the language, runs
// axe-core on every page (no serious or critical violation), and fails on any page error.
// Then signs in as the demo operator (an admin of app demo) and checks it sees every app
// page but no server page. Screenshots go to the directory given.
// Usage: node check_console.js BASE_URL ROOT_PASSWORD DEMO_PASSWORD SCREENSHOT_DIR
'use strict';
const fs = require('fs');
const http = require('http');
const path = require('path');
const { chromium } = require('playwright-core');

const [base, rootPassword, demoPassword, shots] = process.argv.slice(2);
const axeSource = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const TIMEOUT = 20000;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

// A webhook receiver on loopback that answers 204.
function receiver() {
  return new Promise((resolve) => {
    const received = [];
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => { body += c; });
      req.on('end', () => { received.push({ headers: req.headers, body }); res.statusCode = 204; res.end(); });
    });
    server.listen(0, '127.0.0.1', () => resolve({ server, received, url: `http://127.0.0.1:${server.address().port}/hook` }));
  });
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  const hook = await receiver();
  const pageErrors = [];
  const consoleErrors = [];
  const audited = [];
  try {
    const context = await browser.newContext({ viewport: { width: 1360, height: 1000 }, locale: 'en-US' });
    // The demo catalog's item images live on img.example (no network here): serve a stand-in.
    await context.route('https://img.example/**', (route) => route.fulfill({ status: 200, contentType: 'image/svg+xml', body: '<svg xmlns="http://www.w3.org/2000/svg" width="48" height="48"><rect width="48" height="48" fill="#cfd6e0"/></svg>' }));
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    page.on('pageerror', (e) => pageErrors.push(`${page.url()}: ${e.message}`));
    page.on('console', (m) => {
      // A CSP violation or a script error is a console error; an intended 4xx answer of
      // the API is a failed resource load, which the flash message shows instead.
      if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) consoleErrors.push(`${page.url()}: ${m.text()}`);
    });
    page.on('dialog', (d) => d.accept());

    // axe-core on the page as it is now; a screenshot beside it.
    const audit = async (name) => {
      await page.evaluate(axeSource);
      const result = await page.evaluate(async () => window.axe.run(document, { resultTypes: ['violations'] }));
      const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
      check(bad.length === 0, `${name}: accessibility violations: ${bad.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`).join('; ')}`);
      await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
      audited.push(name);
    };
    const texts = (selector) => page.$$eval(selector, (nodes) => nodes.map((n) => n.textContent.trim()));
    const flash = async (pattern) => page.waitForFunction((p) => new RegExp(p).test(document.getElementById('flash').textContent), pattern.source);

    // Sign-in.
    await page.goto(`${base}/console`);
    check(new URL(page.url()).pathname === '/console/login', `not sent to sign-in: ${page.url()}`);
    await audit('login');
    await page.fill('#login', 'root');
    await page.fill('#password', 'wrong password');
    await page.click('#login-form button[type=submit]');
    await flash(/invalid_credentials/);
    await page.fill('#password', rootPassword);
    await Promise.all([page.waitForURL(/\/console\/apps\/demo\/overview$/), page.click('#login-form button[type=submit]')]);

    // Overview: bars, line, lag, the live stream; replay the dead letters.
    await page.waitForSelector('#by-action rect');
    await page.waitForSelector('#by-day polyline');
    check((await page.textContent('#processors')).includes('counters'), 'the processors table lacks counters');
    await page.waitForFunction(() => document.querySelectorAll('#stream li').length >= 3);
    await page.click('#replay');
    await page.waitForFunction(() => /Replayed \d+/.test(document.getElementById('replay-report').textContent));
    await audit('overview');

    // Users: a recently active user's history; delete an item; erase the user.
    await page.click('nav.side >> text=Users');
    await page.waitForURL(/\/users$/);
    await audit('users');
    const recentUsers = await page.$$eval('#recent-users a', (links) => links.filter((a) => a.href.includes('kind=user')).map((a) => a.textContent.trim()));
    await Promise.all([page.waitForURL(/\?user=/), page.click('#recent-users a >> nth=0')]);
    const user = new URL(page.url()).searchParams.get('user');
    await page.waitForSelector('#history-items tbody tr');
    await audit('user-history');
    const skus = await page.$$eval('#history-items tbody tr', (rows) => rows.map((r) => r.dataset.sku));
    const deleted = skus[0];
    await page.click(`#history-items tr[data-sku="${deleted}"] .delete-item`);
    await flash(/Deleted/);
    check(await page.$(`#history-items tr[data-sku="${deleted}"]`) === null, 'the deleted row stays');
    await page.reload();
    check(await page.$(`#history-items tr[data-sku="${deleted}"]`) === null, `sku ${deleted} is back after a reload`);
    await page.click('#erase-open');
    await page.fill('#erase-confirm-id', user);
    await page.click('#erase-confirm');
    await page.waitForSelector('#erase-modules tbody tr');
    const historyOutcome = await page.textContent('#erase-modules tr[data-module="history"]');
    check(/erased/.test(historyOutcome), `history's erasure outcome: ${historyOutcome}`);
    check(/keeps no per-user data/.test(await page.textContent('#erase-modules tr[data-module="counters"]')), 'counters keep no per-user data');
    await audit('user-erased');
    await page.reload();
    check((await page.$$('#history-items tbody tr')).length === 0, 'an erased user still has history');

    // User actions: the demo's definitions, segments with their live member counts.
    await page.click('nav.side >> text=User actions');
    await page.waitForURL(/\/actions$/);
    check((await page.$$('#aggregations tbody tr')).length >= 8, 'the demo aggregations are not listed');
    check(/^[\d,]+$/.test((await page.textContent('#segments tr[data-segment="big_spenders"] td.members')).trim()), 'a segment without its member count');
    check((await texts('#stages li strong')).includes('dormant'), 'the lifecycle is not listed');
    check(await page.$('#triggers tr[data-trigger="first_order"]') !== null, 'the triggers are not listed');
    await audit('actions');

    // Profiles: an active user's facts, values and timeline; the erased user is unknown.
    await page.click('nav.side >> text=Profiles');
    await page.waitForURL(/\/profile$/);
    await audit('profile-lookup');
    const active = recentUsers.find((u) => u !== user);
    check(active !== undefined, `no other recently active user: ${recentUsers}`);
    await page.fill('#profile-user', active);
    await Promise.all([page.waitForURL(/\?user=/), page.click('form:has(#profile-user) button[type=submit]')]);
    await page.waitForSelector('#profile-facts');
    check((await page.$$('#profile-values tbody tr')).length >= 9, 'the profile lacks the aggregations');
    check((await page.$$('#profile-timeline tbody tr')).length >= 1, 'the profile lacks the timeline');
    check((await page.textContent('#profile-stage')).trim() !== '—', 'the profile has no stage');
    await audit('profile');
    await page.fill('#profile-user', user);
    await Promise.all([page.waitForURL(new RegExp(`user=${encodeURIComponent(user)}`)), page.click('form:has(#profile-user) button[type=submit]')]);
    // The erasure reaches the user actions processor in order with the events: it may
    // still be behind the demo feed (the erasure answer said so), so look again for a while.
    for (let i = 0; i < 60 && !(await page.$('#profile-unknown')); i++) {
      await page.waitForTimeout(500);
      await page.reload();
    }
    check(/Nothing is known/.test(await page.textContent('#profile-unknown')), 'the erased user is not shown as unknown after 30 s');
    await audit('profile-unknown');

    // Webhooks: create an endpoint to the receiver (its secret shown once), rotate it.
    await page.click('nav.side >> text=Webhooks');
    await page.waitForURL(/\/webhooks$/);
    await page.fill('#hook-url', hook.url);
    await page.fill('#hook-description', 'browser test receiver');
    await page.fill('#hook-types', 'trigger.fired');
    await page.click('#webhook-create button[type=submit]');
    await page.waitForSelector('#secret-once:not([hidden])');
    const secret = await page.textContent('#secret-value');
    check(secret.startsWith('whsec_'), `secret: ${secret}`);
    await audit('webhook-secret');
    await Promise.all([page.waitForNavigation(), page.click('#secret-done')]);
    check((await page.content()).includes(hook.url), 'the new endpoint is not listed');
    check(!(await page.content()).includes(secret), 'the secret is shown again');
    await page.click('.hook-rotate');
    await page.waitForSelector('#secret-once:not([hidden])');
    const rotated = await page.textContent('#secret-value');
    check(rotated.startsWith('whsec_') && rotated !== secret, 'rotating shows a new secret');
    await page.reload();
    await audit('webhooks');

    // Deliveries: filter by state.
    await page.click('nav.side >> text=Deliveries');
    await page.waitForURL(/\/deliveries$/);
    // --demo registers a receiver of its own and sends it a test notification.
    const deliveries = await page.textContent('main');
    check(deliveries.includes('webhook.test') && /delivered/i.test(deliveries), `the demo receiver's test delivery is not shown as delivered: ${deliveries.slice(0, 400)}`);
    await page.selectOption('#filter-state', 'dead');
    await Promise.all([page.waitForURL(/state=dead/), page.click('main form button[type=submit]')]);
    await audit('deliveries');

    // Alerts: --demo creates a rule (crashes per 5 minutes) notifying its receiver.
    await page.click('nav.side >> text=Alerts');
    await page.waitForURL(/\/alerts$/);
    const alerts = await page.textContent('main');
    check(alerts.includes('demo-crashes'), `the demo's alert rule is not listed: ${alerts.slice(0, 400)}`);
    await audit('alerts');

    // The demo rule's page: the preview (or why there is none yet), a test over the last
    // 24 h, refused edits (bad JSON; a slide longer than the window, named), a saved edit
    // (a new version); then a rule made in the editor, and deleted.
    await Promise.all([page.waitForURL(/\/alerts\/rules\/demo-crashes$/), page.click('#alert-rules >> text=Crashes in the last 5 minutes')]);
    await page.waitForSelector('#rule-preview, #rule-preview-empty');
    await page.click('#rule-test');
    await page.waitForSelector('#rule-test-result:not([hidden])');
    const summary = await page.textContent('#rule-test-summary');
    check(/events over the last 24 h/.test(summary), `rule test summary: ${summary}`);
    await audit('alert_rule');
    const original = await page.inputValue('#rule-json');
    await page.fill('#rule-json', '{ "name": ');
    await page.click('#rule-save');
    await flash(/not valid JSON/);
    const rule = JSON.parse(original);
    await page.fill('#rule-json', JSON.stringify({ ...rule, window: { kind: 'sliding', size_secs: 60, slide_secs: 120 } }));
    await page.click('#rule-save');
    await flash(/window\.slide_secs/);
    const version = Number(await page.getAttribute('#alert-rule', 'data-version'));
    await page.fill('#rule-json', JSON.stringify({ ...rule, condition: { ...rule.condition, value: 5 } }, null, 2));
    await page.click('#rule-save');
    await flash(/saved as version/);
    await page.waitForFunction((v) => document.querySelector('#alert-rule') && Number(document.querySelector('#alert-rule').dataset.version) === v + 1, version);
    check(JSON.parse(await page.inputValue('#rule-json')).condition.value === 5, 'the saved threshold is shown after the reload');
    await page.goto(`${base}/console/apps/demo/alerts`);
    await Promise.all([page.waitForURL(/\/alerts\/new$/), page.click('#alert-new')]);
    await page.fill('#rule-new-id', 'from-the-console');
    await Promise.all([page.waitForURL(/\/alerts\/rules\/from-the-console$/), page.click('#rule-save')]);
    await page.waitForSelector('#rule-preview-empty');
    await Promise.all([page.waitForURL(/\/alerts$/), page.click('#rule-delete')]);
    check(!(await page.textContent('main')).includes('from-the-console'), 'the deleted rule is still listed');
    // Listing: --demo loads the demo catalog in the background; its categories, a query
    // tryout, the template editor (a bad template refused, a good one saved) and a shopper
    // page rendered with it, its prices loaded live.
    await page.click('nav.side >> text=Listing');
    await page.waitForURL(/\/listing$/);
    for (let i = 0; i < 120 && !(await page.$('#listing-categories')); i++) {
      await page.waitForTimeout(500);
      await page.reload();
    }
    check(await page.$('#listing-categories'), 'the demo catalog is not in the listing');
    check(Number((await page.textContent('#listing-skus')).replace(/\D/g, '')) > 1000, 'the demo catalog is not loaded whole');
    check(await page.$('#tryout-items tbody tr'), 'the tryout lists no item');
    await page.selectOption('#tryout-sort', 'price_asc');
    await page.check('input[name=facets]');
    await Promise.all([page.waitForURL(/sort=price_asc/), page.click('#tryout-form button[type=submit]')]);
    const prices = await texts('#tryout-items tbody td:nth-child(4)');
    check(prices.length > 1 && prices.every((p, i) => i === 0 || Number(prices[i - 1]) <= Number(p)), `the tryout is not sorted by price: ${prices}`);
    const template = await page.inputValue('#template-text');
    await page.fill('#template-text', '{% for x in %}');
    await page.click('#template-form button[type=submit]');
    await flash(/invalid_template/);
    await page.fill('#template-text', template.replace('</main>', '<p id="edited">edited in the console</p></main>'));
    await page.click('#template-form button[type=submit]');
    await flash(/Template saved/);
    // Merchandising of the tried category: a pin at position 0 moves an item of the page to
    // the top; a
    // bad pin line is refused before anything is sent.
    const skusShown = await texts('#tryout-items tbody td:nth-child(1)');
    const pinned = skusShown[skusShown.length - 1];
    await page.fill('#settings-pins', 'first: 1');
    await page.click('#settings-save');
    await flash(/Pins are lines/);
    await page.fill('#settings-brand-run', '2');
    await page.fill('#settings-pins', `0: ${pinned}`);
    await page.click('#settings-save');
    await flash(/Merchandising saved/);
    await page.reload();
    check((await texts('#tryout-items tbody td:nth-child(1)'))[0] === pinned, `the pinned SKU ${pinned} is not first`);
    check((await page.inputValue('#settings-pins')).trim() === `0: ${pinned}`, 'the saved pin is not shown');
    await page.fill('#settings-brand-run', '');
    await page.fill('#settings-pins', '');
    await page.click('#settings-save');
    await flash(/Merchandising saved/);
    // A catalog load from a file: its job's progress bar reaches the end, and the refused
    // line is listed with its number.
    const line = (sku) => JSON.stringify({ sku, spu: sku, name: `Console item ${sku}`, category_path: [990001], brand: 1, shop: 1, price: 1234, stock: 3, on_shelf: true });
    await page.setInputFiles('#load-file', { name: 'skus.jsonl', mimeType: 'application/x-ndjson', buffer: Buffer.from([line(9900001), line(9900002), '{"sku": "not a number"}'].join('\n')) });
    await page.click('#load-start');
    await page.waitForSelector('#load-state[data-state=done]', { timeout: 30000 });
    check(Number(await page.getAttribute('#load-progress', 'value')) === 1, 'the progress bar did not reach the end');
    check(/line 3/.test(await page.textContent('#load-errors')), 'the refused line is not listed');
    await page.reload();
    check((await page.textContent('#listing-categories')).includes('990001'), 'the loaded category is not listed');
    await audit('listing');
    const shopHref = await page.getAttribute('#listing-categories a[target=_blank]', 'href');
    const shop = await context.newPage();
    shop.on('pageerror', (e) => pageErrors.push(`${shop.url()}: ${e.message}`));
    const shopped = await shop.goto(base + shopHref);
    check(shopped.status() === 200, `the shopper page answered ${shopped.status()}`);
    await shop.waitForSelector('#edited');
    await shop.waitForSelector('[data-price-sku][data-live="true"]');
    check((await shop.$$('li.item')).length > 0, 'the shopper page lists no item');
    await shop.screenshot({ path: path.join(shots, 'shopper-page.png'), fullPage: true });
    await shop.close();

    // API keys: create one (secret shown once), revoke it.
    await page.click('nav.side >> text=API keys');
    await page.waitForURL(/\/keys$/);
    const before = await page.$$eval('#keys tbody tr', (rows) => rows.map((r) => r.dataset.keyId));
    await page.check('#key-create input[value=write]');
    await page.click('#key-create button[type=submit]');
    await page.waitForSelector('#secret-once:not([hidden])');
    const key = await page.textContent('#secret-value');
    check(key.length > 20, `key: ${key}`);
    await Promise.all([page.waitForNavigation(), page.click('#secret-done')]);
    check(!(await page.content()).includes(key), 'the key secret is shown again');
    const after = await page.$$eval('#keys tbody tr', (rows) => rows.map((r) => r.dataset.keyId));
    const created = after.filter((id) => !before.includes(id));
    check(created.length === 1, `new keys: ${created}`);
    await audit('keys');
    await page.click(`#keys tr[data-key-id="${created[0]}"] .key-revoke`);
    await flash(/revoked/);
    await page.reload();
    check(await page.$(`#keys tr[data-key-id="${created[0]}"]`) === null, 'the revoked key is listed');

    // Operators: create one.
    await page.click('nav.side >> text=Operators');
    await page.waitForURL(/\/console\/operators/);
    await page.fill('#op-login', 'alice');
    await page.fill('#op-name', 'Alice Example');
    await page.fill('#op-password', 'alice-password-1234');
    await page.selectOption('#op-grant-app', 'demo');
    await page.selectOption('#op-grant-role', 'viewer');
    await page.click('#operator-create button[type=submit]');
    await page.waitForSelector('#operators tr[data-login="alice"]');
    await audit('operators');

    // Audit log: filter by action.
    await page.click('nav.side >> text=Audit log >> nth=0');
    await page.waitForURL(/\/apps\/demo\/audit/);
    await page.fill('#f-action', 'key.');
    await Promise.all([page.waitForURL(/action=key\./), page.click('#audit-filter button[type=submit]')]);
    const actions = await texts('#audit .audit-action code');
    check(actions.length >= 2 && actions.every((a) => a.startsWith('key.')), `filtered actions: ${actions}`);
    check(actions.includes('key.revoke'), `the revocation is audited: ${actions}`);
    await audit('audit');
    await page.goto(`${base}/console/audit?action=operator.`);
    check((await texts('#audit .audit-action code')).includes('operator.create'), 'the operator creation is audited');
    await audit('audit-all');

    // Administration: processors, pipeline, topics.
    await page.click('nav.side >> text=Processors & pipeline');
    await page.waitForURL(/\/console\/admin/);
    check((await texts('#admin-processors tbody tr td:first-child')).some((t) => t.startsWith('history')), 'no history processor');
    check((await page.textContent('#topics')).includes('events'), 'no events topic');
    // The demo's file source (a back office's payment export) is listed with what it stored.
    check((await texts('#admin-sources tbody tr td:first-child')).some((t) => t.startsWith('demo-inbox')), 'no demo-inbox source');
    check(await page.isVisible('#connections'), 'no count of open client connections');
    // Its rate (and lag) over the last minutes as charts: samples every 5 s, so reload until two exist.
    for (let i = 0; i < 30 && !(await page.$('.source-charts[data-source="demo-inbox"] svg polyline')); i++) {
      await page.waitForTimeout(1000);
      await page.reload();
    }
    check(await page.$('.source-charts[data-source="demo-inbox"] svg polyline'), 'no rate chart of the demo-inbox source');
    await audit('admin');
    // Paused from the console, and resumed.
    await page.click('#admin-sources tr[data-source="demo-inbox"] .source-pause');
    await page.waitForSelector('#admin-sources tr[data-source="demo-inbox"] .source-paused', { timeout: 10000 });
    check(await page.$('#admin-sources tr[data-source="demo-inbox"] .source-resume'), 'a paused source offers to resume');
    await page.click('#admin-sources tr[data-source="demo-inbox"] .source-resume');
    await page.waitForSelector('#admin-sources tr[data-source="demo-inbox"] .source-pause', { timeout: 10000 });
    check(!(await page.$('#admin-sources tr[data-source="demo-inbox"] .source-paused')), 'a resumed source is not shown paused');

    // History rebuild with its progress bar.
    await page.click('nav.side >> text=History rebuild');
    await page.waitForURL(/\/console\/admin\/history/);
    await page.click('#rebuild-start');
    await page.waitForFunction(() => document.getElementById('rebuild-report').dataset.finished === 'true', null, { timeout: 60000 });
    const progress = await page.$eval('#rebuild-progress', (p) => ({ value: p.value, max: p.max }));
    check(progress.max >= 1 && progress.value === progress.max, `progress bar: ${JSON.stringify(progress)}`);
    check(/Rebuild finished/.test(await page.textContent('#rebuild-state')), 'the rebuild does not say it finished');
    await audit('history-rebuild');

    // Language: switch to Chinese, which is remembered, then back.
    await Promise.all([page.waitForNavigation(), page.click('header .langs a[lang="zh-CN"]')]);
    check((await page.getAttribute('html', 'lang')) === 'zh-CN', 'the page is not in Chinese');
    check((await page.textContent('nav.side')).includes('操作员'), 'the navigation is not in Chinese');
    await page.goto(`${base}/console/apps/demo/overview`);
    check((await page.textContent('nav.side')).includes('概览'), 'Chinese is not remembered');
    await page.waitForSelector('#by-action rect');
    await audit('overview-zh');
    await Promise.all([page.waitForNavigation(), page.click('header .langs a[lang="en"]')]);
    check((await page.textContent('nav.side')).includes('Overview'), 'English is not back');

    // Sign out; sign in as the demo operator: every app page, no server page.
    await Promise.all([page.waitForURL(/\/console\/login/), page.click('#sign-out')]);
    await page.goto(`${base}/console/apps/demo/overview`);
    check(new URL(page.url()).pathname === '/console/login', 'signed out, yet the overview shows');
    await page.fill('#login', 'demo');
    await page.fill('#password', demoPassword);
    await Promise.all([page.waitForURL(/\/console\/apps\/demo\/overview/), page.click('#login-form button[type=submit]')]);
    const nav = await texts('nav.side a');
    for (const name of ['Overview', 'Users', 'Listing', 'Webhooks', 'Deliveries', 'API keys', 'Audit log']) check(nav.includes(name), `the demo operator lacks ${name}: ${nav}`);
    check(!nav.includes('Operators') && !nav.includes('History rebuild'), `the demo operator sees server pages: ${nav}`);
    for (const name of ['Users', 'Webhooks', 'Deliveries', 'API keys', 'Audit log']) {
      await Promise.all([page.waitForNavigation(), page.click(`nav.side >> text=${name}`)]);
      check(!(await page.textContent('main')).includes('You lack a role'), `${name} refuses the demo operator`);
    }
    const refused = await page.goto(`${base}/console/operators`);
    check(refused.status() === 403, `operators answered ${refused.status()} to the demo operator`);
    check((await page.textContent('main')).includes('global admin'), 'the 403 page does not name the role');
    check((await page.textContent('main')).includes('root'), 'the 403 page does not say whom to ask');
    await audit('forbidden');

    check(pageErrors.length === 0, `page errors: ${pageErrors.join('; ')}`);
    check(consoleErrors.length === 0, `console errors: ${consoleErrors.join('; ')}`);
    console.log(`console ok: ${audited.length} pages passed axe (${audited.join(', ')}); screenshots in ${shots}`);
  } finally {
    hook.server.close();
    await browser.close();
  }
})().catch((e) => {
  console.error(`console check failed: ${e.stack || e.message}`);
  process.exit(1);
});
