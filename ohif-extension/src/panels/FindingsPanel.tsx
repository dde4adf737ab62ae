/**
 * Findings panel: the 17 conditions with probability, level/side and status; clicking one
 * jumps every viewport showing its key-slice series to the key slice and shows its box; the
 * key-slice list steps next/previous; AI boxes (hydrated from the draft's SR) toggle on/off;
 * the rectangles as they are now are saved as a new SR version.
 */
import React, { useEffect, useMemo, useState } from 'react';
import { api, ApiError, type Finding, type KeySlice } from '../api';
import * as store from '../store';
import { boxesLoading, markShown, relabel } from '../boxes';
import { acceptRemaining, cycleSide, heldLevelSide, HOTKEYS, judge, shiftLevel } from '../review';
import { levelAxials } from '../linking';
import { conditionColour, setBoxStatistics } from '../boxStyle';
import { currentBoxes, jumpToImage, type Managers } from '../viewerControl';
import { ErrorBox } from './ErrorBox';

const STATUS_WORDS: Record<string, string> = {
  awaiting_draft: 'Awaiting draft',
  drafting: 'Drafting',
  draft_ready: 'Draft ready',
  in_review: 'In review',
  signed: 'Signed',
  failed: 'Draft failed',
};

function findingStatus(f: Finding | undefined): string {
  if (!f) return 'not assessed';
  return f.present ? 'present' : 'absent';
}

function appOrigin(): string {
  return String((window as any).config?.spinereview?.appOrigin ?? '');
}

export async function selectFinding(m: Managers, key: string): Promise<string[]> {
  store.update({ selected: key });
  const finding = store.getState().context?.draft?.findings.find(f => f.condition === key);
  if (!finding) return [];
  // series -> image: the first box of each series (the finding shown with its box), else its first key slice
  const targets = new Map<string, { sop_uid: string; frame?: number | null }>();
  for (const b of finding.boxes) if (b.series_uid && !targets.has(b.series_uid)) targets.set(b.series_uid, b);
  for (const k of finding.key_slices) if (!targets.has(k.series_uid)) targets.set(k.series_uid, k);
  const moved: string[] = [];
  for (const [series, ref] of targets) moved.push(...(await jumpToImage(m, series, ref.sop_uid, ref.frame)));
  // click-to-level: an axial viewport without a key slice of this finding goes to its box's level
  moved.push(...(await levelAxials(m, finding, moved)));
  return moved;
}

const VERDICT_WORDS: Record<string, string> = { agree: '✓ agreed', disagree: '✗ disagreed', correct: '✎ corrected' };

/** The reader's current verdict on a finding (their own rows only: the API returns no others). */
function Verdict({ f }: { f: Finding }) {
  const v = store.useStudyState().feedback[f.id];
  if (!v) return null;
  const held = heldLevelSide(f);
  return (
    <span className={`sr-verdict sr-verdict-${v.verdict}`} data-verdict-of={f.condition} data-verdict-value={v.verdict}>
      {VERDICT_WORDS[v.verdict]}
      {v.verdict === 'correct' ? ` → ${[held.level, held.side].filter(Boolean).join(' ')}` : ''}
    </span>
  );
}

export function FindingsPanel(m: Managers) {
  const s = store.useStudyState();
  const [sliceAt, setSliceAt] = useState(0);
  const boxStatus = s.boxStatus;
  const setBoxStatus = (text: string) => store.update({ boxStatus: text });
  const [boxError, setBoxError] = useState<ApiError | Error | null>(null);
  const [saving, setSaving] = useState(false);
  const context = s.context;
  const draft = context?.draft ?? null;
  const sr = context?.structured_report ?? null;
  const signed = !!context?.review?.signed_at;
  const byKey = useMemo(() => new Map((draft?.findings ?? []).map(f => [f.condition, f])), [draft]);
  const selected = s.selected ? byKey.get(s.selected) : undefined;
  const seriesName = useMemo(
    () => new Map((context?.study.series ?? []).map(x => [x.series_uid, x.description || x.series_uid])),
    [context]
  );

  useEffect(() => {
    setSliceAt(0);
  }, [s.selected]);

  const slices: KeySlice[] = selected?.key_slices ?? [];
  const goSlice = (i: number) => {
    if (!slices.length) return;
    const at = (i + slices.length) % slices.length;
    setSliceAt(at);
    void jumpToImage(m, slices[at].series_uid, slices[at].sop_uid, slices[at].frame);
  };

  const toggleBoxes = () => {
    store.update({ boxesVisible: !s.boxesVisible });
    relabel(m);
  };
  const toggleCondition = (key: string) => {
    const hidden = s.hiddenConditions.includes(key) ? s.hiddenConditions.filter(k => k !== key) : [...s.hiddenConditions, key];
    store.update({ hiddenConditions: hidden });
    relabel(m);
  };
  const [stats, setStats] = useState(false);
  const toggleStats = () => {
    setBoxStatistics(m, !stats);
    setStats(!stats);
  };
  const boxConditionKeys = useMemo(() => new Set((sr?.boxes ?? []).map(b => b.condition).filter(Boolean) as string[]), [sr]);
  const keyOf = (command: string, score?: string) => {
    const h = HOTKEYS.find(x => x.commandName === command && (!score || (x as any).commandOptions?.score === score));
    return h ? h.keys.join('+').replace('mod', 'Ctrl') : '';
  };
  const judged = Object.keys(s.feedback).length;

  const saveBoxes = async () => {
    if (!context) return;
    setBoxError(null);
    if (boxesLoading()) {
      // the SR's boxes are not on the images yet: saving now would store a set without them
      setBoxError(new Error('The boxes are still loading: save once they are shown.'));
      return;
    }
    const { boxes, unlabelled } = currentBoxes(m, context.conditions, s.newBoxCondition || s.selected);
    if (unlabelled) {
      setBoxError(new Error(`${unlabelled} new box(es) have no condition: select the finding they belong to, then save again.`));
      return;
    }
    setSaving(true);
    try {
      const saved = await api.saveBoxes(context.study.id, { parent: sr?.id ?? null, boxes });
      markShown(saved.sop_instance_uid); // what is on screen is what was saved
      setBoxStatus(`Saved ${saved.boxes.length} box(es) as a new SR version (#${saved.id}).`);
      await store.refresh();
    } catch (error) {
      setBoxError(error as Error);
    } finally {
      setSaving(false);
    }
  };

  return (
    <div className="sr-panel" data-testid="sr-findings-panel">
      <ErrorBox error={s.error} prefix="Could not load the study" />
      {context && (
        <div className="sr-row">
          {appOrigin() && (
            <a className="sr-btn sr-secondary" href={`${appOrigin()}/`} data-testid="sr-worklist">
              ◀ Worklist
            </a>
          )}
          <span>Status:</span>
          <strong data-testid="sr-study-status">{STATUS_WORDS[context.study.status] ?? context.study.status}</strong>
          {context.study.status_reason && <span className="sr-muted">({context.study.status_reason})</span>}
        </div>
      )}
      {context && !draft && (
        <div className="sr-note" data-testid="sr-no-draft">
          No AI draft yet{context.job ? ` — job ${context.job.state}${context.job.reason ? `: ${context.job.reason}` : ''}` : ''}.
          This panel refreshes by itself when the draft arrives.
        </div>
      )}
      {draft && (
        <>
          <h3>Findings</h3>
          <div className="sr-row sr-muted" data-testid="sr-review-progress">
            <span>{judged} judged</span>
            {s.reading && (
              <span data-testid="sr-reading">
                · reading {Math.floor(s.reading.active_seconds / 60)}:{String(Math.round(s.reading.active_seconds % 60)).padStart(2, '0')}
                · {s.reading.accepted} accepted · {s.reading.corrected} corrected · {s.reading.rejected} rejected
              </span>
            )}
            {signed && (
              <strong data-testid="sr-signed-findings">Signed: RADPEER {context!.review!.radpeer}</strong>
            )}
            {!signed && s.radpeer && <span data-testid="sr-radpeer-picked">· RADPEER {s.radpeer} picked</span>}
            {!signed && (
              <button className="sr-btn sr-small" data-testid="sr-accept-remaining" onClick={() => void acceptRemaining()} title={keyOf('spineAcceptRemaining')}>
                Agree with the rest
              </button>
            )}
          </div>
          <ErrorBox error={s.feedbackError} prefix="Verdict not saved" />
          <ul className="sr-findings">
            {context!.conditions.map(c => {
              const f = byKey.get(c.key);
              return (
                <li
                  key={c.key}
                  data-finding={c.key}
                  className={`sr-finding${f?.present ? ' sr-present' : ''}${s.selected === c.key ? ' sr-selected' : ''}`}
                  onClick={() => void selectFinding(m, c.key)}
                  title={c.category}
                >
                  <span className="sr-name">{c.name}</span>
                  <span className="sr-prob">{f ? `${Math.round(f.probability * 100)}%` : '—'}</span>
                  <span className="sr-meta">
                    {boxConditionKeys.has(c.key) && <span className="sr-swatch" style={{ background: conditionColour(c.key, context!.conditions) }} />}
                    {findingStatus(f)}
                    {f?.level ? ` · ${f.level}` : ''}
                    {f?.side ? ` · ${f.side}` : ''}
                    {f?.key_slices.length ? ` · ${f.key_slices.length} key slice(s)` : ''}
                  </span>
                  {f && <Verdict f={f} />}
                  {f && s.selected === c.key && !signed && (
                    <span className="sr-verdict-buttons" onClick={e => e.stopPropagation()}>
                      <button className="sr-btn sr-small" data-verdict="agree" onClick={() => void judge('agree', false, f)} title={`Agree (${keyOf('spineAgree')})`}>✓ Agree</button>
                      <button className="sr-btn sr-small sr-secondary" data-verdict="disagree" onClick={() => void judge('disagree', false, f)} title={`Disagree (${keyOf('spineDisagree')})`}>✗ Disagree</button>
                      <button className="sr-btn sr-small sr-secondary" data-verdict="level-up" onClick={() => void shiftLevel(-1, f)} title={`Level up (${keyOf('spineLevelUp')})`}>▲ level</button>
                      <button className="sr-btn sr-small sr-secondary" data-verdict="level-down" onClick={() => void shiftLevel(1, f)} title={`Level down (${keyOf('spineLevelDown')})`}>▼ level</button>
                      <button className="sr-btn sr-small sr-secondary" data-verdict="side" onClick={() => void cycleSide(f)} title={`Side (${keyOf('spineCycleSide')})`}>side</button>
                    </span>
                  )}
                </li>
              );
            })}
          </ul>
          {selected && (
            <div data-testid="sr-key-slices">
              <h3>Key slices</h3>
              {slices.length === 0 && <div className="sr-muted">No key slice for this finding.</div>}
              <ul className="sr-slices">
                {slices.map((k, i) => (
                  <li key={`${k.sop_uid}-${i}`} className={i === sliceAt ? 'sr-current' : ''} onClick={() => goSlice(i)}>
                    {seriesName.get(k.series_uid) ?? 'series'} — image {k.index + 1}
                  </li>
                ))}
              </ul>
              <div className="sr-row">
                <button className="sr-btn sr-secondary" disabled={!slices.length} onClick={() => goSlice(sliceAt - 1)}>
                  ◀ Previous
                </button>
                <button className="sr-btn sr-secondary" disabled={!slices.length} onClick={() => goSlice(sliceAt + 1)}>
                  Next ▶
                </button>
              </div>
            </div>
          )}
          <h3>Boxes</h3>
          <div className="sr-row">
            <button className="sr-btn sr-secondary" data-testid="sr-toggle-boxes" onClick={toggleBoxes}>
              {s.boxesVisible ? 'Hide boxes' : 'Show boxes'}
            </button>
            <button className="sr-btn" data-testid="sr-save-boxes" disabled={saving} onClick={() => void saveBoxes()}>
              {saving ? 'Saving…' : 'Save boxes'}
            </button>
            <button className="sr-btn sr-secondary" data-testid="sr-toggle-stats" onClick={toggleStats}>
              {stats ? 'Hide statistics' : 'Show statistics'}
            </button>
          </div>
          <div className="sr-row" data-testid="sr-condition-toggles">
            {context!.conditions.filter(c => boxConditionKeys.has(c.key)).map(c => (
              <label key={c.key} className="sr-toggle" style={{ borderColor: conditionColour(c.key, context!.conditions) }}>
                <input type="checkbox" data-condition-toggle={c.key} checked={!s.hiddenConditions.includes(c.key)} onChange={() => toggleCondition(c.key)} />
                {c.name}
              </label>
            ))}
          </div>
          <div className="sr-muted" data-testid="sr-box-status">
            {boxStatus || (sr ? 'Loading boxes…' : 'No boxes SR for this study.')}
          </div>
          <div className="sr-row">
            <label className="sr-muted" htmlFor="sr-new-box-condition">New boxes:</label>
            <select
              id="sr-new-box-condition"
              data-testid="sr-new-box-condition"
              value={s.newBoxCondition}
              onChange={e => store.update({ newBoxCondition: e.target.value })}
            >
              <option value="">the selected finding{selected ? ` (${context!.conditions.find(c => c.key === selected.condition)?.name})` : ''}</option>
              {context!.conditions.map(c => (
                <option key={c.key} value={c.key}>{c.name}</option>
              ))}
            </select>
          </div>
          <div className="sr-muted">Draw with the Rectangle tool: a new box takes this condition and is labelled at once.</div>
          <h3>Keys</h3>
          <ul className="sr-keys" data-testid="sr-keys">
            {HOTKEYS.filter(h => h.commandName !== 'spineRadpeer').map(h => (
              <li key={h.commandName}><span className="sr-kbd">{h.keys.join('+').replace('mod', 'Ctrl')}</span> {h.label}</li>
            ))}
            <li><span className="sr-kbd">1</span>–<span className="sr-kbd">5</span> RADPEER 1, 2a, 2b, 3a, 3b</li>
            <li><span className="sr-kbd">Alt+↓</span>/<span className="sr-kbd">Alt+↑</span> next/previous report section, <span className="sr-kbd">Esc</span> back to the images</li>
          </ul>
          <ErrorBox error={boxError ?? s.boxError} prefix="Boxes" />
        </>
      )}
    </div>
  );
}
