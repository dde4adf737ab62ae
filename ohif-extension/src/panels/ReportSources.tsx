/**
 * The report's provenance in the report panel: the consistency check's note ("AI draft checked:
 * 2 sentences removed, 1 finding added", the changes and their reasons on expand) and the
 * sources view, where every sentence is marked as the AI's or the reader's and an AI finding
 * sentence links to its agent call: hovering it (briefly) or clicking it jumps every viewport to
 * the finding's key slice and box, as a click in the findings panel does, and it shows the
 * probability. Marks are computed live from sentence text (src/provenance.ts), so they follow
 * the reader's edits.
 */
import React, { useMemo, useRef } from 'react';
import type { DraftProvenance, Finding, SentenceLink } from '../api';
import { checkNote, draftKeys, markSection, type MarkedSentence } from '../provenance';
import type { Section, SectionTitle } from '../reportText';
import { jumpToFinding } from '../review';
import * as store from '../store';

const HOVER_MS = 250;

function styles(): void {
  if (document.getElementById('spinereview-provenance-styles')) return;
  const style = document.createElement('style');
  style.id = 'spinereview-provenance-styles';
  style.textContent = `
.sr-src-section{margin:2px 0 6px}
.sr-src-section label{display:block;color:#93c5fd;font-size:12px}
.sr-sent{border-radius:3px;padding:0 2px;margin-right:2px}
.sr-sent-ai{background:#1e293b;border-bottom:2px solid #60a5fa}
.sr-sent-typed{background:#3f2d05;border-bottom:2px solid #f59e0b}
.sr-sent-linked{cursor:pointer}
.sr-sent-linked:hover,.sr-sent-linked.sr-sent-active{background:#1e3a8a}
.sr-prob-tag{font:11px ui-monospace,monospace;color:#fca5a5;margin-left:3px}
.sr-legend{font-size:11px;color:#9ca3af}
.sr-check summary{cursor:pointer}
.sr-check li{margin:2px 0;font-size:12px}
.sr-counts{font-size:11px;color:#9ca3af;margin-left:6px}
.sr-prior{background:#111827;padding:6px;border-radius:4px;font-size:12px}
.sr-prior pre{white-space:pre-wrap;font:12px/1.4 ui-monospace,monospace;margin:4px 0;max-height:220px;overflow:auto}
`;
  document.head.appendChild(style);
}

export function linkWords(link: SentenceLink, finding: Finding | undefined, names: Map<string, string>): string {
  const where = [link.level, link.side].filter(Boolean).join(' ');
  const p = finding?.probability ?? link.probability;
  return `${names.get(link.condition) ?? link.condition}${where ? ` ${where}` : ''} · AI ${(p * 100).toFixed(0)} %`;
}

/** The consistency check's note, with the changes and their reasons on expand. */
export function CheckNote({ provenance }: { provenance: DraftProvenance }) {
  styles();
  const n = Object.values(provenance.check_summary).reduce((a, b) => a + b, 0);
  return (
    <details className="sr-note sr-check" data-testid="sr-check">
      <summary data-testid="sr-check-summary">AI draft checked: {checkNote(provenance.check_summary)}</summary>
      {n > 0 && (
        <ul data-testid="sr-check-changes">
          {provenance.changes.map((c, i) => (
            <li key={i} data-action={c.action}>
              <strong>{c.action.replace('_', ' ')}</strong>
              {c.section ? ` (${c.section})` : ''}: “{c.sentence}”{c.replacement ? ` → “${c.replacement}”` : ''}
              <div className="sr-muted">{c.reason}</div>
            </li>
          ))}
        </ul>
      )}
    </details>
  );
}

export function useMarks(sections: Section[], draftText: string | undefined, provenance: DraftProvenance | null, vocabulary: SectionTitle[]) {
  const drafted = useMemo(() => draftKeys(draftText ?? '', vocabulary), [draftText, vocabulary]);
  return useMemo(
    () => sections.map(sec => markSection(sec.body, drafted, provenance?.links ?? [])),
    [sections, drafted, provenance]
  );
}

/** "AI 3 · typed 1" beside a section's label: the at-a-glance count while editing. */
export function SectionCounts({ marks }: { marks: MarkedSentence[] }) {
  if (!marks.length) return null;
  const ai = marks.filter(m => m.origin === 'ai').length;
  return (
    <span className="sr-counts" data-testid="sr-section-counts">
      AI {ai} · typed {marks.length - ai}
    </span>
  );
}

export function SourcesView({ sections, marks, findings, names }: {
  sections: Section[]; marks: MarkedSentence[][]; findings: Finding[]; names: Map<string, string>;
}) {
  styles();
  const selected = store.useStudyState().selected;
  const hover = useRef<ReturnType<typeof setTimeout> | null>(null);
  const byKey = useMemo(() => new Map(findings.map(f => [f.condition, f])), [findings]);
  const jump = (m: MarkedSentence) => {
    if (hover.current) clearTimeout(hover.current);
    hover.current = null;
    const first = m.links.find(l => byKey.has(l.condition));
    if (first) void jumpToFinding(first.condition);
  };
  const enter = (m: MarkedSentence) => {
    if (hover.current) clearTimeout(hover.current);
    hover.current = setTimeout(() => jump(m), HOVER_MS);
  };
  const leave = () => {
    if (hover.current) clearTimeout(hover.current);
    hover.current = null;
  };
  return (
    <div data-testid="sr-sources">
      <div className="sr-legend">
        <span className="sr-sent sr-sent-ai">AI</span> written by the AI draft, unchanged ·{' '}
        <span className="sr-sent sr-sent-typed">typed</span> by the reader · hover or click a finding sentence to show it
      </div>
      {sections.map((sec, i) =>
        marks[i].length ? (
          <div className="sr-src-section" key={`${sec.title}-${i}`}>
            <label>{sec.title || 'Preamble'}</label>
            {marks[i].map((m, j) => {
              const linked = m.links.length > 0;
              const active = linked && m.links.some(l => l.condition === selected);
              return (
                <span
                  key={j}
                  className={`sr-sent sr-sent-${m.origin}${linked ? ' sr-sent-linked' : ''}${active ? ' sr-sent-active' : ''}`}
                  data-origin={m.origin}
                  data-conditions={m.links.map(l => l.condition).join(' ')}
                  title={linked ? m.links.map(l => linkWords(l, byKey.get(l.condition), names)).join('\n') : m.origin === 'ai' ? 'AI draft' : 'typed by the reader'}
                  onMouseEnter={linked ? () => enter(m) : undefined}
                  onMouseLeave={linked ? leave : undefined}
                  onClick={linked ? () => jump(m) : undefined}
                >
                  {m.text}
                  {m.links.map(l => (
                    <span className="sr-prob-tag" key={l.condition} data-link={l.condition}>
                      {((byKey.get(l.condition)?.probability ?? l.probability) * 100).toFixed(0)}%
                    </span>
                  ))}
                </span>
              );
            })}
          </div>
        ) : null
      )}
    </div>
  );
}
