// The reading room in headless Chromium (playwright-core), driven by tests/browser/test_viewer_reading_room.py:
// the hanging protocol on vendor-named studies, labelled boxes, and a keyboard-only review.
// Reads a JSON payload on stdin; prints progress lines and, last, one JSON line with what it saw.
const { openStudy, start } = require('./e2e_support.cjs');

start(async ({ p, page, out, shot }) => {
  const open = async uid => {
    await page.goto(`${p.viewer_url}/spine-review?StudyInstanceUIDs=${encodeURIComponent(uid)}`);
    await page.waitForFunction(() => {
      const sr = window.__spinereview;
      const v = sr?.viewportState?.();
      return sr?.state?.().context && v && v.length === 4 && v.every(x => x.sop_uid);
    }, null, { timeout: 60000 });
    await page.waitForTimeout(1500); // a re-hang after the classes arrived, and the last render
    await page.waitForFunction(() => window.__spinereview.viewportState().every(x => x.sop_uid), null, { timeout: 30000 });
  };
  let presses = 0;
  const press = async key => {
    presses += 1;
    await page.keyboard.press(key);
  };
  const unfocus = () => page.evaluate(() => document.activeElement && document.activeElement.blur && document.activeElement.blur());

  // login on the app origin, hand-off to the viewer origin
  await openStudy(page, p, p.studies[0].study_uid);

  // 1. every vendor's study: which series each viewport shows, at which image
  for (const s of p.studies) {
    await open(s.study_uid);
    out.hanging[s.name] = await page.evaluate(() => window.__spinereview.viewportState());
    await shot(`hanging-${s.name}`);
    console.log(`hanging ${s.name}`);
  }

  // 2. the drafted study: labelled, coloured boxes; then a review with one corrected level.
  // The mode's first-image mark: the canvases are read in the very task that sets it
  await page.addInitScript(() => {
    const mark = performance.mark.bind(performance);
    performance.mark = (name, options) => {
      const m = mark(name, options);
      if (name === 'spinereview:first-image') {
        window.__litAtFirstImage = Array.from(document.querySelectorAll('canvas.cornerstone-canvas')).filter(c => {
          const d = c.width && c.height ? c.getContext('2d').getImageData(0, 0, c.width, c.height).data : [];
          for (let i = 0; i < d.length; i += 4) if (d[i] > 0) return true;
          return false;
        }).length;
      }
      return m;
    };
  });
  await open(p.review_uid);
  await page.waitForFunction(() => /box\(es\) from the/.test(document.querySelector('[data-testid=sr-box-status]')?.textContent || ''),
    null, { timeout: 60000 });
  out.first_image = await page.evaluate(() => ({
    marks: performance.getEntriesByName('spinereview:first-image').map(e => [e.startTime, e.detail?.viewportId ?? null]),
    boxes: performance.getEntriesByName('spinereview:boxes').map(e => e.startTime),
    lit: window.__litAtFirstImage ?? null,
    rendering: window.config.spinereview?.renderingUsed ?? null,
    fallbackDialog: /Fell Back to CPU Rendering/i.test(document.body.innerText),
  }));
  await page.waitForTimeout(500);
  // OHIF's orientation markers ("A", "H", ...) per viewport, drawn on the CPU path too (cpuViewports.ts)
  out.orientation_markers = await page.evaluate(() => Array.from(document.querySelectorAll('[data-viewportid]'))
    .map(v => [v.getAttribute('data-viewportid'), Array.from((v.closest('.viewport-wrapper') || v).querySelectorAll('.orientation-marker'))
      .map(e => e.textContent.trim())]));
  out.box_labels = await page.evaluate(() => window.__spinereview.boxLabels());
  await shot('labelled-boxes');
  // per-condition toggle: switch the first condition's boxes off
  const toggles = await page.$$eval('[data-condition-toggle]', els => els.map(e => e.getAttribute('data-condition-toggle')));
  out.toggles = toggles;
  if (toggles.length) {
    await page.click(`[data-condition-toggle="${toggles[0]}"]`);
    await page.waitForTimeout(300);
    out.box_labels_toggled = await page.evaluate(() => window.__spinereview.boxLabels());
    await page.click(`[data-condition-toggle="${toggles[0]}"]`);
  }
  // sagittal and axial linked: the reference line follows the active viewport
  out.ref_initial = await page.evaluate(() => window.__spinereview.referenceLines());
  await page.evaluate(() => window.__spinereview.activate('axT2'));
  await page.waitForFunction(() => window.__spinereview.referenceLines().drawnIn.includes('sagT2'), null, { timeout: 10000 })
    .catch(() => {});
  out.ref_axial = await page.evaluate(() => window.__spinereview.referenceLines());
  await shot('reference-lines-axial-active');
  await page.evaluate(() => window.__spinereview.activate('sagT2'));
  await page.waitForFunction(() => window.__spinereview.referenceLines().sourceViewportId === 'sagT2', null, { timeout: 10000 })
    .catch(() => {});
  out.ref_sagittal = await page.evaluate(() => window.__spinereview.referenceLines());
  // click-to-level by geometry: the axial slice nearest the finding's sagittal box
  out.level_moved = await page.evaluate(key => window.__spinereview.levelAxials(key), p.level_condition);
  out.level_viewports = await page.evaluate(() => window.__spinereview.viewportState());
  // a reader-added box takes the condition chosen in the panel, labelled at once, saved with it
  await page.selectOption('[data-testid=sr-new-box-condition]', p.new_box_condition);
  await page.evaluate(() => window.__spinereview.activateTool('RectangleROI'));
  const rect = await page.evaluate(() => window.__spinereview.imageRect('sagT2'));
  out.image_rect = rect;
  await page.mouse.move(rect.x + rect.width * 0.2, rect.y + rect.height * 0.2);
  await page.mouse.down();
  await page.mouse.move(rect.x + rect.width * 0.3, rect.y + rect.height * 0.3, { steps: 5 });
  await page.mouse.up();
  await page.waitForFunction(c => window.__spinereview.boxLabels().some(b => b.condition === c), p.new_box_condition,
    { timeout: 10000 }).catch(() => {});
  out.new_box_labels = await page.evaluate(() => window.__spinereview.boxLabels());
  await page.evaluate(() => window.__spinereview.activateTool('WindowLevel'));
  await shot('reader-box-labelled');
  await page.click('[data-testid=sr-save-boxes]');
  await page.waitForFunction(() => /Saved \d+ box/.test(document.querySelector('[data-testid=sr-box-status]')?.textContent || ''),
    null, { timeout: 30000 });
  out.key_legend = await page.textContent('[data-testid=sr-keys]');
  await unfocus();
  presses = 0;
  await press('n'); // first present finding
  await page.waitForFunction(() => window.__spinereview.state().selected, null, { timeout: 5000 });
  out.corrected_finding = await page.evaluate(() => window.__spinereview.state().selected);
  await press(p.level_key); // one level down (or up): a correction
  await page.waitForSelector('[data-verdict-value=correct]', { timeout: 10000 });
  out.box_labels_after_correction = await page.evaluate(() => window.__spinereview.boxLabels());
  await press('Shift+A'); // agree with every other present finding
  await page.waitForFunction(n => document.querySelectorAll('[data-verdict-value=agree]').length >= n, p.review_present - 1,
    { timeout: 20000 });
  await press('1'); // RADPEER 1
  await page.waitForFunction(() => window.__spinereview.state().radpeer === '1', null, { timeout: 5000 });
  await shot('review-before-sign');
  await press('Control+Enter');
  await page.waitForSelector('[data-testid=sr-signed-findings]', { timeout: 30000 });
  out.keys.corrected = presses;
  out.signed_review = await page.textContent('[data-testid=sr-signed-findings]');
  await shot('review-signed');

  // 3. a draft with nothing to correct: agree with all, RADPEER 1, sign
  await open(p.clean_uid);
  await page.waitForSelector('[data-finding]', { timeout: 30000 });
  await unfocus();
  presses = 0;
  await press('Shift+A');
  await page.waitForFunction(n => document.querySelectorAll('[data-verdict-value=agree]').length >= n, p.clean_present,
    { timeout: 20000 });
  await press('1');
  await page.waitForFunction(() => window.__spinereview.state().radpeer === '1', null, { timeout: 5000 });
  await press('Control+Enter');
  await page.waitForSelector('[data-testid=sr-signed-findings]', { timeout: 30000 });
  out.keys.clean = presses;
  out.signed_clean = await page.textContent('[data-testid=sr-signed-findings]');
  await shot('clean-signed');
  out.ok = true;
}, { hanging: {}, keys: {} });
