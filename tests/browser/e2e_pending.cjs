// Robustness in the real viewer, driven by tests/browser/test_viewer_e2e.py:
//  1. a different OHIF build (app bundle renamed) -> the extension refuses, with a message on screen;
//  2. a study the app does not know yet -> the API error is shown, not swallowed;
//  3. known but not drafted -> its status is shown; 4. the draft arrives -> the panel refreshes.
// Prints "PHASE <name>" lines when the test should act, and one JSON line last (e2e_support.cjs).
const { start } = require('./e2e_support.cjs');

start(async ({ p, page, out, step }) => {
  const viewerPath = `/spine-review?StudyInstanceUIDs=${encodeURIComponent(p.study_uid)}`;
  // log in on the viewer origin itself (the login page is served there too)
  await page.goto(`${p.viewer_url}/accounts/login/?next=${encodeURIComponent(viewerPath)}`);
  await page.fill('input[name=username]', p.username);
  await page.fill('input[name=password]', p.password);
  await page.click('[type=submit]');
  await page.waitForURL(url => url.pathname === '/spine-review', { timeout: 30000 });

  // 1. another OHIF build: serve the same app bundle under another content hash
  const other = 'app.bundle.0000000000000000.js';
  await page.route('**/*', async route => {
    const url = new URL(route.request().url());
    if (url.pathname === '/spine-review') {
      const response = await route.fetch();
      const html = (await response.text()).replace(/app\.bundle\.[0-9a-f]+\.js/, other);
      return route.fulfill({ response, body: html });
    }
    if (url.pathname === `/${other}`) {
      const response = await route.fetch({ url: `${p.viewer_url}/${p.app_bundle}` });
      return route.fulfill({ response });
    }
    return route.continue();
  });
  await page.goto(`${p.viewer_url}${viewerPath}`);
  const banner = await page.waitForSelector('[data-spinereview=refused]', { timeout: 60000 });
  out.refusal = await banner.textContent();
  out.panel_when_refused = !!(await page.$('[data-testid=sr-findings-panel]'));
  await step('refused-other-build');
  await page.unroute('**/*');

  // 2. the real build, a study the app has not synced yet: the API's 404 is on screen
  await page.goto(`${p.viewer_url}${viewerPath}`);
  await page.waitForSelector('[data-testid=sr-error]', { timeout: 60000 });
  out.api_error = await page.textContent('[data-testid=sr-error]');
  await step('api-error');
  console.log('PHASE unknown-study');

  // 3. the test syncs the study (no draft yet): the status replaces the error by itself
  await page.waitForSelector('[data-testid=sr-no-draft]', { timeout: 30000 });
  out.status = await page.textContent('[data-testid=sr-study-status]');
  out.no_draft = await page.textContent('[data-testid=sr-no-draft]');
  out.error_after_sync = !!(await page.$('[data-testid=sr-error]'));
  await step('awaiting-draft');
  console.log('PHASE awaiting-draft');

  // 4. the test stores the draft: findings appear without a reload
  const t0 = Date.now();
  await page.waitForSelector('[data-finding]', { timeout: 30000 });
  out.refresh_ms = Date.now() - t0;
  out.findings = await page.$$eval('[data-finding]', els => els.length);
  out.status_after = await page.textContent('[data-testid=sr-study-status]');
  await step('draft-arrived');
});
