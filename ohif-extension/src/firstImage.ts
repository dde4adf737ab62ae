/**
 * "The first image is on screen": the moment our own work on the images may start. Hydrating the
 * AI SR's boxes and styling them (50-odd annotations, 100-250 ms of the main thread on the demo)
 * competes with OHIF for the main thread; run before the first image is drawn, it delays that
 * image by as much, and the reader waits for pixels, not for boxes. So that work waits for
 * Cornerstone's IMAGE_RENDERED of a viewport that has drawn an image (viewportStatus RENDERED
 * and image data in it), then for the browser to be idle (the frame just drawn is
 * presented first), at most IDLE_WAIT_MS.
 *
 * The moment is also recorded as a performance mark, FIRST_IMAGE_MARK (once per page, with the
 * viewport that drew): a benchmark polling the canvases from outside cannot look while the main
 * thread does the work that follows the image, so it would time that work as well.
 */
import { cornerstoneLibraries, type Managers } from './viewerControl';

/** The performance mark set when the first viewport has drawn an image (benchmarks/viewer_first_image.py). */
export const FIRST_IMAGE_MARK = 'spinereview:first-image';

/** Longest wait for an idle moment after the first image: the boxes come even on a busy page. */
export const IDLE_WAIT_MS = 500;

/** Call ``fn`` at the browser's next idle moment, at most ``timeout`` ms from now; returns the cancel. */
export function whenIdle(fn: () => void, timeout: number = IDLE_WAIT_MS): () => void {
  const w = window as any;
  if (typeof w.requestIdleCallback === 'function') {
    const handle = w.requestIdleCallback(fn, { timeout });
    return () => w.cancelIdleCallback(handle);
  }
  const handle = setTimeout(fn, 0);
  return () => clearTimeout(handle);
}

/**
 * Call ``then`` once, soon after the first viewport has drawn an image (at once, after an idle
 * moment, when one already has). Returns the cancel, which also removes every listener.
 */
export function afterFirstImage(m: Managers, then: () => void): () => void {
  const { cornerstone } = cornerstoneLibraries(m);
  const { Events, ViewportStatus } = cornerstone.Enums;
  const elements = new Set<HTMLElement>();
  let done = false;
  let cancelIdle: (() => void) | null = null;

  // RENDERED alone is not an image: a stack viewport is "rendered" once it has drawn with its
  // stack set, before the first image has loaded (an empty, black canvas; seen in the benchmark's
  // trace ~0.4 s before the pixels). getImageData() is defined only once an image is in it.
  const drawn = (element: HTMLElement | undefined): boolean => {
    const viewport: any = element ? cornerstone.getEnabledElement(element)?.viewport : null;
    return viewport?.viewportStatus === ViewportStatus.RENDERED && !!viewport.getImageData?.();
  };
  const detach = () => {
    for (const element of elements) element.removeEventListener(Events.IMAGE_RENDERED, onRendered);
    elements.clear();
    cornerstone.eventTarget.removeEventListener(Events.ELEMENT_ENABLED, onEnabled);
  };
  const fire = (element?: HTMLElement) => {
    if (done) return;
    done = true;
    if (!performance.getEntriesByName(FIRST_IMAGE_MARK).length) {
      const viewportId = element ? cornerstone.getEnabledElement(element)?.viewport?.id : undefined;
      performance.mark(FIRST_IMAGE_MARK, { detail: { viewportId: viewportId ?? null } });
    }
    detach();
    cancelIdle = whenIdle(then);
  };
  function onRendered(evt: any): void {
    const element = evt?.detail?.element ?? evt?.target;
    if (drawn(element)) fire(element);
  }
  const watch = (element: HTMLElement | undefined) => {
    if (!element || elements.has(element)) return;
    elements.add(element);
    element.addEventListener(Events.IMAGE_RENDERED, onRendered);
  };
  function onEnabled(evt: any): void {
    watch(evt?.detail?.element);
  }

  cornerstone.eventTarget.addEventListener(Events.ELEMENT_ENABLED, onEnabled);
  for (const enabled of cornerstone.getEnabledElements?.() ?? []) {
    if (drawn(enabled.viewport?.element)) {
      fire(enabled.viewport.element);
      break;
    }
    watch(enabled.viewport?.element);
  }
  return () => {
    done = true;
    detach();
    cancelIdle?.();
  };
}
