// The signed report SR in OHIF's SR viewer, driven by tests/browser/test_report_sr_in_ohif.py: the
// SR's thumbnail in the study browser, double-clicked into a viewport, and the text OHIF renders there.
// Reads a JSON payload on stdin; prints progress lines and, last, one JSON line with what it saw.
const { openStudy, start } = require('./e2e_support.cjs');

start(async ({ p, page, out, shot }) => {
  page.on('console', m => /SR|sr|support/.test(m.text()) && out.console_log.push(`${m.type()}: ${m.text().slice(0, 300)}`));
  const panesText = () => page.$$eval('[data-cy=viewport-pane]', els => els.map(e => e.innerText).join('\n---\n'));

  await openStudy(page, p, p.study_uid);
  await page.waitForFunction(() => {
    const v = window.__spinereview?.viewportState?.();
    return v && v.length >= 2 && v.every(x => x.sop_uid);
  }, null, { timeout: 60000 });
  await page.waitForTimeout(1000);
  out.display_sets = await page.evaluate(() => window.__spinereview.displaySets());
  out.viewports_text_before = await panesText();

  // the SR's thumbnail in OHIF's study browser (series number of the report SR)
  const thumb = page.locator(`[data-cy^=study-browser-thumbnail][data-series="${p.series_number}"]`).first();
  await thumb.waitFor({ timeout: 20000 });
  out.thumbnail_kind = await thumb.getAttribute('data-cy');
  out.thumbnail_modality = await thumb.locator('[data-cy=series-modality-label]').first().innerText().catch(() => '');
  out.thumbnail_description = await thumb.locator('[data-cy=series-description-label]').first().innerText().catch(() => '');
  out.thumbnail_text = await thumb.innerText();
  await shot('study-browser');

  // double-click: OHIF puts the SR into the active viewport, its dicom-sr viewport renders the content
  await thumb.dblclick();
  await page.waitForFunction(s => [...document.querySelectorAll('[data-cy=viewport-pane]')].some(e => e.innerText.includes(s)),
    p.impression, { timeout: 30000 }).catch(() => {});
  await page.waitForTimeout(500);
  out.sr_viewport_text = await panesText();
  await shot('sr-viewport');
  out.ok = true;
}, { console_log: [] });
