/**
 * Keeps the boxes on the images in step with the study's newest box SR: when the study context
 * names an SR we have not shown yet, hydrate it (OHIF's own SR hydration: editable rectangles),
 * retrying while OHIF is still loading its display sets. Lives outside React so panel remounts
 * never hydrate twice or give up half way.
 */
import type { Box } from './api';
import * as store from './store';
import { heldLevelSide } from './review';
import { applyBoxVisibility, labelBoxes, setBoxStatistics } from './boxStyle';
import { boxConditions, hydrateBoxes, rememberConditions, type Managers } from './viewerControl';

const RETRY_MS = 1000;
const MAX_ATTEMPTS = 30;

let current: string | null = null; // SOP UID of the SR whose boxes are (being put) on screen
const handled = new Set<string>(); // SRs hydrated, or superseded by what is on screen

/** The reader saved what is on screen as SR ``sopUid``: nothing to hydrate for it, or for the SR it replaced. */
export function markShown(sopUid: string): void {
  const previous = store.getState().context?.structured_report?.sop_instance_uid;
  if (previous) handled.add(previous);
  handled.add(sopUid);
  current = sopUid;
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
        rememberConditions(m, boxes);
        relabel(m);
        store.update({ boxStatus: `${count} box(es) from the ${source} SR`, boxError: null });
      } else if (n < MAX_ATTEMPTS) {
        store.update({ boxStatus: 'Loading the boxes…' });
        timer = setTimeout(() => void attempt(seriesUid, sopUid, n + 1, source, boxes), RETRY_MS);
      } else {
        store.update({
          boxStatus:
            result === 'missing'
              ? 'The boxes SR was stored after the viewer opened: reload to see it.'
              : 'The viewer shows an older SR version: reload to see the newest boxes.',
        });
      }
    } catch (error) {
      store.update({ boxError: error as Error, boxStatus: 'The boxes could not be shown.' });
    }
  };

  const check = (state: store.StudyState) => {
    const sr = state.context?.structured_report;
    if (!sr || handled.has(sr.sop_instance_uid)) return;
    handled.add(sr.sop_instance_uid);
    current = sr.sop_instance_uid;
    if (timer) clearTimeout(timer);
    void attempt(sr.series_instance_uid, sr.sop_instance_uid, 0, sr.source === 'ai' ? 'AI' : 'reader', sr.boxes);
  };

  const unsubscribe = store.subscribe(check);
  check(store.getState());
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    unsubscribe();
    current = null;
    handled.clear();
    boxConditions.clear();
  };
}
