/**
 * Keeps the boxes on the images in step with the study's newest box SR: when the study context
 * names an SR we have not shown yet, hydrate it (OHIF's own SR hydration: editable rectangles),
 * retrying while OHIF is still loading its display sets. Nothing is hydrated before the first
 * image is on screen (firstImage.ts): the reader waits for pixels, not for boxes. Lives outside
 * React so panel remounts never hydrate twice or give up half way.
 */
import type { Box } from './api';
import * as store from './store';
import { heldLevelSide } from './review';
import { applyBoxVisibility, labelBoxes, setBoxStatistics } from './boxStyle';
import { afterFirstImage } from './firstImage';
import { boxConditions, hydrateBoxes, rememberConditions, type Managers } from './viewerControl';

/** The performance mark set each time an SR's boxes are drawn (after the first image: the tests check). */
export const BOXES_MARK = 'spinereview:boxes';

const RETRY_MS = 1000;
const MAX_ATTEMPTS = 30;

let current: string | null = null; // SOP UID of the SR whose boxes are (being put) on screen
const handled = new Set<string>(); // SRs hydrated, or superseded by what is on screen
let pending: string | null = null; // SOP UID of the SR whose boxes are still to come on screen

/**
 * Whether the study's SR boxes are still on their way to the images (before the first image, or
 * while OHIF loads the series): the rectangles on screen are not yet the SR's, so saving them as
 * the new box set would drop the SR's boxes.
 */
export function boxesLoading(): boolean {
  return pending !== null;
}

/** The reader saved what is on screen as SR ``sopUid``: nothing to hydrate for it, or for the SR it replaced. */
export function markShown(sopUid: string): void {
  const previous = store.getState().context?.structured_report?.sop_instance_uid;
  if (previous) handled.add(previous);
  handled.add(sopUid);
  current = sopUid;
  pending = null;
}

/** Labels (condition and the level the reader holds), colours and per-condition visibility. */
export function relabel(m: Managers): void {
  const state = store.getState();
  const context = state.context;
  if (!context) return;
  const findings = new Map((context.draft?.findings ?? []).map(f => [f.condition, f]));
  setBoxStatistics(m, false);
  labelBoxes(m, context.conditions, key => {
    const f = findings.get(key);
    return f ? heldLevelSide(f).level : '';
  });
  applyBoxVisibility(m, state.boxesVisible, state.hiddenConditions);
}

export function watchBoxes(m: Managers): () => void {
  let timer: ReturnType<typeof setTimeout> | null = null;
  let stopped = false;
  let imageShown = false;
  const settle = (sopUid: string) => {
    if (pending === sopUid) pending = null;
  };

  const attempt = async (
    seriesUid: string,
    sopUid: string,
    n: number,
    source: string,
    boxes: Box[]
  ) => {
    const count = boxes.length;
    if (stopped || current !== sopUid) return;
    try {
      const result = await hydrateBoxes(m, seriesUid, sopUid, n >= MAX_ATTEMPTS);
      if (stopped || current !== sopUid) return;
      if (result === 'hydrated') {
        settle(sopUid);
        rememberConditions(m, boxes);
        relabel(m);
        performance.mark(BOXES_MARK, { detail: { count } });
        store.update({ boxStatus: `${count} box(es) from the ${source} SR`, boxError: null });
      } else if (n < MAX_ATTEMPTS) {
        store.update({ boxStatus: 'Loading the boxes…' });
        timer = setTimeout(() => void attempt(seriesUid, sopUid, n + 1, source, boxes), RETRY_MS);
      } else {
        settle(sopUid);
        store.update({
          boxStatus:
            result === 'missing'
              ? 'The boxes SR was stored after the viewer opened: reload to see it.'
              : 'The viewer shows an older SR version: reload to see the newest boxes.',
        });
      }
    } catch (error) {
      settle(sopUid);
      store.update({ boxError: error as Error, boxStatus: 'The boxes could not be shown.' });
    }
  };

  const check = (state: store.StudyState) => {
    const sr = state.context?.structured_report;
    if (!sr || handled.has(sr.sop_instance_uid)) return;
    pending = sr.sop_instance_uid;
    if (!imageShown) return; // taken up again once the first image is drawn
    handled.add(sr.sop_instance_uid);
    current = sr.sop_instance_uid;
    if (timer) clearTimeout(timer);
    void attempt(sr.series_instance_uid, sr.sop_instance_uid, 0, sr.source === 'ai' ? 'AI' : 'reader', sr.boxes);
  };

  const unsubscribe = store.subscribe(check);
  check(store.getState());
  const stopWaiting = afterFirstImage(m, () => {
    imageShown = true;
    check(store.getState());
  });
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    unsubscribe();
    stopWaiting();
    current = null;
    pending = null;
    handled.clear();
    boxConditions.clear();
  };
}
