/**
 * Sagittal and axial linked, and reader-added boxes that say what they are.
 *
 * - Reference lines: Cornerstone's `ReferenceLines` tool (OHIF's "Reference Lines" toggle in the
 *   toolbar) draws the plane of one source viewport on the others. OHIF's mode enables it in its
 *   `default` tool group and moves the source to the active viewport only through the toolbar
 *   button's listeners; we set the source ourselves, on every change of active viewport, so the
 *   axial level shows on the sagittals whenever the axial is active (and the sagittal slice on
 *   the axial when a sagittal is), whatever the toolbar holds. The reader can still switch the
 *   tool off with OHIF's button.
 * - Click-to-level: selecting a finding moves each viewport to the finding's key slice in its
 *   series (FindingsPanel.selectFinding); an axial viewport whose series has no key slice of the
 *   finding goes to the axial image nearest its box on a sagittal image (image geometry), so the
 *   axial still shows the finding's level.
 * - New boxes: a rectangle the reader draws gets the condition chosen in the panel (default: the
 *   selected finding) as soon as it is completed, so it is labelled and coloured like the AI boxes
 *   and saved under that condition.
 */
import type { Finding } from './api';
import * as store from './store';
import { boxConditions, cornerstoneLibraries, onImage, uidsOfImageId, type Managers } from './viewerControl';

const TOOL = 'ReferenceLines';

function viewportIds(m: Managers): string[] {
  const { viewports } = m.servicesManager.services.viewportGridService.getState();
  return viewports instanceof Map ? Array.from(viewports.keys()) : Object.keys(viewports ?? {});
}

function toolGroupOf(m: Managers, viewportId: string): any {
  return m.servicesManager.services.toolGroupService.getToolGroupForViewport(viewportId);
}

/** Make ``viewportId`` the reference-line source (and the tool enabled unless the reader turned it off). */
export function setReferenceSource(m: Managers, viewportId: string | null | undefined): boolean {
  if (!viewportId) return false;
  const group = toolGroupOf(m, viewportId);
  if (!group?.hasTool?.(TOOL)) return false;
  const { cornerstoneTools } = cornerstoneLibraries(m);
  const mode = group.getToolOptions?.(TOOL)?.mode;
  if (mode !== cornerstoneTools.Enums.ToolModes.Enabled) {
    if (readerSwitchedOff) return false;
    group.setToolEnabled(TOOL);
  }
  const previous = group.getToolConfiguration?.(TOOL) ?? {};
  if (previous.sourceViewportId !== viewportId) group.setToolConfiguration(TOOL, { ...previous, sourceViewportId: viewportId }, true);
  m.servicesManager.services.cornerstoneViewportService.getRenderingEngine?.()?.render?.();
  return true;
}

let readerSwitchedOff = false;

/** Follow the active viewport with the reference-line source; returns the unsubscribe. */
export function linkReferenceLines(m: Managers): () => void {
  const { viewportGridService } = m.servicesManager.services;
  const events = viewportGridService.EVENTS ?? {};
  const follow = () => {
    try {
      setReferenceSource(m, viewportGridService.getState().activeViewportId);
    } catch (error) {
      console.warn('spinereview: reference lines', error);
    }
  };
  // a reader who switches the tool off with OHIF's button keeps it off
  const { cornerstone, cornerstoneTools } = cornerstoneLibraries(m);
  const onMode = (evt: any) => {
    if (evt?.detail?.toolName !== TOOL) return;
    readerSwitchedOff = evt.detail.mode === cornerstoneTools.Enums.ToolModes.Disabled;
  };
  const modeEvent = cornerstoneTools.Enums.Events.TOOL_MODE_CHANGED;
  cornerstone.eventTarget.addEventListener(modeEvent, onMode);
  const subscriptions = [events.ACTIVE_VIEWPORT_ID_CHANGED, events.VIEWPORTS_READY, events.GRID_STATE_CHANGED]
    .filter(Boolean)
    .map((event: string) => viewportGridService.subscribe(event, () => setTimeout(follow, 0)));
  follow();
  return () => {
    subscriptions.forEach((s: any) => s?.unsubscribe?.());
    cornerstone.eventTarget.removeEventListener(modeEvent, onMode);
    readerSwitchedOff = false;
  };
}

/** Which viewport is the source, and in which viewports the line is drawn (for the tests). */
export function referenceLinesState(m: Managers): { mode: string | null; sourceViewportId: string | null; drawnIn: string[] } {
  const { viewportGridService, cornerstoneViewportService } = m.servicesManager.services;
  const viewportId = viewportGridService.getState().activeViewportId;
  const group = viewportId ? toolGroupOf(m, viewportId) : null;
  if (!group?.hasTool?.(TOOL)) return { mode: null, sourceViewportId: null, drawnIn: [] };
  const instance = group.getToolInstance?.(TOOL);
  const uid: string | undefined = instance?.editData?.annotation?.annotationUID;
  const drawnIn = uid
    ? viewportIds(m).filter(id => cornerstoneViewportService.getCornerstoneViewport(id)?.element?.querySelector(`[data-id="${uid}-line"]`))
    : [];
  return { mode: group.getToolOptions?.(TOOL)?.mode ?? null, sourceViewportId: group.getToolConfiguration?.(TOOL)?.sourceViewportId ?? null, drawnIn };
}

// --- click-to-level -----------------------------------------------------------------------------

type Vec = [number, number, number];
const dot = (a: number[], b: number[]) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const cross = (a: number[], b: number[]): Vec => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];

function plane(cornerstone: any, imageId: string): { origin: number[]; normal: Vec } | null {
  const p = cornerstone.metaData.get('imagePlaneModule', imageId);
  if (!p?.imagePositionPatient || !p?.rowCosines || !p?.columnCosines) return null;
  return { origin: p.imagePositionPatient, normal: cross(p.rowCosines, p.columnCosines) };
}

/**
 * Move every axial viewport not in ``moved`` to the image nearest the centre of the finding's
 * first box on a non-axial image: the axial slice through the finding's level. Returns the
 * viewports moved.
 */
export async function levelAxials(m: Managers, finding: Finding, moved: string[]): Promise<string[]> {
  const { cornerstone } = cornerstoneLibraries(m);
  const { cornerstoneViewportService, viewportGridService } = m.servicesManager.services;
  const out: string[] = [];
  let point: number[] | null = null;
  for (const box of finding.boxes) {
    if (!box.series_uid) continue;
    const sourceId = findImageId(m, box.series_uid, box.sop_uid, box.frame);
    const own = sourceId ? plane(cornerstone, sourceId) : null;
    if (!sourceId || !own || Math.abs(own.normal[2]) > 0.7) continue; // an axial box gives no level
    const [x0, y0, x1, y1] = box.xyxy;
    point = cornerstone.utilities.imageToWorldCoords(sourceId, [(x0 + x1) / 2, (y0 + y1) / 2]);
    break;
  }
  if (!point) return out;
  for (const viewportId of viewportIds(m)) {
    if (moved.includes(viewportId)) continue;
    const viewport = cornerstoneViewportService.getCornerstoneViewport(viewportId);
    const imageIds: string[] = viewport?.getImageIds?.() ?? [];
    const first = imageIds.length ? plane(cornerstone, imageIds[0]) : null;
    if (!first || Math.abs(first.normal[2]) < 0.7) continue; // not an axial stack
    let best = -1;
    let bestDistance = Infinity;
    imageIds.forEach((id, i) => {
      const p = plane(cornerstone, id);
      if (!p) return;
      const distance = Math.abs(dot([point![0] - p.origin[0], point![1] - p.origin[1], point![2] - p.origin[2]], p.normal));
      if (distance < bestDistance) [best, bestDistance] = [i, distance];
    });
    if (best >= 0) {
      await viewport.setImageIdIndex(best);
      out.push(viewportId);
    }
  }
  return out;
}

function findImageId(m: Managers, seriesUid: string, sopUid: string, frame?: number | null): string | null {
  const { displaySetService } = m.servicesManager.services;
  for (const ds of displaySetService.getActiveDisplaySets()) {
    if (ds.SeriesInstanceUID !== seriesUid || ds.Modality === 'SR') continue;
    // a multi-frame object: its frames' image ids, else its instance's (which names frame 1)
    const frameId = (ds.imageIds ?? []).find((id: string) => {
      const uids = uidsOfImageId(id);
      return uids !== null && onImage({ sop_uid: sopUid, frame }, uids);
    });
    if (frameId) return frameId;
    const instance = (ds.images ?? ds.instances ?? []).find((i: any) => i.SOPInstanceUID === sopUid);
    if (instance?.imageId) return instance.imageId;
  }
  return null;
}

// --- reader-added boxes -------------------------------------------------------------------------

/**
 * Give a rectangle the reader has just drawn the condition chosen in the panel (``newBoxCondition``,
 * else the selected finding), before anything saves it; ``onLabelled`` relabels and recolours.
 */
export function watchNewBoxes(m: Managers, onLabelled: () => void): () => void {
  const { cornerstone, cornerstoneTools } = cornerstoneLibraries(m);
  const event = cornerstoneTools.Enums.Events.ANNOTATION_COMPLETED;
  const handler = (evt: any) => {
    const annotation = evt?.detail?.annotation;
    if (annotation?.metadata?.toolName !== 'RectangleROI' || boxConditions.has(annotation.annotationUID)) return;
    const imageId: string = annotation.metadata?.referencedImageId ?? '';
    const uids = uidsOfImageId(imageId);
    if (!uids) return;
    const state = store.getState();
    // a box of the SR being hydrated keeps the condition of its SR box (rememberConditions)
    const points: number[][] = annotation.data?.handles?.points ?? [];
    const pixels = points.map(p => cornerstone.utilities.worldToImageCoords(imageId, p));
    const xyxy = [Math.min(...pixels.map(p => p[0])), Math.min(...pixels.map(p => p[1])), Math.max(...pixels.map(p => p[0])), Math.max(...pixels.map(p => p[1]))];
    const fromSr = (state.context?.structured_report?.boxes ?? []).some(
      b => onImage(b, uids) && b.xyxy.reduce((sum, v, i) => sum + Math.abs(v - xyxy[i]), 0) < 4
    );
    if (fromSr) return;
    const condition = state.newBoxCondition || state.selected;
    if (!condition) return; // saving asks for one
    boxConditions.set(annotation.annotationUID, condition);
    onLabelled();
  };
  cornerstone.eventTarget.addEventListener(event, handler);
  return () => cornerstone.eventTarget.removeEventListener(event, handler);
}
