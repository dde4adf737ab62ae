// The viewer's code-cache warm-up, driven by tests/browser/test_viewer_warmup.py:
//  1. control: open a study and open it again at once, no warm-up frame let through: how the second
//     load compiled OHIF's app bundle (Chromium's plain second run: compiled again);
//  2. in a fresh browser context, open the study and let the reader "read" it: the viewer loads
//     itself once more in a hidden frame; what the frame was, what it asked for, where the focus is;
//  3. open the next study (the same one again), traced: the app bundle's code from the cache.
// One JSON line last (e2e_support.cjs).
const { openStudy, start } = require('./e2e_support.cjs');

const CATEGORIES = ['v8', 'devtools.timeline', 'disabled-by-default-devtools.timeline'];

// reload the page with a trace; the app bundle's v8.compile events (their cache fields)
async function tracedReload(page, bundle) {
  const browser = page.context().browser();
  await browser.startTracing(page, { categories: CATEGORIES });
  await page.reload();
  await page.waitForSelector('[data-finding]', { timeout: 60000 });
  const trace = JSON.parse((await browser.stopTracing()).toString());
  return trace.traceEvents
    .filter(e => e.name === 'v8.compile' && (e.args?.data?.url || '').includes(bundle))
    .map(e => e.args.data);
}

start(async ({ p, page, out, step }) => {
  // 1. the control, in its own context
  const control = await page.context().browser().newContext({ viewport: { width: 1600, height: 900 } });
  const controlPage = await control.newPage();
  // no warm-up may reach the control, however slow this machine is: its frame is never loaded
  out.control_frames_blocked = 0;
  await controlPage.route(url => url.pathname === '/spine-review', route => {
    if (!route.request().frame().parentFrame()) return route.continue(); // the page itself
    out.control_frames_blocked++;
    return route.abort();
  });
  await openStudy(controlPage, p, p.study_uid);
  await controlPage.waitForSelector('[data-finding]', { timeout: 60000 });
  out.control_state = await controlPage.evaluate(() => window.__spinereviewWarmup?.state ?? null);
  out.control_compiles = await tracedReload(controlPage, p.app_bundle);
  await control.close();

  // 2. the reading of the first study
  const frameRequests = [];
  page.on('request', r => {
    if (r.frame() !== page.mainFrame()) frameRequests.push({ method: r.method(), url: r.url() });
  });
  await openStudy(page, p, p.study_uid);
  await page.waitForSelector('[data-finding]', { timeout: 60000 });
  const frame = await page.waitForSelector('iframe[data-spinereview-warmup]', { state: 'attached', timeout: 60000 });
  out.frame = await frame.evaluate(f => {
    const r = f.getBoundingClientRect();
    return { inert: f.inert, tabIndex: f.tabIndex, right: r.right, width: r.width, height: r.height,
      src: f.src, page: window.location.href, viewport: [window.innerWidth, window.innerHeight] };
  });
  await page.waitForFunction(() => ['done', 'gave up'].includes(window.__spinereviewWarmup?.state), null, { timeout: 60000 });
  out.state = await page.evaluate(() => window.__spinereviewWarmup);
  out.frames_after = page.frames().length;
  out.focus_after = await page.evaluate(() => document.activeElement?.tagName ?? null);
  out.frame_requests = frameRequests;
  await step('read');

  // 3. the next study
  out.compiles = await tracedReload(page, p.app_bundle);
  await page.waitForFunction(() => window.__spinereviewWarmup?.state, null, { timeout: 60000 });
  out.state_next = await page.evaluate(() => window.__spinereviewWarmup);
  out.frames_next = page.frames().length;
});
