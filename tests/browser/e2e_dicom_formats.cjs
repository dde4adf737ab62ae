// Every transfer syntax in the real viewer, driven by tests/browser/test_dicom_formats_in_ohif.py: one
// study holding the same series once per syntax; each copy is put into one viewport in turn and
// what the viewport shows is read back (decoded values, canvas statistics), together with the
// Accept header of its frame requests, the content type Orthanc answered and the errors logged.
// Reads a JSON payload on stdin; prints progress lines and, last, one JSON line with what it saw.
const { openStudy, start } = require('./e2e_support.cjs');

const VIEWPORT = 'sagT2';

start(async ({ p, page, out, shot }) => {
  const seriesOfUrl = url => decodeURIComponent((/\/series\/([^/]+)\//.exec(url) || [])[1] || '');
  const frames = {}; // series UID -> { accept: [...], content_type: [...], status: [...] }
  const entry = uid => (frames[uid] = frames[uid] || { accept: [], content_type: [], status: [] });
  page.on('request', r => {
    if (!/\/frames\//.test(r.url())) return;
    const e = entry(seriesOfUrl(r.url()));
    const accept = r.headers().accept || '';
    if (!e.accept.includes(accept)) e.accept.push(accept);
  });
  page.on('response', r => {
    if (!/\/frames\//.test(r.url())) return;
    const e = entry(seriesOfUrl(r.url()));
    const type = (r.headers()['content-type'] || '').replace(/;\s*boundary=.*$/, '');
    if (!e.content_type.includes(type)) e.content_type.push(type);
    if (!e.status.includes(r.status())) e.status.push(r.status());
  });
  const logged = [];
  page.on('console', m => (m.type() === 'error' || m.type() === 'warning') && logged.push(`${m.type()}: ${m.text().slice(0, 400)}`));

  await openStudy(page, p, p.study_uid);
  await page.waitForFunction(() => {
    const v = window.__spinereview?.viewportState?.();
    return window.__spinereview?.state?.().context && v && v.length && v.every(x => x.sop_uid);
  }, null, { timeout: 90000 });
  await page.waitForTimeout(1000); // a re-hang after the series classes arrived
  // the viewer's code-cache warm-up (src/warmup.ts) loads this study once more in a hidden frame,
  // whose console is this page's: let it end before the series are shown one by one
  await page.waitForFunction(() => ['done', 'gave up', 'skipped'].includes(window.__spinereviewWarmup?.state),
    null, { timeout: 90000 });
  out.before = logged.splice(0);

  for (const s of p.series) {
    const started = Date.now();
    const shown = await page.evaluate(([v, uid]) => window.__spinereview.showSeries(v, uid), [VIEWPORT, s.series_uid]);
    let seen = null;
    if (shown) {
      // the image of that series decoded and drawn: a canvas that is not one grey level
      const handle = await page.waitForFunction(([v, uid]) => {
        const r = window.__spinereview.renderedImage(v);
        return r && r.series_uid === uid && r.canvas.variance > 0 ? r : null;
      }, [VIEWPORT, s.series_uid], { timeout: p.per_series_ms, polling: 200 }).catch(() => null);
      seen = handle ? await handle.jsonValue() : await page.evaluate(v => window.__spinereview.renderedImage(v), VIEWPORT);
    }
    await page.waitForTimeout(300); // a late decode error still lands in this series' log
    out.results[s.name] = { shown, seen, ms: Date.now() - started, logged: logged.splice(0), frames: frames[s.series_uid] || null };
    await shot(`format-${s.name}`);
    console.log(`format ${s.name}: ${seen && seen.canvas.variance > 0 ? 'drawn' : 'NOT drawn'} in ${Date.now() - started} ms`);
  }

  // a reader's box on a frame of the Enhanced MR object: drawn with the mouse, saved from the panel
  if (p.box_series_uid) {
    await page.evaluate(([v, uid]) => window.__spinereview.showSeries(v, uid), [VIEWPORT, p.box_series_uid]);
    await page.waitForFunction(([v, uid]) => {
      const r = window.__spinereview.renderedImage(v);
      return r && r.series_uid === uid && r.canvas.variance > 0;
    }, [VIEWPORT, p.box_series_uid], { timeout: p.per_series_ms });
    out.box_image = await page.evaluate(v => {
      const { pixels, ...rest } = window.__spinereview.renderedImage(v);
      return rest;
    }, VIEWPORT);
    await page.selectOption('[data-testid=sr-new-box-condition]', p.box_condition);
    await page.evaluate(() => window.__spinereview.activateTool('RectangleROI'));
    const rect = await page.evaluate(v => window.__spinereview.imageRect(v), VIEWPORT);
    await page.mouse.move(rect.x + rect.width * 0.3, rect.y + rect.height * 0.3);
    await page.mouse.down();
    await page.mouse.move(rect.x + rect.width * 0.5, rect.y + rect.height * 0.5, { steps: 5 });
    await page.mouse.up();
    await page.evaluate(() => window.__spinereview.activateTool('WindowLevel'));
    await page.waitForFunction(() => window.__spinereview.currentBoxes().boxes.length > 0, null, { timeout: 10000 });
    out.boxes_to_save = await page.evaluate(() => window.__spinereview.currentBoxes());
    await page.click('[data-testid=sr-save-boxes]');
    await page.waitForFunction(() => /Saved \d+ box/.test(document.querySelector('[data-testid=sr-box-status]')?.textContent || ''),
      null, { timeout: 30000 }).catch(() => {});
    out.box_status = await page.textContent('[data-testid=sr-box-status]').catch(() => null);
    out.box_error = await page.evaluate(() => [...document.querySelectorAll('.sr-error, [data-testid=sr-error]')].map(e => e.textContent));
    await shot('enhanced-mr-reader-box');
  }
}, { results: {} });
