/**
 * Active reading time: every HEARTBEAT_MS, while the page is visible and the reader has used
 * keyboard, mouse or wheel in the last IDLE_MS, tell the server "still reading". The server sums
 * the ticks (reviewer/services/feedback.py), so a reader who walks away stops counting after a
 * minute, a hidden tab never counts, and nothing counts after sign-off (the server refuses).
 * Input is observed passively (nothing is intercepted; the shortcuts are OHIF hotkeys).
 */
import { api } from './api';
import * as store from './store';

export const HEARTBEAT_MS = 15_000; // reviewer/services/feedback.py HEARTBEAT_SECONDS
export const IDLE_MS = 60_000;
const INPUT_EVENTS = ['keydown', 'pointerdown', 'pointermove', 'wheel'] as const;

export function startReadingClock(): () => void {
  let lastInput = Date.now(); // opening the study is the first act of reading
  const onInput = () => {
    lastInput = Date.now();
  };
  for (const name of INPUT_EVENTS) document.addEventListener(name, onInput, { passive: true, capture: true });
  const tick = async () => {
    const { context } = store.getState();
    if (!context || context.review?.signed_at) return;
    if (document.visibilityState !== 'visible' || Date.now() - lastInput > IDLE_MS) return;
    try {
      store.update({ reading: await api.heartbeat(context.study.id) });
    } catch {
      // a missed tick loses at most one interval of reading time; the panels keep working
    }
  };
  const timer = setInterval(() => void tick(), HEARTBEAT_MS);
  return () => {
    clearInterval(timer);
    for (const name of INPUT_EVENTS) document.removeEventListener(name, onInput, { capture: true });
  };
}
