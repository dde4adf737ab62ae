// Provenance and priors in headless Chromium (playwright-core), driven by tests/browser/test_viewer_provenance_e2e.py:
// the check note, the sources view after an edit of another section, a finding sentence that moves the
// viewports on hover and on click, the prior's report and the side-by-side comparison.
// Reads a JSON payload on stdin; prints progress lines and, last, one JSON line with what it saw.
const { openStudy, start } = require('./e2e_support.cjs');

start(async ({ p, page, out, shot }) => {
  const loaded = async () => {
    await page.waitForFunction(() => {
      const sr = window.__spinereview;
      const v = sr?.viewportState?.();
      return sr?.state?.().context && v && v.length >= 2 && v.every(x => x.sop_uid);
    }, null, { timeout: 60000 });
    await page.waitForTimeout(1500);
  };
  // the image the viewport showing the target series is at ('' when none shows it)
  const shownSop = () => page.evaluate(series => {
    const v = window.__spinereview.viewportState().find(x => x.series_uid === series);
    return v ? v.sop_uid : '';
  }, p.series_uid);
  const allSops = () => page.evaluate(() => window.__spinereview.viewportState().map(v => v.sop_uid));
  // scroll the target series' viewport a few images away from the key slice (mouse wheel: stack scroll)
  const scrollAway = async () => {
    const id = await page.evaluate(series => window.__spinereview.viewportState().find(x => x.series_uid === series)?.viewportId,
      p.series_uid);
    if (!id) return;
    const rect = await page.evaluate(v => window.__spinereview.imageRect(v), id);
    await page.mouse.move(rect.x + rect.width / 2, rect.y + rect.height / 2);
    out.scroll_log = out.scroll_log || [];
    for (let i = 0; i < 4 && (await shownSop()) === p.sop_uid; i++) {
      await page.mouse.wheel(0, i % 2 ? 240 : -240); // the key slice may be the first or the last image
      await page.waitForTimeout(300);
      out.scroll_log.push([id, rect, await page.evaluate(() => window.__spinereview.viewportState().map(v => [v.viewportId, v.index]))]);
    }
  };

  await openStudy(page, p, p.study_uid);
  await loaded();
  await page.click('[data-cy=report-btn]');

  // the consistency check's note, expanded
  await page.waitForSelector('[data-testid=sr-check-summary]', { timeout: 20000 });
  out.check_summary = (await page.textContent('[data-testid=sr-check-summary]')).trim();
  await page.click('[data-testid=sr-check-summary]');
  out.check_changes = await page.$$eval('[data-testid=sr-check-changes] li', els => els.length).catch(() => 0);
  out.prior_report = await page.textContent('[data-testid=sr-prior-report]');

  // the reader edits another section (CLINICAL HISTORY); autosaved
  const history = page.locator('textarea[data-section="CLINICAL HISTORY"]');
  await history.click();
  await page.keyboard.press('Control+End');
  await page.keyboard.type(p.history_addition);
  await page.waitForFunction(() => /Saved revision/.test(document.querySelector('[data-testid=sr-save-state]')?.textContent || ''),
    null, { timeout: 20000 });
  out.counts = await page.$$eval('[data-testid=sr-section-counts]', els => els.map(e => e.textContent));

  // the sources view: AI and typed sentences, linked finding sentences
  await page.click('[data-testid=sr-sources-toggle]');
  await page.waitForSelector('[data-testid=sr-sources]', { timeout: 10000 });
  out.typed = await page.$$eval('[data-origin=typed]', els => els.map(e => e.textContent));
  out.ai_count = await page.$$eval('[data-origin=ai]', els => els.length);
  out.linked = await page.$$eval('.sr-sent-linked', els => els.map(e => e.getAttribute('data-conditions')));
  await shot('sources');
  const sentence = `[data-testid=sr-sources] .sr-sent-linked[data-conditions~="${p.condition}"]`;
  out.probability_tag = await page.textContent(`${sentence} >> nth=0 >> [data-link="${p.condition}"]`);

  // hover: the viewports go to the finding's key slice and box
  await scrollAway();
  out.before_hover = await shownSop();
  await page.hover(`${sentence} >> nth=0`);
  await page.waitForFunction(s => window.__spinereview.viewportState().some(v => v.sop_uid === s), p.sop_uid, { timeout: 10000 })
    .catch(() => {});
  out.after_hover = await allSops();
  out.selected_after_hover = await page.evaluate(() => window.__spinereview.state().selected);
  await shot('after-hover');

  // click: the same, after the viewport was scrolled away again
  await scrollAway();
  out.before_click = await shownSop();
  await page.click(`${sentence} >> nth=0`);
  await page.waitForFunction(s => window.__spinereview.viewportState().some(v => v.sop_uid === s), p.sop_uid, { timeout: 10000 })
    .catch(() => {});
  out.after_click = await allSops();
  await shot('after-click');

  // the prior, side by side (OHIF's comparison protocol, both studies in the URL)
  await page.click(`[data-prior="${p.prior_uid}"] [data-testid=sr-prior-compare]`);
  await page.waitForURL(url => url.href.includes(encodeURIComponent(p.prior_uid)) || url.href.includes(p.prior_uid), { timeout: 30000 });
  await loaded();
  await page.waitForTimeout(1500);
  out.compare_url = page.url();
  out.compare_viewports = await page.evaluate(() => window.__spinereview.viewportState());
  out.compare_panel_study = await page.evaluate(() => window.__spinereview.state().context.study.study_uid);
  await shot('side-by-side');
  out.ok = true;
}, {});
