// The console's one script (served from the binary; no build step). Pages are rendered on
// the server; this file makes their actions call the JSON API (with the session's CSRF
// token from <meta name="csrf-token">) and shows the API's error message, which says what
// to do. Each page's part runs when <body data-page> names it.
(() => {
  'use strict';
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
  const messagesElement = $('#console-messages');
  const messages = messagesElement ? JSON.parse(messagesElement.textContent || '{}') : {};
  const msg = (key, vars = {}) => (messages['js.' + key] || key).replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
  const csrf = () => { const meta = $('meta[name="csrf-token"]'); return meta ? meta.content : ''; };
  const enc = encodeURIComponent;
  const page = document.body.dataset.page;
  const app = document.body.dataset.app;

  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  // Calls the JSON API; resolves to the answer's JSON (null when empty), rejects with the
  // API's error.
  // A body is sent as JSON, or as it is when its content type is given (a file's text).
  async function api(method, path, body, contentType) {
    const headers = { Accept: 'application/json', 'X-CSRF-Token': csrf() };
    const init = { method, headers, credentials: 'same-origin' };
    if (body !== undefined) {
      headers['Content-Type'] = contentType || 'application/json';
      init.body = contentType ? body : JSON.stringify(body);
    }
    let response;
    try { response = await fetch(path, init); } catch (_) { throw new ApiError(0, 'network', msg('network_error')); }
    const text = await response.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
    if (!response.ok) {
      const error = json && json.error;
      if (response.status === 401 && page !== 'login') {
        location.href = '/console/login?next=' + enc(location.pathname + location.search);
      }
      throw new ApiError(response.status, error ? error.code : 'http_' + response.status, error ? error.message : response.statusText);
    }
    return json;
  }

  function flash(text, isError) {
    const box = $('#flash');
    if (!box) return;
    box.textContent = text;
    box.classList.toggle('is-error', !!isError);
    box.setAttribute('role', isError ? 'alert' : 'status');
  }
  const showError = (e) => flash(e.code && e.code !== 'network' ? `${e.message} (${e.code})` : e.message, true);

  // Runs an action: its button is disabled meanwhile; an error is shown.
  async function act(button, action) {
    if (button) button.disabled = true;
    try { await action(); } catch (e) { showError(e); } finally { if (button && document.contains(button)) button.disabled = false; }
  }
  const on = (element, event, handler) => { if (element) element.addEventListener(event, handler); };
  const onSubmit = (form, handler) => on(form, 'submit', (event) => { event.preventDefault(); const button = $('button[type=submit]', form); act(button, () => handler(form)); });
  const field = (form, name) => { const input = form.elements.namedItem(name); return input ? input.value.trim() : ''; };
  // Template booleans render as True/False.
  const isTrue = (text) => String(text).toLowerCase() === 'true';
  const list = (text) => text.split(',').map((s) => s.trim()).filter(Boolean);
  const appPath = (rest) => `/v1/apps/${enc(app)}${rest}`;
  function showSecret(secret) {
    const box = $('#secret-once');
    $('#secret-value').textContent = secret;
    box.hidden = false;
    $('#secret-done').focus();
  }
  on($('#secret-done'), 'click', () => location.reload());

  // The layout: app switcher and sign-out.
  on($('#app-switch'), 'change', (event) => { location.href = event.target.value; });
  on($('#sign-out'), 'click', (event) => act(event.target, async () => {
    await api('DELETE', '/v1/session');
    location.href = '/console/login';
  }));

  const pages = {
    login() {
      onSubmit($('#login-form'), async (form) => {
        flash(msg('signing_in'));
        await api('POST', '/v1/session', { login: field(form, 'login'), password: form.elements.namedItem('password').value });
        location.href = form.dataset.next || '/console';
      });
    },

    overview() {
      const box = $('#stream');
      const state = $('#stream-state');
      if (box && window.EventSource) {
        const source = new EventSource(box.dataset.src);
        const show = (event) => {
          let e;
          try { e = JSON.parse(event.data); } catch (_) { return; }
          const item = document.createElement('li');
          const when = document.createElement('time');
          when.textContent = new Date(e.time || e.requested_ms || Date.now()).toISOString().replace('T', ' ').slice(0, 19) + ' ';
          const action = document.createElement('span');
          action.className = 'act';
          action.textContent = (e.action || event.type).padEnd(10, ' ');
          const rest = document.createElement('span');
          rest.textContent = ` ${e.user || e.device || e.subject || ''} ${e.target ? e.target.type + ':' + e.target.id : ''}`;
          item.append(when, action, rest);
          box.prepend(item);
          while (box.children.length > 200) box.lastElementChild.remove();
        };
        const actions = new Set(['view', 'click', 'cart', 'order', 'pay', 'favorite', 'share', 'checkin', 'crash', 'request', 'identify', 'page', 'screen', 'track', 'erasure']);
        $$('#by-action text[text-anchor="end"]').forEach((t) => actions.add(t.textContent));
        actions.forEach((a) => source.addEventListener(a, show));
        source.onmessage = show;
        source.onopen = () => { state.textContent = msg('stream_live'); };
        source.onerror = () => { state.textContent = msg('stream_closed'); };
      }
      on($('#replay'), 'click', (event) => act(event.target, async () => {
        const r = await api('POST', appPath('/dead-letters/replay'));
        const text = msg('replay_done', r);
        $('#replay-report').textContent = text;
        flash(text);
      }));
    },

    users() {
      const history = $('#history');
      if (!history) return;
      const user = history.dataset.user;
      const kind = history.dataset.kind;
      const base = appPath(`/users/${enc(user)}/history`);
      $$('.delete-item').forEach((button) => on(button, 'click', () => act(button, async () => {
        await api('DELETE', `${base}/${enc(button.dataset.sku)}?kind=${enc(kind)}`);
        button.closest('tr').remove();
        flash(msg('deleted'));
      })));
      on($('#clear-history'), 'click', (event) => {
        if (!confirm(msg('confirm_clear'))) return;
        act(event.target, async () => {
          await api('DELETE', `${base}?kind=${enc(kind)}`);
          $$('#history-items tbody tr').forEach((row) => row.remove());
          flash(msg('cleared'));
        });
      });
      const dialog = $('#erase-dialog');
      on($('#erase-open'), 'click', () => { $('#erase-confirm-id').value = ''; dialog.showModal(); });
      on($('#erase-cancel'), 'click', () => dialog.close());
      onSubmit($('#erase-form'), async () => {
        const typed = $('#erase-confirm-id');
        if (typed.value.trim() !== typed.dataset.expected) { flash(msg('erase_mismatch'), true); dialog.close(); return; }
        dialog.close();
        const report = await api('DELETE', appPath(`/users/${enc(user)}?kind=${enc(kind)}`));
        const box = $('#erase-report');
        box.replaceChildren();
        const heading = document.createElement('p');
        heading.textContent = msg(report.complete ? 'erase_done' : 'erase_pending', { id: report.erasure_id });
        const table = document.createElement('table');
        table.id = 'erase-modules';
        const head = table.createTHead().insertRow();
        for (const title of [msg('capability'), msg('outcome')]) { const th = document.createElement('th'); th.scope = 'col'; th.textContent = title; head.append(th); }
        const body = table.createTBody();
        for (const [name, outcome] of Object.entries(report.modules)) {
          const row = body.insertRow();
          row.dataset.module = name;
          row.insertCell().textContent = name;
          let text = msg('erase_module_' + outcome.status);
          if (outcome.status === 'erased') text += ': ' + Object.entries(outcome.removed).map(([k, v]) => `${k} ${v}`).join(', ');
          if (outcome.status === 'no_user_data') text += ` (${outcome.why})`;
          row.insertCell().textContent = text;
        }
        box.append(heading, table);
        $$('#history-items tbody tr').forEach((row) => row.remove());
        flash(heading.textContent);
      });
    },

    webhooks() {
      const hooks = appPath('/webhooks');
      onSubmit($('#webhook-create'), async (form) => {
        const created = await api('POST', hooks, { url: field(form, 'url'), description: field(form, 'description'), event_types: list(field(form, 'event_types')) });
        form.reset();
        showSecret(created.secrets[0].secret);
      });
      $$('#webhooks tbody tr').forEach((row) => {
        const path = `${hooks}/${enc(row.dataset.id)}`;
        const toggle = $('.hook-toggle', row);
        on(toggle, 'click', () => act(toggle, async () => {
          await api('PATCH', path, { disabled: !isTrue(toggle.dataset.disabled) });
          location.reload();
        }));
        const rotate = $('.hook-rotate', row);
        on(rotate, 'click', () => {
          if (!confirm(msg('confirm_rotate'))) return;
          act(rotate, async () => {
            const rotated = await api('POST', `${path}/rotate-secret`, {});
            const newest = rotated.secrets.slice().sort((a, b) => b.created_ms - a.created_ms)[0];
            showSecret(newest.secret);
          });
        });
        const remove = $('.hook-delete', row);
        on(remove, 'click', () => {
          if (!confirm(msg('confirm_delete_webhook'))) return;
          act(remove, async () => { await api('DELETE', path); row.remove(); flash(msg('deleted')); });
        });
        onSubmit($('.hook-edit', row), async (form) => {
          await api('PATCH', path, { url: field(form, 'url'), description: field(form, 'description'), event_types: list(field(form, 'event_types')) });
          location.reload();
        });
      });
    },

    deliveries() {
      const detail = $('#delivery');
      on($('#redeliver'), 'click', (event) => act(event.target, async () => {
        await api('POST', appPath(`/deliveries/${enc(detail.dataset.id)}/redeliver`));
        flash(msg('redelivered'));
        setTimeout(() => location.reload(), 800);
      }));
    },

    keys() {
      onSubmit($('#key-create'), async (form) => {
        const scopes = $$('input[name=scopes]:checked', form).map((c) => c.value);
        const created = await api('POST', appPath('/keys'), { scopes });
        showSecret(created.key);
      });
      $$('.key-revoke').forEach((button) => on(button, 'click', () => {
        if (!confirm(msg('confirm_revoke'))) return;
        const row = button.closest('tr');
        act(button, async () => { await api('DELETE', appPath(`/keys/${enc(row.dataset.keyId)}`)); row.remove(); flash(msg('key_revoked')); });
      }));
    },

    operators() {
      const grantOf = (form) => {
        const appName = form.elements.namedItem('grant_app').value;
        const grant = { role: form.elements.namedItem('grant_role').value };
        if (appName) grant.app = appName;
        return grant;
      };
      onSubmit($('#operator-create'), async (form) => {
        const body = { login: field(form, 'login'), password: form.elements.namedItem('password').value, grants: [grantOf(form)] };
        const name = field(form, 'display_name');
        if (name) body.display_name = name;
        await api('POST', '/v1/operators', body);
        flash(msg('operator_created'));
        setTimeout(() => location.reload(), 600);
      });
      $$('#operators tbody tr').forEach((row) => {
        const path = `/v1/operators/${enc(row.dataset.login)}`;
        const toggle = $('.op-toggle', row);
        on(toggle, 'click', () => act(toggle, async () => {
          await api('PATCH', path, { disabled: !isTrue(toggle.dataset.disabled) });
          location.reload();
        }));
        onSubmit($('.op-roles', row), async (form) => {
          const current = JSON.parse(row.dataset.grants || '[]');
          const grants = $$('input[name=keep]:checked', form).map((c) => current[Number(c.value)]);
          if ($('input[name=add]', form).checked) grants.push(grantOf(form));
          await api('PATCH', path, { grants });
          location.reload();
        });
      });
    },

    admin() {
      $$('#admin-processors tbody tr').forEach((row) => {
        const name = row.dataset.processor;
        const rebuild = $('.proc-rebuild', row);
        on(rebuild, 'click', () => {
          if (!confirm(msg('confirm_rebuild_processor'))) return;
          act(rebuild, async () => { await api('POST', `/v1/admin/processors/${enc(name)}/rebuild`); flash(msg('processor_rebuilding', { name })); });
        });
        onSubmit($('.proc-seek', row), async (form) => {
          const offsets = {};
          for (const pair of list(field(form, 'offsets'))) {
            const match = /^(\d+)\s*:\s*(\d+)$/.exec(pair);
            if (!match) { flash(msg('bad_offsets'), true); return; }
            offsets[match[1]] = Number(match[2]);
          }
          await api('POST', `/v1/admin/processors/${enc(name)}/seek`, { topic: field(form, 'topic'), offsets });
          flash(msg('seek_done', { name }));
        });
      });
      $$('#admin-sources tbody tr[data-source]').forEach((row) => {
        const name = row.dataset.source;
        for (const [cls, verb, done] of [['.source-pause', 'pause', 'source_paused'], ['.source-resume', 'resume', 'source_resumed']]) {
          const button = $(cls, row);
          on(button, 'click', () => act(button, async () => {
            await api('POST', `/v1/admin/sources/${enc(name)}/${verb}`);
            flash(msg(done, { name }));
            setTimeout(() => location.reload(), 600);
          }));
        }
      });
      on($('#pipeline-reload'), 'click', (event) => act(event.target, async () => {
        const status = await api('POST', '/v1/admin/pipeline/reload');
        flash(msg('pipeline_reloaded', status));
      }));
    },

    alert_rule() {
      const root = $('#alert-rule');
      const isNew = isTrue(root.dataset.new);
      const rulesPath = appPath('/alerts/rules');
      const form = $('#rule-form');
      const ruleJson = () => {
        try { return JSON.parse($('#rule-json').value); } catch (e) { throw new ApiError(400, 'invalid_json', msg('bad_rule_json', { error: e.message })); }
      };
      const cell = (text) => { const td = document.createElement('td'); td.textContent = text; return td; };
      on($('#rule-test'), 'click', (event) => act(event.target, async () => {
        const hours = Number(field(form, 'hours')) || 24;
        const result = await api('POST', `${rulesPath}/test`, { rule: ruleJson(), hours });
        const breaches = result.evaluations.filter((e) => e.outcome === 'breach').length;
        const fired = result.transitions.filter((t) => t.state === 'fired').length;
        $('#rule-test-summary').textContent = msg('rule_test_summary', { events: result.events_read, hours, windows: result.evaluations.length, breaches, fired, late: result.late_events })
          + (fired ? '' : ' ' + msg('rule_test_none'));
        const body = $('#rule-test-transitions tbody');
        body.replaceChildren(...result.transitions.map((t) => {
          const row = document.createElement('tr');
          row.append(cell(new Date(t.window_end_ms).toLocaleString()), cell(t.state), cell(t.value == null ? '—' : String(t.value)), cell(t.reason));
          return row;
        }));
        $('#rule-test-result').hidden = false;
        flash('');
      }));
      onSubmit(form, async () => {
        const rule = ruleJson();
        if (isNew) {
          const id = field(form, 'id');
          if (id) rule.id = id;
          const created = await api('POST', rulesPath, rule);
          flash(msg('rule_created', { id: created.rule.id }));
          location.href = `/console/apps/${enc(app)}/alerts/rules/${enc(created.rule.id)}`;
          return;
        }
        rule.version = Number(root.dataset.version);
        const saved = await api('PUT', `${rulesPath}/${enc(root.dataset.rule)}`, rule);
        root.dataset.version = String(saved.version);
        flash(msg('rule_saved', { version: saved.version }));
        setTimeout(() => location.reload(), 800);
      });
      for (const [id, verb, done] of [['#rule-pause', 'pause', 'rule_paused'], ['#rule-resume', 'resume', 'rule_resumed']]) {
        const button = $(id);
        on(button, 'click', () => act(button, async () => {
          await api('POST', `${rulesPath}/${enc(root.dataset.rule)}/${verb}`, { version: Number(root.dataset.version) });
          flash(msg(done));
          setTimeout(() => location.reload(), 600);
        }));
      }
      const remove = $('#rule-delete');
      on(remove, 'click', () => act(remove, async () => {
        if (!confirm(msg('confirm_delete_rule', { id: root.dataset.rule }))) return;
        await api('DELETE', `${rulesPath}/${enc(root.dataset.rule)}`, { version: Number(root.dataset.version) });
        flash(msg('rule_deleted'));
        location.href = `/console/apps/${enc(app)}/alerts`;
      }));
    },

    history_rebuild() {
      const bar = $('#rebuild-progress');
      const numbers = $('#rebuild-numbers');
      const state = $('#rebuild-state');
      const report = $('#rebuild-report');
      const start = $('#rebuild-start');
      const show = (s) => {
        bar.max = Math.max(s.total, 1);
        bar.value = s.running ? s.done : Math.max(s.total, 1);
        bar.textContent = `${s.done} / ${s.total}`;
        numbers.textContent = `${s.done.toLocaleString()} / ${s.total.toLocaleString()}`;
        if (s.running) state.textContent = msg('rebuild_running', { done: s.done, total: s.total });
        else if (s.error) state.textContent = msg('rebuild_failed', { error: s.error });
        else if (s.report) state.textContent = msg('rebuild_done', s.report);
        start.disabled = s.running;
        report.dataset.finished = String(!s.running && !!s.finished_ms);
      };
      const follow = async () => {
        try {
          const s = await api('GET', '/v1/admin/history/rebuild');
          show(s);
          if (s.running) setTimeout(follow, 250);
        } catch (e) { showError(e); }
      };
      on(start, 'click', () => act(start, async () => {
        const s = await api('POST', '/v1/admin/history/rebuild');
        flash(msg('rebuild_started'));
        show(s);
        follow();
      }));
      if (isTrue($('#rebuild').dataset.running)) follow();
    },

    listing() {
      onSubmit($('#template-form'), async (form) => {
        const saved = await api('PUT', appPath('/listing/template'), { template: form.elements.namedItem('template').value });
        flash(msg(saved.builtin ? 'template_reset' : 'template_saved'));
      });
      // Catalog load: the file's lines go to the bulk load as a job, whose progress is
      // followed until it is done.
      const box = $('#load-job');
      const showJob = (job) => {
        box.hidden = false;
        const bar = $('#load-progress');
        bar.max = 1;
        bar.value = job.progress;
        bar.textContent = `${Math.round(job.progress * 100)} %`;
        $('#load-numbers').textContent = `${job.applied.toLocaleString()} / ${job.lines.toLocaleString()}`;
        const vars = { applied: job.applied, lines: job.lines, rejected: job.rejected, error: job.failure || '' };
        const state = $('#load-state');
        state.textContent = msg(job.state === 'done' ? 'load_done' : job.state === 'failed' ? 'load_failed' : 'load_running', vars);
        state.dataset.state = job.state;
        const errors = $('#load-errors');
        errors.replaceChildren(...job.errors.slice(0, 20).map((e) => {
          const li = document.createElement('li');
          li.textContent = msg('load_line_error', e);
          return li;
        }));
      };
      const follow = async (id) => {
        try {
          const job = await api('GET', appPath(`/listing/jobs/${enc(id)}`));
          showJob(job);
          if (job.state !== 'done' && job.state !== 'failed') setTimeout(() => follow(id), 250);
        } catch (e) { showError(e); }
      };
      onSubmit($('#load-form'), async (form) => {
        const file = form.elements.namedItem('file').files[0];
        if (!file) return;
        const job = await api('POST', appPath('/listing/catalog'), await file.text(), 'application/x-ndjson');
        showJob(job);
        follow(job.id);
      });
      // A category's merchandising.
      onSubmit($('#settings-form'), async (form) => {
        const number = (name) => { const v = form.elements.namedItem(name).value.trim(); return v === '' ? null : Number(v); };
        const pins = [];
        for (const line of form.elements.namedItem('pins').value.split('\n').map((l) => l.trim()).filter(Boolean)) {
          const m = /^(\d+)\s*[:=@]\s*(\d+)$/.exec(line);
          if (!m) { flash(msg('bad_pin', { line }), true); return; }
          pins.push({ position: Number(m[1]), sku: Number(m[2]) });
        }
        const body = { max_brand_run: number('max_brand_run'), max_shop_run: number('max_shop_run'), window: number('window') ?? 32, pins };
        await api('PUT', appPath(`/listing/categories/${enc(form.dataset.category)}/settings`), body);
        flash(msg('settings_saved'));
      });
    },
  };
  if (pages[page]) pages[page]();
})();
