/**
 * Report text <-> editable sections, and a word diff.
 *
 * Sections are cut at lines that start with an upper-case heading and a colon ("IMPRESSION:",
 * "SPINAL CANAL: ..."). Each piece keeps its heading exactly, so joining the pieces gives back
 * the text byte for byte: editing one section never reformats the others, and the edit distance
 * the app stores (draft vs signed) counts only what the radiologist changed.
 */

export interface Section { title: string; head: string; body: string }

const HEADING = /^([A-Z][A-Z0-9 /&(),'-]{1,60}):[ \t]*\n?/gm;

export function splitSections(text: string): Section[] {
  const matches = Array.from(text.matchAll(HEADING));
  if (!matches.length) return [{ title: 'REPORT', head: '', body: text }];
  const out: Section[] = [];
  if ((matches[0].index ?? 0) > 0) out.push({ title: '', head: '', body: text.slice(0, matches[0].index) });
  matches.forEach((m, i) => {
    const start = (m.index ?? 0) + m[0].length;
    const end = i + 1 < matches.length ? matches[i + 1].index ?? text.length : text.length;
    out.push({ title: m[1], head: m[0], body: text.slice(start, end) });
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
