/**
 * How our boxes look: each condition's colour, the "condition level" label, the rectangle text
 * (label only or Cornerstone's statistics) and which conditions' boxes are shown. Split from
 * viewerControl.ts, which moves the viewer; this module only restyles what is on it.
 */
import type { Condition } from './api';
import { boxConditions, cornerstoneLibraries, rectangles, render, type Managers } from './viewerControl';

/** One colour per condition (17 conditions; distinguishable on greyscale MR). */
const PALETTE = [
  '#ef4444', '#f97316', '#f59e0b', '#eab308', '#84cc16', '#22c55e', '#10b981', '#14b8a6', '#06b6d4',
  '#0ea5e9', '#3b82f6', '#6366f1', '#8b5cf6', '#a855f7', '#d946ef', '#ec4899', '#f43f5e',
];

export function conditionColour(key: string, conditions: Condition[]): string {
  const at = conditions.findIndex(c => c.key === key);
  return at < 0 ? '#e5e7eb' : PALETTE[at % PALETTE.length];
}

export function boxLabel(key: string, conditions: Condition[], level: string): string {
  const name = conditions.find(c => c.key === key)?.name ?? key;
  return level ? `${name} ${level}` : name;
}

let defaultTextLines: ((...args: any[]) => string[]) | null = null;

/**
 * Rectangle text: the box's label only ("Disc herniation L4-5"), or Cornerstone's default
 * statistics (area, mean, max, ...) when the reader asks for them. Set on every tool group's
 * RectangleROI configuration (Cornerstone calls `getTextLines(data, targetIds)`).
 */
export function setBoxStatistics(m: Managers, show: boolean): void {
  const { cornerstoneTools } = cornerstoneLibraries(m);
  for (const group of cornerstoneTools.ToolGroupManager.getAllToolGroups?.() ?? []) {
    if (!group.hasTool?.('RectangleROI')) continue;
    const current = group.getToolConfiguration?.('RectangleROI', 'getTextLines');
    if (!defaultTextLines && typeof current === 'function' && !(current as any).spinereview) defaultTextLines = current;
    const labelOnly = Object.assign((data: any) => (data?.label ? [String(data.label)] : []), { spinereview: true });
    group.setToolConfiguration('RectangleROI', { getTextLines: show && defaultTextLines ? defaultTextLines : labelOnly });
  }
  render(m);
}

/**
 * Give every rectangle whose condition is known its label (condition name and level) and its
 * condition's colour; returns how many were labelled.
 */
export function labelBoxes(m: Managers, conditions: Condition[], levelOf: (key: string) => string): number {
  const { cornerstoneTools } = cornerstoneLibraries(m);
  const styles = cornerstoneTools.annotation.config.style;
  let n = 0;
  for (const a of rectangles(m)) {
    const key = boxConditions.get(a.annotationUID);
    if (!key) continue;
    a.data.label = boxLabel(key, conditions, levelOf(key));
    const colour = conditionColour(key, conditions);
    styles.setAnnotationStyles(a.annotationUID, {
      color: colour, colorHighlighted: colour, colorSelected: colour, textBoxColor: colour,
      textBoxColorHighlighted: colour, textBoxColorSelected: colour,
    });
    n += 1;
  }
  render(m);
  return n;
}

/** Show the boxes of every condition except ``hidden`` (all hidden when ``allVisible`` is false). */
export function applyBoxVisibility(m: Managers, allVisible: boolean, hidden: string[]): number {
  const { cornerstoneTools } = cornerstoneLibraries(m);
  let shown = 0;
  for (const a of rectangles(m)) {
    const key = boxConditions.get(a.annotationUID);
    const visible = allVisible && !(key && hidden.includes(key));
    cornerstoneTools.annotation.visibility.setAnnotationVisibility(a.annotationUID, visible);
    if (visible) shown += 1;
  }
  render(m);
  return shown;
}

/** Labels and colours of the boxes now on screen (for the end-to-end tests). */
export function boxLabels(m: Managers): Array<{ condition: string | null; label: string; colour: string | null; visible: boolean }> {
  const { cornerstoneTools } = cornerstoneLibraries(m);
  const styles = cornerstoneTools.annotation.config.style;
  return rectangles(m).map(a => ({
    condition: boxConditions.get(a.annotationUID) ?? null,
    label: String(a.data?.label ?? ''),
    colour: styles.getAnnotationToolStyles?.(a.annotationUID)?.color ?? null,
    visible: cornerstoneTools.annotation.visibility.isAnnotationVisible(a.annotationUID) !== false,
  }));
}
