// The harness every node e2e driver shares: read the test's JSON payload from stdin, open one
// page in headless Chromium (the flags this machine needs), collect page errors and HTTP errors,
// run the scenario, screenshot a failure, and print one JSON line with what was seen (the Python
// test reads the last line). A scenario gets { p: payload, page, out, shot, step } and fills `out`:
// `shot(name)` saves name.png, `step(name)` a numbered 01-name.png listed in out.steps.
const { chromium } = require('playwright-core');
const fs = require('fs');
const path = require('path');

const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run'];

function readStdin() {
  return new Promise(resolve => {
    let data = '';
    process.stdin.on('data', chunk => (data += chunk));
    process.stdin.on('end', () => resolve(JSON.parse(data)));
  });
}

async function runScenario(scenario, initial) {
  const p = await readStdin();
  fs.mkdirSync(p.screenshots, { recursive: true });
  const out = { console_errors: [], http_errors: [], ...initial };
  const browser = await chromium.launch({ executablePath: process.env.SPINEREVIEW_CHROMIUM || '/usr/bin/chromium', args: FLAGS });
  const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
  page.on('pageerror', e => out.console_errors.push(`pageerror: ${e.message}`));
  page.on('response', r => r.status() >= 400 && out.http_errors.push(`${r.status()} ${r.url()}`));
  const shot = async name => {
    const file = path.join(p.screenshots, `${name}.png`);
    await page.screenshot({ path: file });
    return file;
  };
  let n = 0;
  const step = async name => {
    const file = await shot(`${String(++n).padStart(2, '0')}-${name}`);
    (out.steps = out.steps || []).push({ name, file });
    console.log(`step ${name}`);
  };
  try {
    await scenario({ p, page, out, shot, step });
    out.ok = true;
  } catch (error) {
    out.ok = false;
    out.error = String(error && error.stack || error);
    await shot('failure').catch(() => {});
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(out));
}

// Open a study in the viewer as a user: the app's hand-off URL, the login form, and the redirect
// into the spine-review mode (what every reading scenario starts with).
async function openStudy(page, p, studyUid) {
  await page.goto(`${p.app_url}/viewer/open/${studyUid}/`);
  await page.fill('input[name=username]', p.username);
  await page.fill('input[name=password]', p.password);
  await Promise.all([page.waitForURL(url => url.href.startsWith(`${p.viewer_url}/spine-review`), { timeout: 30000 }),
    page.click('[type=submit]')]);
}

// Run a scenario as this process's whole job; `initial` seeds the output object.
function start(scenario, initial = {}) {
  runScenario(scenario, initial).catch(error => {
    console.log(JSON.stringify({ ok: false, error: String(error && error.stack || error) }));
    process.exit(1);
  });
}

module.exports = { FLAGS, openStudy, readStdin, start };
