/**
 * Findings panel: the 17 conditions with probability, level/side and status; clicking one
 * jumps every viewport showing its key-slice series to the key slice and shows its box; the
 * key-slice list steps next/previous; AI boxes (hydrated from the draft's SR) toggle on/off;
 * the rectangles as they are now are saved as a new SR version.
 */
import React, { useEffect, useMemo, useState } from 'react';
import { api, ApiError, type Finding, type KeySlice } from '../api';
import * as store from '../store';
import { markShown } from '../boxes';
import { currentBoxes, jumpToImage, setBoxesVisible, type Managers } from '../viewerControl';
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
  const targets = new Map<string, string>();
  for (const b of finding.boxes) if (b.series_uid && !targets.has(b.series_uid)) targets.set(b.series_uid, b.sop_uid);
  for (const k of finding.key_slices) if (!targets.has(k.series_uid)) targets.set(k.series_uid, k.sop_uid);
  const moved: string[] = [];
  for (const [series, sop] of targets) moved.push(...(await jumpToImage(m, series, sop)));
  return moved;
}

export function stepFinding(m: Managers, delta: number): void {
  const context = store.getState().context;
  if (!context?.draft) return;
  const byKey = new Map(context.draft.findings.map(f => [f.condition, f]));
  const ordered = context.conditions.map(c => c.key).filter(k => byKey.has(k)); // canonical order
  const present = ordered.filter(k => byKey.get(k)!.present);
  const list = present.length ? present : ordered;
  if (!list.length) return;
  const at = list.indexOf(store.getState().selected ?? '');
  const next = at < 0 ? (delta > 0 ? 0 : list.length - 1) : (at + delta + list.length) % list.length;
  void selectFinding(m, list[next]);
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
    void jumpToImage(m, slices[at].series_uid, slices[at].sop_uid);
  };

  const toggleBoxes = () => {
    const visible = !s.boxesVisible;
    setBoxesVisible(m, visible);
    store.update({ boxesVisible: visible });
  };

  const saveBoxes = async () => {
    if (!context) return;
    setBoxError(null);
    const { boxes, unlabelled } = currentBoxes(m, context.conditions, s.selected);
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
                    {findingStatus(f)}
                    {f?.level ? ` · ${f.level}` : ''}
                    {f?.side ? ` · ${f.side}` : ''}
                    {f?.key_slices.length ? ` · ${f.key_slices.length} key slice(s)` : ''}
                  </span>
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
          </div>
          <div className="sr-muted" data-testid="sr-box-status">
            {boxStatus || (sr ? 'Loading boxes…' : 'No boxes SR for this study.')}
          </div>
          <div className="sr-muted">
            Draw with the Rectangle tool; a new box belongs to the selected finding. Keys: <span className="sr-kbd">n</span>/
            <span className="sr-kbd">p</span> next/previous finding.
          </div>
          <ErrorBox error={boxError ?? s.boxError} prefix="Boxes" />
        </>
      )}
    </div>
  );
}
