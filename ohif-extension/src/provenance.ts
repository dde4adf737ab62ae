/**
 * Provenance of the report's sentences, live as the reader types: a sentence identical to a
 * sentence of the AI draft is the AI's, any other the reader typed; an AI finding sentence links
 * to the agent call(s) it states (the server's `draft_provenance.links`, computed by
 * ml/agents/report/provenance.py from the draft's text). Matching is by sentence text, never by
 * character offset, so editing one section leaves every other section's marks and links as they
 * were. Sentences are cut as the server cuts them: per line, at ". ", "! ", "? " before a capital,
 * a digit or an opening bracket; impression numbering ("1. ") dropped; whitespace collapsed.
 */
import type { SentenceLink } from './api';
import { splitSections, type SectionTitle } from './reportText';

const SPLIT = /(?<=[.!?])\s+(?=[[("']?[A-Z0-9])/;
const ITEM = /^\s*\d+[.)]\s+/;

export function normalise(sentence: string): string {
  return sentence.replace(ITEM, '').replace(/\s+/g, ' ').trim();
}

/** The sentences of one section body, each with its matching key. */
export function bodySentences(body: string): { text: string; key: string }[] {
  const out: { text: string; key: string }[] = [];
  for (const raw of body.split('\n')) {
    const line = raw.trim().replace(ITEM, '');
    for (const piece of line.split(SPLIT)) {
      const text = piece.trim();
      if (text) out.push({ text, key: normalise(text) });
    }
  }
  return out;
}

export interface MarkedSentence { text: string; key: string; origin: 'ai' | 'typed'; links: SentenceLink[] }

/** The matching keys of every sentence of the draft. */
export function draftKeys(draftText: string, vocabulary: SectionTitle[]): Set<string> {
  const keys = new Set<string>();
  for (const sec of splitSections(draftText, vocabulary)) for (const s of bodySentences(sec.body)) keys.add(s.key);
  return keys;
}

/** One section's sentences marked AI/typed, an AI sentence with the links of its text. */
export function markSection(body: string, drafted: Set<string>, links: SentenceLink[]): MarkedSentence[] {
  return bodySentences(body).map(s => {
    const ai = drafted.has(s.key);
    return { ...s, origin: ai ? 'ai' : 'typed', links: ai ? links.filter(l => l.sentence === s.key) : [] };
  });
}

const ACTION_WORDS: Record<string, [string, string]> = {
  removed: ['sentence removed', 'sentences removed'],
  cut: ['unfinished sentence cut', 'unfinished sentences cut'],
  fixed_level: ['level corrected', 'levels corrected'],
  fixed_side: ['side corrected', 'sides corrected'],
  added: ['finding added', 'findings added'],
  replaced: ['section taken from the data', 'sections taken from the data'],
};

/** "2 sentences removed, 1 finding added": the consistency check's changes in words. */
export function checkNote(summary: Record<string, number>): string {
  const parts = Object.keys(ACTION_WORDS)
    .filter(a => summary[a])
    .map(a => `${summary[a]} ${ACTION_WORDS[a][summary[a] === 1 ? 0 : 1]}`);
  const other = Object.entries(summary).filter(([a, n]) => !(a in ACTION_WORDS) && n).map(([a, n]) => `${n} ${a}`);
  const all = [...parts, ...other];
  return all.length ? all.join(', ') : 'no changes needed';
}
