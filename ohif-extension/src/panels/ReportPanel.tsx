/**
 * Report panel: the draft in its sections, editable, autosaved as revisions (every save kept,
 * each naming its parent); a conflict (someone saved meanwhile) shows both texts and loses
 * nothing; diff draft vs current; similar-case reports (read-only); RADPEER with the ACR wording;
 * in-scope flag; sign-off. Provenance: the consistency check's note, each section's AI/typed
 * sentence counts and a sources view whose finding sentences jump to their agent call
 * (ReportSources); the patient's priors with the most recent signed prior report (PriorsView).
 */
import React, { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { api, ApiError, type Conflict, type Review, type Revision } from '../api';
import { joinSections, sectionsDict, splitSections, wordDiff, type Section } from '../reportText';
import { setReviewHandlers } from '../review';
import * as store from '../store';
import { ErrorBox } from './ErrorBox';
import { PriorsView } from './PriorsView';
import { CheckNote, SectionCounts, SourcesView, useMarks } from './ReportSources';

const AUTOSAVE_MS = 1500;

export const RADPEER = [
  { score: '1', text: 'Concur with interpretation.' },
  { score: '2a', text: 'Discrepancy in interpretation / not ordinarily expected to be made (understandable miss); unlikely to be clinically significant.' },
  { score: '2b', text: 'Discrepancy in interpretation / not ordinarily expected to be made (understandable miss); likely to be clinically significant.' },
  { score: '3a', text: 'Discrepancy in interpretation / should be made most of the time; unlikely to be clinically significant.' },
  { score: '3b', text: 'Discrepancy in interpretation / should be made most of the time; likely to be clinically significant.' },
];
const NEEDS_COMMENT = new Set(['2b', '3a', '3b']);

type SaveState = { kind: 'idle' | 'pending' | 'saving' | 'saved' | 'error' | 'conflict'; message?: string };

export function ReportPanel() {
  const s = store.useStudyState();
  const context = s.context;
  const draft = context?.draft ?? null;
  const signedReview: Review | null = context?.review?.signed_at ? context.review : null;

  const [sections, setSections] = useState<Section[] | null>(null);
  const [head, setHead] = useState<Revision | null>(null);
  const [saveState, setSaveState] = useState<SaveState>({ kind: 'idle' });
  const [saveError, setSaveError] = useState<ApiError | null>(null);
  const [conflict, setConflict] = useState<Conflict | null>(null);
  const [view, setView] = useState<'edit' | 'sources' | 'diff'>('edit');
  const showDiff = view === 'diff';
  const radpeer = s.radpeer; // in the store: the 1-5 hotkeys pick it too
  const setRadpeer = (score: string) => store.update({ radpeer: score });
  const [comment, setComment] = useState('');
  const [inScope, setInScope] = useState(true);
  const [signError, setSignError] = useState<ApiError | Error | null>(null);
  const [signing, setSigning] = useState(false);
  const lastSaved = useRef<string>('');
  const headRef = useRef<Revision | null>(null); // the parent of the next save (never a stale closure)
  const conflictRef = useRef(false);
  const setHeadBoth = (revision: Revision | null) => {
    headRef.current = revision;
    setHead(revision);
  };
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  const inFlight = useRef<Promise<void> | null>(null);
  const conflictBox = useRef<HTMLDivElement | null>(null);
  useEffect(() => {
    if (conflict) conflictBox.current?.scrollIntoView({ block: 'start' });
  }, [conflict]);

  // first load (or the draft arriving): start from the head revision, else the draft
  useEffect(() => {
    if (!context || sections !== null) return;
    const start = context.head_revision?.text ?? draft?.text;
    if (start === undefined) return;
    setSections(splitSections(start, context.report_sections));
    setHeadBoth(context.head_revision);
    lastSaved.current = start;
  }, [context, draft]);

  const text = useMemo(() => (sections ? joinSections(sections) : ''), [sections]);
  const marks = useMarks(sections ?? [], draft?.text, context?.draft_provenance ?? null, context?.report_sections ?? []);
  const names = useMemo(() => new Map((context?.conditions ?? []).map(c => [c.key, c.name])), [context]);

  const save = useCallback(async (): Promise<void> => {
    if (!context || sections === null) return;
    const body = joinSections(sections);
    // while a conflict is on screen nothing is saved: the reader chooses first
    if (conflictRef.current || body === lastSaved.current) return;
    setSaveState({ kind: 'saving' });
    try {
      const revision = await api.saveRevision(context.study.id, {
        text: body,
        sections: sectionsDict(sections),
        parent: headRef.current?.id ?? null,
      });
      lastSaved.current = body;
      setHeadBoth(revision);
      setConflict(null);
      setSaveError(null);
      setSaveState({ kind: 'saved', message: `Saved revision ${revision.number}` });
    } catch (error) {
      const e = error as ApiError;
      if (e.status === 409 && e.body?.saved) {
        lastSaved.current = body; // kept on the server as a conflicting revision
        conflictRef.current = true;
        setConflict(e.body as Conflict);
        setSaveState({ kind: 'conflict', message: e.detail });
      } else {
        setSaveError(e);
        setSaveState({ kind: 'error' });
      }
    }
  }, [context, sections]);

  const flush = useCallback(async (): Promise<void> => {
    if (timer.current) clearTimeout(timer.current);
    timer.current = null;
    if (inFlight.current) await inFlight.current;
    inFlight.current = save();
    await inFlight.current;
    inFlight.current = null;
  }, [save]);

  const edit = (index: number, body: string) => {
    setSections(prev => prev!.map((sec, i) => (i === index ? { ...sec, body } : sec)));
    setSaveState({ kind: 'pending' });
  };

  useEffect(() => {
    if (saveState.kind !== 'pending') return;
    if (timer.current) clearTimeout(timer.current);
    timer.current = setTimeout(() => void flush(), AUTOSAVE_MS);
  }, [sections, saveState.kind]);

  const resolveConflict = (take: 'mine' | 'theirs') => {
    if (!conflict) return;
    const current = conflict.head;
    setHeadBoth(current);
    conflictRef.current = false;
    setConflict(null);
    if (take === 'theirs' && current) {
      setSections(splitSections(current.text, context?.report_sections ?? []));
      lastSaved.current = current.text;
      setSaveState({ kind: 'saved', message: `Continuing from revision ${current.number}` });
    } else {
      lastSaved.current = ''; // my text is only a conflicting revision: save it again on top of current
      setSaveState({ kind: 'pending' });
    }
  };

  const sign = useCallback(async () => {
    if (!context || signedReview || signing) return;
    setSignError(null);
    if (!radpeer) {
      setSignError(new Error('Pick a RADPEER score before signing.'));
      return;
    }
    if (NEEDS_COMMENT.has(radpeer) && !comment.trim()) {
      setSignError(new Error(`RADPEER ${radpeer} requires a comment.`));
      return;
    }
    setSigning(true);
    try {
      await flush();
      if (conflictRef.current) throw new Error('Resolve the conflicting save first.');
      const current = headRef.current ?? (await api.studyContext(context.study.study_uid)).head_revision;
      let revisionId = current?.id ?? null;
      if (revisionId === null && draft) {
        // nothing edited: sign the draft as it stands (stored as a revision)
        const revision = await api.saveRevision(context.study.id, { text, sections: sectionsDict(sections ?? []), parent: null });
        setHeadBoth(revision);
        revisionId = revision.id;
      }
      await api.sign(context.study.id, { radpeer, comment, in_scope: inScope, revision: revisionId });
      await store.refresh();
    } catch (error) {
      setSignError(error as Error);
    } finally {
      setSigning(false);
    }
  }, [context, signedReview, signing, radpeer, comment, inScope, flush, draft, text, sections]);

  useEffect(() => {
    setReviewHandlers({ signOff: () => void sign() });
    return () => setReviewHandlers({ signOff: undefined }); // closed panel: review.ts signs by itself
  }, [sign]);

  if (!context) return <div className="sr-panel"><ErrorBox error={s.error} prefix="Could not load the study" /></div>;
  if (sections === null) {
    return (
      <div className="sr-panel" data-testid="sr-report-panel">
        <div className="sr-note">No draft report yet; it appears here when the drafting service has written it.</div>
      </div>
    );
  }

  const diff = showDiff && draft ? wordDiff(draft.text, text) : null;
  // keys inside the panel's fields, where OHIF's hotkeys stand aside (typing must stay typing):
  // Ctrl/Cmd+Enter signs, Alt+Down/Up moves between report sections, Esc returns to the images
  const onKeyDown = (event: React.KeyboardEvent<HTMLDivElement>) => {
    const target = event.target as HTMLElement;
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      void sign();
    } else if (event.altKey && (event.key === 'ArrowDown' || event.key === 'ArrowUp')) {
      const fields = Array.from(document.querySelectorAll<HTMLTextAreaElement>('textarea[data-section]'));
      const at = fields.indexOf(target as HTMLTextAreaElement);
      const next = fields[Math.min(fields.length - 1, Math.max(0, at + (event.key === 'ArrowDown' ? 1 : -1)))];
      if (next) {
        event.preventDefault();
        next.focus();
      }
    } else if (event.key === 'Escape' && /^(TEXTAREA|INPUT|SELECT)$/.test(target.tagName)) {
      target.blur();
    }
  };
  return (
    <div className="sr-panel" data-testid="sr-report-panel" onKeyDown={onKeyDown}>
      <div className="sr-row">
        <span data-testid="sr-save-state" className={saveState.kind === 'saved' ? 'sr-ok' : 'sr-muted'}>
          {saveState.kind === 'pending' ? 'Unsaved changes…'
            : saveState.kind === 'saving' ? 'Saving…'
            : saveState.message ?? (head ? `Revision ${head.number}` : 'Draft (not yet saved)')}
        </span>
        <button className="sr-btn sr-secondary" data-testid="sr-diff-toggle" onClick={() => setView(showDiff ? 'edit' : 'diff')}>
          {showDiff ? 'Edit' : 'Diff vs draft'}
        </button>
        {draft && (
          <button className="sr-btn sr-secondary" data-testid="sr-sources-toggle" onClick={() => setView(view === 'sources' ? 'edit' : 'sources')}>
            {view === 'sources' ? 'Edit' : 'Sources'}
          </button>
        )}
      </div>
      {draft && context.draft_provenance && <CheckNote provenance={context.draft_provenance} />}
      {(context.priors ?? []).length > 0 && (
        <>
          <h3>Priors ({context.priors.length})</h3>
          <PriorsView priors={context.priors} currentUid={context.study.study_uid} />
        </>
      )}
      <ErrorBox error={saveError} prefix="Autosave failed (your text is still here)" />
      {conflict && (
        <div className="sr-conflict" data-testid="sr-conflict" ref={conflictBox}>
          <strong>{conflict.detail}</strong>
          <div>Yours (kept as revision {conflict.saved.number}):</div>
          <pre>{conflict.saved.text}</pre>
          {conflict.head && (
            <>
              <div>Current (revision {conflict.head.number} by {conflict.head.author}):</div>
              <pre>{conflict.head.text}</pre>
            </>
          )}
          {conflict.head && (
            <>
              <div>What differs (current → yours):</div>
              <div className="sr-diff" data-testid="sr-conflict-diff">
                {wordDiff(conflict.head.text, conflict.saved.text)
                  .filter((p, i, all) => p.op !== '=' || all[i - 1]?.op !== '=' )
                  .map((p, i) => (
                    <span key={i} className={p.op === '-' ? 'sr-del' : p.op === '+' ? 'sr-ins' : 'sr-muted'}>
                      {p.op === '=' && p.text.length > 60 ? ` … ${p.text.slice(-40)}` : p.text}
                    </span>
                  ))}
              </div>
            </>
          )}
          <div className="sr-row">
            <button className="sr-btn" onClick={() => resolveConflict('mine')}>Keep mine on top of current</button>
            <button className="sr-btn sr-secondary" onClick={() => resolveConflict('theirs')}>Take current</button>
          </div>
        </div>
      )}
      {diff ? (
        <div className="sr-diff" data-testid="sr-diff">
          {diff.map((p, i) => (
            <span key={i} className={p.op === '-' ? 'sr-del' : p.op === '+' ? 'sr-ins' : ''}>{p.text}</span>
          ))}
        </div>
      ) : view === 'sources' ? (
        <SourcesView sections={sections} marks={marks} findings={draft?.findings ?? []} names={names} />
      ) : (
        sections.map((sec, i) => (
          <div className="sr-section" key={`${sec.title}-${i}`}>
            <label>
              {sec.title || (sections.length === 1 ? 'Report' : 'Preamble')}
              {draft && <SectionCounts marks={marks[i] ?? []} />}
            </label>
            <textarea
              data-section={sec.title || 'preamble'}
              rows={Math.min(14, Math.max(2, sec.body.split('\n').length + Math.floor(sec.body.length / 45)))}
              value={sec.body}
              disabled={!!signedReview}
              onChange={e => edit(i, e.target.value)}
              onBlur={() => void flush()}
            />
          </div>
        ))
      )}
      {context.similar_cases.length > 0 && (
        <>
          <h3>Similar cases</h3>
          {context.similar_cases.map((c, i) => (
            <div className="sr-similar" key={i} data-testid="sr-similar">
              <div className="sr-muted" title={`retrieval score ${c.score.toFixed(2)} (higher is closer)`}>
                similar case {i + 1}
              </div>
              {c.report}
            </div>
          ))}
        </>
      )}
      <h3>RADPEER</h3>
      {signedReview ? (
        <div className="sr-note" data-testid="sr-signed">
          Signed: RADPEER {signedReview.radpeer}
          {signedReview.comment ? ` — ${signedReview.comment}` : ''}. Edit distance (words, normalised):{' '}
          {signedReview.edit_distance?.word_levenshtein_norm?.toFixed?.(3) ?? '—'}
        </div>
      ) : (
        <>
          <div className="sr-radpeer" role="radiogroup">
            {RADPEER.map(r => (
              <React.Fragment key={r.score}>
                <input
                  type="radio"
                  name="sr-radpeer"
                  id={`sr-radpeer-${r.score}`}
                  data-radpeer={r.score}
                  checked={radpeer === r.score}
                  onChange={() => setRadpeer(r.score)}
                />
                <label htmlFor={`sr-radpeer-${r.score}`} title={r.text}>
                  <strong>{r.score}</strong> <span className="sr-muted">{r.text}</span>
                </label>
              </React.Fragment>
            ))}
          </div>
          <textarea
            data-testid="sr-comment"
            placeholder={NEEDS_COMMENT.has(radpeer) ? `Comment (required for ${radpeer})` : 'Comment (optional)'}
            rows={2}
            value={comment}
            onChange={e => setComment(e.target.value)}
          />
          <label className="sr-row">
            <input type="checkbox" data-testid="sr-in-scope" checked={inScope} onChange={e => setInScope(e.target.checked)} />
            In scope (the study is what the model was built for)
          </label>
          <div className="sr-row">
            <button className="sr-btn" data-testid="sr-sign" disabled={signing} onClick={() => void sign()}>
              {signing ? 'Signing…' : 'Sign off'}
            </button>
            <span className="sr-muted"><span className="sr-kbd">1</span>–<span className="sr-kbd">5</span> score · <span className="sr-kbd">Ctrl+Enter</span> sign · <span className="sr-kbd">Shift+N</span> next study</span>
          </div>
          <ErrorBox error={signError} prefix="Sign-off" />
        </>
      )}
    </div>
  );
}
