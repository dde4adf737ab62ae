/**
 * The reader's second study as fast as the third: the viewer runs itself once more, in a hidden
 * frame, while the reader reads the first.
 *
 * Why: Chromium keeps V8's compiled code of a script only from the second time it compiles that
 * script (the first run stamps the cached script, the second stores its compiled code beside it,
 * every later run reads it). So the first study of a session compiles OHIF's bundles (17 MB) from
 * nothing, the second compiles them again, and only the third starts from compiled code: on a
 * 2-core machine the second study's first image came 0.25-0.3 s later than the third's
 * (benchmarks/viewer_first_image.py). A reader spends far longer than that on the first study, so
 * after its first image, once the page is idle, the viewer loads the same URL in an off-screen,
 * inert frame: that is the second run, Chromium stores the compiled code, and the reader's next
 * study is a third run. The frame is removed as soon as it has drawn its own first image.
 *
 * What the frame must not do: count reading time or take the focus (mode/index.ts skips the reading
 * clock in it; the frame is inert and off-screen). Everything else it does is what a page load does:
 * GET requests answered from the HTTP cache or the API. Once a build has been warmed in this browser
 * (localStorage, by the page's script URLs, which carry the build's content hashes), later pages
 * skip it; a site turns it off with SPINEREVIEW_VIEWER_WARMUP=0. Its state is on
 * ``window.__spinereviewWarmup`` for the benchmark and the tests.
 */
import { whenIdle } from './firstImage';

/** The attribute that marks the hidden frame (read inside it by isWarmupFrame). */
export const WARMUP_ATTR = 'data-spinereview-warmup';
/** How long the reader has had the first image before the frame starts (then an idle moment). */
export const WARMUP_AFTER_MS = 3000;
/** The frame is given up (and removed) if it has not drawn an image by then. */
export const WARMUP_LIMIT_MS = 30_000;
const MESSAGE = 'spinereview:warmup-drawn';
const STORAGE_PREFIX = 'spinereview:warmed:';

export type WarmupState = { state: 'scheduled' | 'running' | 'done' | 'skipped' | 'gave up'; ms?: number; reason?: string };

function setState(s: WarmupState): void {
  (window as any).__spinereviewWarmup = s;
}

/** True in the hidden frame the viewer loads to warm the browser's code cache. */
export function isWarmupFrame(): boolean {
  try {
    return window.frameElement?.hasAttribute(WARMUP_ATTR) ?? false;
  } catch {
    return false; // a cross-origin parent: not ours
  }
}

/** In the hidden frame: tell the page that loaded it that an image is drawn (its work is done). */
export function announceWarmupDrawn(): void {
  if (isWarmupFrame()) window.parent.postMessage({ type: MESSAGE }, window.location.origin);
}

/** The build this page runs, by its scripts' URLs (content-hashed bundles). */
function buildKey(): string {
  const scripts = Array.from(document.scripts, s => s.src).filter(Boolean).sort();
  let hash = 0;
  for (const ch of scripts.join('|')) hash = (Math.imul(hash, 31) + ch.charCodeAt(0)) | 0;
  return STORAGE_PREFIX + (hash >>> 0).toString(36);
}

function stored(key: string): boolean {
  try {
    return window.localStorage.getItem(key) !== null;
  } catch {
    return false;
  }
}

function remember(key: string): void {
  try {
    window.localStorage.setItem(key, new Date().toISOString());
  } catch {
    // private mode or a full store: the next page warms again, nothing else changes
  }
}

/**
 * Call once the first image is drawn (top window only). Loads this page's URL in a hidden frame
 * after WARMUP_AFTER_MS and an idle moment, unless this build was warmed before in this browser.
 * Returns the cancel (the mode's exit): a frame still loading is removed.
 */
export function scheduleWarmup(): () => void {
  if (window.top !== window || isWarmupFrame()) return () => undefined;
  if ((window as any).config?.spinereview?.warmup === false) {
    setState({ state: 'skipped', reason: 'turned off by the site (SPINEREVIEW_VIEWER_WARMUP=0)' });
    return () => undefined;
  }
  const key = buildKey();
  if (stored(key)) {
    setState({ state: 'skipped', reason: 'this build was warmed before in this browser' });
    return () => undefined;
  }
  setState({ state: 'scheduled' });
  let frame: HTMLIFrameElement | null = null;
  let cancelIdle: (() => void) | null = null;
  let limit: ReturnType<typeof setTimeout> | null = null;
  let started = 0;

  const finish = (s: WarmupState) => {
    window.removeEventListener('message', onMessage);
    if (limit !== null) clearTimeout(limit);
    limit = null;
    frame?.remove(); // inert: it never held the focus, so removing it moves none
    frame = null;
    setState(s);
  };
  function onMessage(event: MessageEvent): void {
    if (!frame || event.source !== frame.contentWindow || event.origin !== window.location.origin) return;
    if (event.data?.type !== MESSAGE) return;
    remember(key);
    finish({ state: 'done', ms: Math.round(performance.now() - started) });
  }
  const start = () => {
    started = performance.now();
    setState({ state: 'running' });
    window.addEventListener('message', onMessage);
    const f = document.createElement('iframe');
    f.setAttribute(WARMUP_ATTR, '');
    f.setAttribute('aria-hidden', 'true');
    f.tabIndex = -1;
    (f as any).inert = true; // nothing in it takes the focus or the reader's input
    // off-screen, not hidden: a hidden frame may not render, and then never draws its image
    f.style.cssText = `position:fixed;left:-${window.innerWidth + 100}px;top:0;border:0;pointer-events:none;` +
      `width:${window.innerWidth}px;height:${window.innerHeight}px`;
    f.src = window.location.href;
    frame = f;
    document.body.appendChild(f);
    limit = setTimeout(() => finish({ state: 'gave up', reason: `no image in ${WARMUP_LIMIT_MS} ms` }), WARMUP_LIMIT_MS);
  };
  const delay = setTimeout(() => {
    cancelIdle = whenIdle(start, 5000);
  }, WARMUP_AFTER_MS);

  return () => {
    clearTimeout(delay);
    cancelIdle?.();
    if (frame) finish({ state: 'gave up', reason: 'the page left the study' });
  };
}
