// End-to-end review in headless Chromium (playwright-core), driven by tests/browser/test_viewer_e2e.py.
// Reads a JSON payload on stdin; prints progress lines and, last, one JSON line with what it saw
// (e2e_support.cjs). Every step saves a numbered screenshot into payload.screenshots.
const path = require('path');
const { start } = require('./e2e_support.cjs');

start(async ({ p, page, out, step }) => {
  page.on('console', m => m.type() === 'error' && out.console_errors.push(m.text().slice(0, 300)));
  const state = () => page.evaluate(() => window.__spinereview.viewportState());

  // 1. open the study from the app origin: login there, then the signed hand-off to the viewer origin
  await page.goto(`${p.app_url}/viewer/open/${p.study_uid}/`);
  await page.fill('input[name=username]', p.username);
  await page.fill('input[name=password]', p.password);
  await step('login');
  await Promise.all([page.waitForURL(url => url.href.startsWith(`${p.viewer_url}/spine-review`), { timeout: 30000 }),
    page.click('[type=submit]')]);
  out.viewer_location = page.url();

  // 2. the mode: panels, and every viewport rendering an image (checked on the canvas pixels)
  await page.waitForSelector('[data-finding]', { timeout: 60000 });
  await page.waitForFunction(() => {
    const s = window.__spinereview?.viewportState?.();
    return s && s.length > 0 && s.every(v => v.sop_uid);
  }, null, { timeout: 60000 });
  await page.waitForFunction(() => /box\(es\) from the/.test(document.querySelector('[data-testid=sr-box-status]')?.textContent || ''),
    null, { timeout: 60000 });
  await page.waitForTimeout(500); // last render
  out.viewports_initial = await state();
  out.canvases = [];
  const canvases = await page.$$('canvas.cornerstone-canvas');
  for (let i = 0; i < canvases.length; i++) {
    const file = path.join(p.screenshots, `canvas-${i}.png`);
    await canvases[i].screenshot({ path: file });
    out.canvases.push(file);
  }
  out.box_status = await page.textContent('[data-testid=sr-box-status]');
  out.worklist_href = await page.getAttribute('[data-testid=sr-worklist]', 'href');
  await step('study-open');

  // 3. a finding: every viewport showing its key-slice series moves there, the box is on that image
  await page.click(`[data-finding=${p.finding}]`);
  await page.waitForFunction(expected => {
    const s = window.__spinereview.viewportState();
    return expected.every(e => s.some(v => v.series_uid === e.series_uid && v.sop_uid === e.sop_uid && (!e.box || v.visibleBoxes > 0)));
  }, p.expected_slices, { timeout: 20000 }).catch(() => {});
  out.viewports_after_click = await state();
  await step('finding-selected');

  // edit an AI box like a reader: drag its bottom-left corner handle
  let withBox = null;
  let box = null;
  for (const v of out.viewports_after_click.filter(v => v.visibleBoxes > 0)) { // the largest box on screen
    for (const b of await page.evaluate(id => window.__spinereview.boxHandles(id), v.viewportId)) {
      const area = h => (Math.max(...h.map(p => p[0])) - Math.min(...h.map(p => p[0]))) * (Math.max(...h.map(p => p[1])) - Math.min(...h.map(p => p[1])));
      if (!box || area(b.handles) > area(box.handles)) [withBox, box] = [v, b];
    }
  }
  // the corner that is top-right on screen (OHIF puts the measurement label by the left corners):
  // dragging it right/up grows x1 and shrinks y0 in image pixels
  const [hx, hy] = box.handles.reduce((a, b) => (b[0] - b[1] > a[0] - a[1] ? b : a));
  await page.evaluate(id => window.__spinereview.activate(id), withBox.viewportId); // as a first click would
  await page.waitForTimeout(300);
  await page.mouse.move(hx, hy);
  await page.mouse.down();
  await page.mouse.move(hx + 12, hy - 12, { steps: 6 });
  await page.mouse.up();
  const edited = (await page.evaluate(id => window.__spinereview.boxHandles(id), withBox.viewportId))
    .find(b => b.annotationUID === box.annotationUID);
  out.edited_box = { sop_uid: withBox.sop_uid, before: box.xyxy, after: edited.xyxy, handles: box.handles,
    viewport: withBox.viewportId, dragged_from: [hx, hy] };
  await step('box-edited');

  // keyboard: from an absent finding, n selects the first present one
  await page.click(`[data-finding=${p.absent_finding}]`);
  await page.keyboard.press('n');
  await page.waitForFunction(f => window.__spinereview.state().selected !== f, p.absent_finding, { timeout: 5000 })
    .catch(() => {});
  out.selected_after_n = await page.evaluate(() => window.__spinereview.state().selected);
  await page.click(`[data-finding=${p.finding}]`);

  // boxes toggle off and on again
  await page.click('[data-testid=sr-toggle-boxes]');
  out.viewports_boxes_hidden = await state();
  await page.click('[data-testid=sr-toggle-boxes]');

  // the rectangles as they are on the images, saved back as a new SR version
  await page.click('[data-testid=sr-save-boxes]');
  await page.waitForFunction(() => /^Saved \d+ box/.test(document.querySelector('[data-testid=sr-box-status]')?.textContent || ''),
    null, { timeout: 30000 });
  out.box_save_status = await page.textContent('[data-testid=sr-box-status]');

  // 4. the report: edit a section, autosave
  await page.click('[data-cy=report-btn]');
  const section = page.locator(`textarea[data-section="${p.section}"]`);
  await section.waitFor({ timeout: 10000 });
  await section.click();
  await section.press('End');
  await page.keyboard.press('Control+End');
  await page.keyboard.type(p.addition);
  await page.waitForFunction(() => /Saved revision/.test(document.querySelector('[data-testid=sr-save-state]')?.textContent || ''),
    null, { timeout: 20000 });
  out.save_state = await page.textContent('[data-testid=sr-save-state]');
  out.similar = await page.$$eval('[data-testid=sr-similar]', els => els.map(e => e.textContent));
  await step('report-edited');

  // someone else saves meanwhile (the test does it); my next save conflicts: both texts shown
  console.log('PHASE first-save');
  await page.waitForTimeout(300);
  await section.click();
  await page.keyboard.press('Control+End');
  await page.keyboard.type(p.addition2);
  await page.waitForSelector('[data-testid=sr-conflict]', { timeout: 20000 });
  out.conflict_text = await page.textContent('[data-testid=sr-conflict]');
  out.conflict_deleted = await page.$$eval('[data-testid=sr-conflict-diff] .sr-del', els => els.map(e => e.textContent).join(''));
  out.conflict_inserted = await page.$$eval('[data-testid=sr-conflict-diff] .sr-ins', els => els.map(e => e.textContent).join(''));
  await step('conflict');
  await page.click('[data-testid=sr-conflict] >> text=Keep mine on top of current');
  await page.waitForFunction(() => /Saved revision/.test(document.querySelector('[data-testid=sr-save-state]')?.textContent || '')
    && !document.querySelector('[data-testid=sr-conflict]'), null, { timeout: 20000 });
  out.save_state_after_conflict = await page.textContent('[data-testid=sr-save-state]');
  await page.click('[data-testid=sr-diff-toggle]');
  out.diff_insertions = await page.$$eval('[data-testid=sr-diff] .sr-ins', els => els.map(e => e.textContent));
  await step('diff');
  await page.click('[data-testid=sr-diff-toggle]');

  // 5. RADPEER 2a and sign-off
  await page.check('[data-radpeer="2a"]');
  await page.fill('[data-testid=sr-comment]', p.comment);
  await page.uncheck('[data-testid=sr-in-scope]');
  await step('radpeer');
  await page.keyboard.press('Control+Enter'); // the sign-off shortcut
  await page.waitForSelector('[data-testid=sr-signed]', { timeout: 20000 });
  out.signed_text = await page.textContent('[data-testid=sr-signed]');
  await step('signed');
});
