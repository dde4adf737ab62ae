/**
 * Report text <-> editable sections, and a word diff.
 *
 * Sections are cut exactly as the server cuts them (ml/report_sections.py, whose module
 * docstring is the definition), so a section edited here is the section whose edit distance the
 * server stores. The server sends the known titles and their aliases in the study context
 * (`report_sections`); a header is, at the start of a line:
 *   1. a label of letters, spaces and /&,- followed by a colon, when the label is a known title
 *      or alias (any case) or is written in capitals (3+ characters);
 *   2. a known title or alias alone on its line;
 *   3. an addendum ("ADDENDUM (12/03): ...", "Addendum by Dr X -").
 * A level line ("L4-5: ...") is not a header: it stays in its section (DISCS). Each piece keeps
 * its heading exactly, so joining the pieces gives back the text byte for byte: editing one
 * section never reformats the others.
 */

export interface Section { title: string; head: string; body: string }
export interface SectionTitle { title: string; aliases: string[] }

const COLON = /^[ \t]*([A-Za-z][A-Za-z /&,-]{1,40}?)[ \t]*:[ \t]*\n?/gm;
const BARE = /^[ \t]*([A-Za-z][A-Za-z /&-]{1,40}?)[ \t]*(?:\n|$)/gm;
const ADDENDUM = /^[ \t]*(addendum|amendment)\b[^:\n]{0,60}?(:|\s-\s|$)[ \t]*\n?/gim;

const canonical = (label: string) => label.split(/\s+/).filter(Boolean).join(' ').toUpperCase();
const isCapitals = (label: string) => label === label.toUpperCase() && label !== label.toLowerCase();

export function splitSections(text: string, vocabulary: SectionTitle[]): Section[] {
  const known = new Map<string, string>();
  for (const v of vocabulary) {
    known.set(canonical(v.title), v.title);
    for (const a of v.aliases) known.set(canonical(a), v.title);
  }
  let marks: { start: number; bodyStart: number; title: string }[] = [];
  for (const m of text.matchAll(COLON)) {
    const word = canonical(m[1]);
    const title = known.get(word) ?? (isCapitals(m[1].trim()) && word.length > 2 ? word : undefined);
    if (title !== undefined) marks.push({ start: m.index!, bodyStart: m.index! + m[0].length, title });
  }
  for (const m of text.matchAll(BARE)) {
    const title = known.get(canonical(m[1]));
    const inside = marks.some(k => k.start <= m.index! && m.index! < k.bodyStart);
    if (title !== undefined && !inside) marks.push({ start: m.index!, bodyStart: m.index! + m[0].length, title });
  }
  for (const m of text.matchAll(ADDENDUM)) {
    const end = m.index! + m[0].length;
    marks = marks.filter(k => !(m.index! <= k.start && k.start < end));
    marks.push({ start: m.index!, bodyStart: end, title: 'ADDENDUM' });
  }
  marks.sort((a, b) => a.start - b.start || a.bodyStart - b.bodyStart);
  if (!marks.length) return [{ title: '', head: '', body: text }];
  const out: Section[] = [];
  if (marks[0].start > 0) out.push({ title: '', head: '', body: text.slice(0, marks[0].start) });
  marks.forEach((k, i) => {
    const end = i + 1 < marks.length ? marks[i + 1].start : text.length;
    out.push({ title: k.title, head: text.slice(k.start, k.bodyStart), body: text.slice(k.bodyStart, end) });
  });
  return out;
}

export function joinSections(sections: Section[]): string {
  return sections.map(s => s.head + s.body).join('');
}

export function sectionsDict(sections: Section[]): Record<string, string> {
  return Object.fromEntries(sections.filter(s => s.title).map(s => [s.title, s.body.trim()]));
}

export type DiffPart = { op: '=' | '-' | '+'; text: string };

/** Word-level diff (LCS over words); reports are short, O(n·m) is fine. */
export function wordDiff(before: string, after: string): DiffPart[] {
  // a word with the whitespace after it is one token: changes read as whole phrases
  const tokens = (text: string) => text.match(/\s+|\S+\s*/g) ?? [];
  const a = tokens(before);
  const b = tokens(after);
  const n = a.length;
  const m = b.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const parts: DiffPart[] = [];
  const push = (op: DiffPart['op'], text: string) => {
    const last = parts[parts.length - 1];
    if (last && last.op === op) last.text += text;
    else parts.push({ op, text });
  };
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      push('=', a[i]);
      i++;
      j++;
    } else if (lcs[i + 1][j] >= lcs[i][j + 1]) push('-', a[i++]);
    else push('+', b[j++]);
  }
  while (i < n) push('-', a[i++]);
  while (j < m) push('+', b[j++]);
  return parts;
}
