/**
 * "The first image is on screen": the moment our own work on the images may start. Hydrating the
 * AI SR's boxes and styling them (50-odd annotations, 100-250 ms of the main thread on the demo)
 * competes with OHIF for the main thread; run before the first image is drawn, it delays that
 * image by as much, and the reader waits for pixels, not for boxes. So that work waits for
 * Cornerstone's IMAGE_RENDERED of a viewport whose data is drawn (viewportStatus RENDERED, set
 * only once an image is in it), then for the browser to be idle (the frame just drawn is
 * presented first), at most IDLE_WAIT_MS.
 */
import { cornerstoneLibraries, type Managers } from './viewerControl';

/** Longest wait for an idle moment after the first image: the boxes come even on a busy page. */
export const IDLE_WAIT_MS = 500;

function whenIdle(fn: () => void): () => void {
  const w = window as any;
  if (typeof w.requestIdleCallback === 'function') {
    const handle = w.requestIdleCallback(fn, { timeout: IDLE_WAIT_MS });
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

  const drawn = (element: HTMLElement | undefined): boolean => {
    const viewport = element ? cornerstone.getEnabledElement(element)?.viewport : null;
    return viewport?.viewportStatus === ViewportStatus.RENDERED;
  };
  const detach = () => {
    for (const element of elements) element.removeEventListener(Events.IMAGE_RENDERED, onRendered);
    elements.clear();
    cornerstone.eventTarget.removeEventListener(Events.ELEMENT_ENABLED, onEnabled);
  };
  const fire = () => {
    if (done) return;
    done = true;
    detach();
    cancelIdle = whenIdle(then);
  };
  function onRendered(evt: any): void {
    if (drawn(evt?.detail?.element ?? evt?.target)) fire();
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
      fire();
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
