// Opens the console in headless Chromium as a user would and checks that it shows the
// app's counts as bars, the processors' lag, and events arriving on the live stream.
// Usage: node check_console.js URL SCREENSHOT.png   (exit code 0 = the console works)
const { chromium } = require('playwright-core');

(async () => {
  const [url, screenshot] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  const errors = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1300, height: 1000 } });
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    await page.waitForFunction(() => document.querySelectorAll('#byAction rect').length > 0, null, { timeout: 15000 });
    await page.waitForFunction(() => document.getElementById('stream').childNodes.length >= 3, null, { timeout: 15000 });
    await page.waitForFunction(() => /counters/.test(document.getElementById('processors').textContent), null, { timeout: 15000 });
    const status = await page.textContent('#status');
    if (!/\d+ events/.test(status)) throw new Error(`status shows ${JSON.stringify(status)}`);
    const firstLine = await page.evaluate(() => document.getElementById('stream').firstChild.textContent);
    if (!/^\d{4}-\d\d-\d\dT/.test(firstLine)) throw new Error(`stream line looks wrong: ${firstLine}`);
    if (errors.length) throw new Error(`page errors: ${errors.join('; ')}`);
    await page.screenshot({ path: screenshot });
    console.log(`console ok: ${status}; first stream line: ${firstLine}`);
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(`console check failed: ${e.message}`);
  process.exit(1);
});
