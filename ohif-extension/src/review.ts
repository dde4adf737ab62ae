/**
 * The keyboard-first review: verdicts on findings (agree / disagree / change level or side),
 * the RADPEER pick and sign-off, as OHIF commands bound through OHIF's hotkey system
 * (`ohif.hotkeyBindings` customization; the mode merges HOTKEYS into it) and called by the
 * panels' buttons too, so mouse and keyboard do exactly the same.
 */
import { api, ApiError, type Finding, type Verdict } from './api';
import * as store from './store';
import type { Managers } from './viewerControl';

// cranial to caudal (ml/conditions.py DISC_LEVELS)
export const LEVELS = [
  'C2-3', 'C3-4', 'C4-5', 'C5-6', 'C6-7', 'C7-T1',
  ...Array.from({ length: 11 }, (_, i) => `T${i + 1}-${i + 2}`), 'T12-L1',
  'L1-2', 'L2-3', 'L3-4', 'L4-5', 'L5-S1',
];
export const SIDES = ['', 'left', 'right', 'bilateral', 'central'];
export const RADPEER_KEYS: Record<string, string> = { '1': '1', '2': '2a', '3': '2b', '4': '3a', '5': '3b' };

type Handlers = { selectFinding: (key: string) => Promise<unknown>; signOff: () => void; nextStudy: () => void; focusReport: () => void };
let handlers: Partial<Handlers> = {};
export function setReviewHandlers(patch: Partial<Handlers>): void {
  handlers = { ...handlers, ...patch };
}

/** Select a finding and jump the viewports to its key slice and box (what a click in the findings panel does). */
export function jumpToFinding(key: string): Promise<unknown> {
  return handlers.selectFinding?.(key) ?? Promise.resolve([]);
}

/** The findings stepped through with n/p: those the AI calls present (else all), in canonical order. */
export function stepList(): Finding[] {
  const context = store.getState().context;
  if (!context?.draft) return [];
  const byKey = new Map(context.draft.findings.map(f => [f.condition, f]));
  const ordered = context.conditions.map(c => byKey.get(c.key)).filter((f): f is Finding => !!f);
  const present = ordered.filter(f => f.present);
  return present.length ? present : ordered;
}

export function selectedFinding(): Finding | undefined {
  const s = store.getState();
  return s.context?.draft?.findings.find(f => f.condition === s.selected);
}

export function step(delta: number): void {
  const list = stepList();
  if (!list.length) return;
  const at = list.findIndex(f => f.condition === store.getState().selected);
  const next = at < 0 ? (delta > 0 ? 0 : list.length - 1) : (at + delta + list.length) % list.length;
  void handlers.selectFinding?.(list[next].condition);
}

/** The level and side the reader currently holds for a finding (their correction, else the AI's). */
export function heldLevelSide(f: Finding): { level: string; side: string } {
  const v = store.getState().feedback[f.id];
  if (v?.verdict === 'correct') return { level: v.level || f.level, side: v.side || f.side };
  return { level: f.level, side: f.side };
}

async function give(f: Finding, verdict: Verdict, level = '', side = ''): Promise<boolean> {
  const context = store.getState().context;
  if (!context) return false;
  try {
    const row = await api.giveFeedback(context.study.id, { finding: f.id, verdict, level, side });
    store.update({ feedback: { ...store.getState().feedback, [f.id]: row }, feedbackError: null });
    return true;
  } catch (error) {
    store.update({ feedbackError: error as ApiError });
    return false;
  }
}

export async function judge(verdict: 'agree' | 'disagree', advance = true, f = selectedFinding()): Promise<void> {
  if (!f) return step(1); // nothing selected yet: the first key selects the first finding
  if (await give(f, verdict) && advance) step(1);
}

/** Move the finding's level one disc up (-1) or down (+1); back at the AI's level and side it is an agree. */
export async function shiftLevel(delta: number, f = selectedFinding()): Promise<void> {
  if (!f) return;
  const held = heldLevelSide(f);
  const at = LEVELS.indexOf(held.level);
  const level = at < 0 ? 'L4-5' : LEVELS[Math.min(LEVELS.length - 1, Math.max(0, at + delta))];
  await correct(f, level, held.side);
}

export async function cycleSide(f = selectedFinding()): Promise<void> {
  if (!f) return;
  const held = heldLevelSide(f);
  const side = SIDES[(SIDES.indexOf(held.side) + 1) % SIDES.length];
  await correct(f, held.level, side);
}

async function correct(f: Finding, level: string, side: string): Promise<void> {
  if (level === f.level && side === f.side) {
    await give(f, 'agree');
    return;
  }
  // the API takes what changed; an unchanged part stays the AI's
  await give(f, 'correct', level !== f.level ? level : '', side !== f.side ? side : '');
}

/** Agree with every present finding the reader has not judged yet (one key for a clean draft). */
export async function acceptRemaining(): Promise<number> {
  const { context, feedback } = store.getState();
  const open = (context?.draft?.findings ?? []).filter(f => f.present && !feedback[f.id]);
  let n = 0;
  for (const f of open) if (await give(f, 'agree')) n += 1;
  return n;
}

const NEEDS_COMMENT = new Set(['2b', '3a', '3b']);

/**
 * Sign off from anywhere. With the report panel open, its own sign (flushes unsaved edits, shows
 * conflicts) is used; otherwise the reader's report is signed as it stands on the server: their
 * newest revision, or the AI draft when they have not edited it.
 */
export async function signOff(): Promise<void> {
  if (handlers.signOff) return handlers.signOff();
  const { context, radpeer } = store.getState();
  if (!context || context.review?.signed_at) return;
  if (!radpeer) return store.update({ feedbackError: new ApiError(0, 'Pick a RADPEER score (keys 1-5) before signing.', null) });
  if (NEEDS_COMMENT.has(radpeer)) {
    return store.update({ feedbackError: new ApiError(0, `RADPEER ${radpeer} requires a comment: open the report panel.`, null) });
  }
  try {
    await api.sign(context.study.id, { radpeer, comment: '', in_scope: true, revision: context.head_revision?.id ?? null });
    store.update({ feedbackError: null });
    await store.refresh();
  } catch (error) {
    store.update({ feedbackError: error as ApiError });
  }
}

export function pickRadpeer(score: string): void {
  if (store.getState().context?.review?.signed_at) return;
  store.update({ radpeer: score });
}

/** OHIF commands (getCommandsModule) and their default keys (merged into ohif.hotkeyBindings). */
export function commandsModule(_m: Managers) {
  const definitions: Record<string, { commandFn: (options?: any) => unknown }> = {
    spineNextFinding: { commandFn: () => step(1) },
    spinePreviousFinding: { commandFn: () => step(-1) },
    spineAgree: { commandFn: () => judge('agree') },
    spineDisagree: { commandFn: () => judge('disagree') },
    spineLevelUp: { commandFn: () => shiftLevel(-1) },
    spineLevelDown: { commandFn: () => shiftLevel(1) },
    spineCycleSide: { commandFn: () => cycleSide() },
    spineAcceptRemaining: { commandFn: () => acceptRemaining() },
    spineRadpeer: { commandFn: ({ score }: { score: string }) => pickRadpeer(score) },
    spineSign: { commandFn: () => signOff() },
    spineNextStudy: { commandFn: () => handlers.nextStudy?.() },
    spineFocusReport: { commandFn: () => handlers.focusReport?.() },
  };
  return { definitions, defaultContext: 'DEFAULT' };
}

export const HOTKEYS = [
  { commandName: 'spineNextFinding', label: 'Next finding', keys: ['n'] },
  { commandName: 'spinePreviousFinding', label: 'Previous finding', keys: ['p'] },
  { commandName: 'spineAgree', label: 'Agree with the finding', keys: ['a'] },
  { commandName: 'spineDisagree', label: 'Disagree with the finding', keys: ['x'] },
  { commandName: 'spineLevelUp', label: 'Finding one level up', keys: ['['] },
  { commandName: 'spineLevelDown', label: 'Finding one level down', keys: [']'] },
  { commandName: 'spineCycleSide', label: 'Change the finding side', keys: ['s'] },
  { commandName: 'spineAcceptRemaining', label: 'Agree with all unjudged present findings', keys: ['shift', 'a'] },
  ...Object.entries(RADPEER_KEYS).map(([key, score]) => ({
    commandName: 'spineRadpeer', commandOptions: { score }, label: `RADPEER ${score}`, keys: [key],
  })),
  { commandName: 'spineSign', label: 'Sign off', keys: ['mod', 'enter'] },
  { commandName: 'spineNextStudy', label: 'Next study', keys: ['shift', 'n'] },
  { commandName: 'spineFocusReport', label: 'Edit the report', keys: ['e'] },
];

/** OHIF's default bindings minus those our keys replace (W/L presets on 1-4 mean nothing on MR). */
export function mergeHotkeys(bindings: any[]): any[] {
  const ours = new Set(HOTKEYS.map(h => h.keys.join('+')));
  const keep = (bindings ?? []).filter(b => !ours.has((Array.isArray(b.keys) ? b.keys : [b.keys]).join('+')));
  return [...keep, ...HOTKEYS];
}
