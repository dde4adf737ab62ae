// The browser side of benchmarks/viewer_first_image.py (which documents what is measured): log in,
// then per run a fresh context with a cold, a warm and a hot load of the study in our mode; prints
// the results as one JSON line. Arguments: viewer origin, study UID, username, password, runs.
const { chromium } = require('playwright-core');
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run'];
const [viewer, studyUid, username, password, runs] = process.argv.slice(2);
const probe = () => {
  const lit = Array.from(document.querySelectorAll('canvas.cornerstone-canvas')).map(c => {
    const ctx = c.getContext('2d');
    if (!ctx || !c.width || !c.height) return false;
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let bright = 0;
    for (let i = 0; i < d.length; i += 4 * 7) if (d[i] > 20) bright++;
    return bright > (d.length / (4 * 7)) * 0.02;
  });
  return { lit: lit.filter(Boolean).length, panel: document.querySelectorAll('[data-finding]').length };
};
const WATERFALL = process.env.SPINEREVIEW_WATERFALL === '1';
const TRACE = process.env.SPINEREVIEW_TRACE || '';
const TRACE_WARM = process.env.SPINEREVIEW_TRACE_LOAD === 'warm';
const TRACE_CATEGORIES = ['devtools.timeline', 'disabled-by-default-devtools.timeline', 'blink.user_timing',
  'v8', 'v8.execute', 'toplevel', 'gpu', 'loading', '__metadata', 'disabled-by-default-v8.cpu_profiler'];
// a URL without its origin, each UID shortened to its last digits
const short = (u) => u.replace(/^https?:\/\/[^/]+/, '')
  .replace(/\d+(\.\d+){5,}/g, (m) => '…' + m.slice(-4)).slice(0, 120);
async function measure(page, url) {
  const requests = [];
  const onDone = (failed) => (req) => {
    const t = req.timing();
    requests.push({ url: short(req.url()), type: req.resourceType(),
      start: t.startTime, ttfb: t.responseStart, end: t.responseEnd, failed });
  };
  const finished = onDone(false), failed = onDone(true);
  if (WATERFALL) { page.on('requestfinished', finished); page.on('requestfailed', failed); }
  await page.goto(url, { waitUntil: 'commit' });
  let first = null, all = null, panel = null;
  const deadline = Date.now() + 120000;
  while ((all === null || panel === null) && Date.now() < deadline) {
    const s = await page.evaluate(probe).catch(() => ({ lit: 0, panel: 0 }));
    const t = await page.evaluate(() => performance.now());
    if (first === null && s.lit >= 1) first = t;
    if (all === null && s.lit >= 4) all = t;
    if (panel === null && s.panel > 0) panel = t;
    await page.waitForTimeout(25);
  }
  // when the first frame was asked for: what follows is the browser's (decoding, drawing)
  const frameAsked = await page.evaluate(() => Math.min(...performance.getEntriesByType('resource')
    .filter(e => e.name.includes('/frames/')).map(e => e.startTime)));
  // when the page drew it: our mode's mark, set in the task that drew (src/firstImage.ts)
  const drawn = await page.evaluate(() => window.__litAtMark >= 1 ? performance.getEntriesByName(
    'spinereview:first-image').map(m => m.startTime)[0] ?? null : null);
  const result = { first_image_ms: drawn, pixels_seen_ms: first, all_four_ms: all, panel_ms: panel,
    first_frame_asked_ms: Number.isFinite(frameAsked) ? frameAsked : null };
  // the mark counts only where a canvas showed image pixels in the task that set it (the init
  // script below) and the probe then saw them too
  if (drawn === null || first === null || drawn > first) result.first_image_ms = null;
  if (WATERFALL) {
    page.off('requestfinished', finished); page.off('requestfailed', failed);
    const origin = await page.evaluate(() => performance.timeOrigin);
    const entries = await page.evaluate(() => performance.getEntriesByType('resource')
      .map(e => [e.name, [e.transferSize, e.encodedBodySize, e.decodedBodySize]]));
    const sizes = Object.fromEntries(entries.map(([name, size]) => [short(name), size]));
    result.waterfall = requests.map(r => ({ ...r, start: r.start - origin, sizes: sizes[r.url] || null }))
      .sort((a, b) => a.start - b.start);
  }
  return result;
}
// a reader reads a study before opening the next, and the viewer uses that time to run itself
// once more in a hidden frame (ohif-extension/src/warmup.ts): wait for it to be scheduled (after the
// first image and an idle moment; a tree without it never schedules one) and to end
const WAIT_WARMUP = process.env.SPINEREVIEW_WAIT_WARMUP !== '0';
async function readFirstStudy(page) {
  const started = Date.now();
  const state = () => page.evaluate(() => window.__spinereviewWarmup || null).catch(() => null);
  let s = await state();
  while (s === null && Date.now() - started < 2000) { await page.waitForTimeout(100); s = await state(); }
  while (s && (s.state === 'scheduled' || s.state === 'running') && Date.now() - started < 60000) {
    await page.waitForTimeout(100); s = await state();
  }
  return { ...(s || { state: 'none' }), waited_ms: Date.now() - started };
}
(async () => {
  const executablePath = process.env.SPINEREVIEW_CHROMIUM || '/usr/bin/chromium';
  const browser = await chromium.launch({ executablePath, args: FLAGS });
  const url = `${viewer}/spine-review?StudyInstanceUIDs=${studyUid}`;
  const results = [];
  for (let i = 0; i < Number(runs); i++) {
    const context = await browser.newContext({ viewport: { width: 1600, height: 900 } });
    // the canvases probed in the very task that sets the first-image mark
    await context.addInitScript({ content: `(() => { const probe = ${probe.toString()};
      const mark = performance.mark.bind(performance);
      performance.mark = (name, options) => { const m = mark(name, options);
        if (name === 'spinereview:first-image') window.__litAtMark = probe().lit;
        return m; }; })();` });
    const page = await context.newPage();
    await page.goto(`${viewer}/accounts/login/?next=/app-config.js`);
    await page.fill('input[name=username]', username);
    await page.fill('input[name=password]', password);
    await Promise.all([page.waitForNavigation(), page.click('[type=submit]')]);
    const tracing = TRACE && i === 0;
    if (tracing && !TRACE_WARM) await browser.startTracing(page, { path: TRACE, categories: TRACE_CATEGORIES });
    const cold = await measure(page, url);
    if (tracing && !TRACE_WARM) await browser.stopTracing();
    if (WAIT_WARMUP) cold.warmup = await readFirstStudy(page);
    if (tracing && TRACE_WARM) await browser.startTracing(page, { path: TRACE, categories: TRACE_CATEGORIES });
    const warm = await measure(page, url);
    if (tracing && TRACE_WARM) await browser.stopTracing();
    // the third load: Chromium keeps V8's compiled code of a script it has run twice, so from the
    // third study of a session on the bundles are not compiled again
    const hot = await measure(page, url);
    results.push({ cold, warm, hot });
    await context.close();
  }
  await browser.close();
  console.log(JSON.stringify(results));
})().catch(e => { console.error(e); process.exit(1); });
