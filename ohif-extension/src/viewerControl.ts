/**
 * Everything our panels do to the viewer, through OHIF's services and Cornerstone (reached via
 * the supported `getCornerstoneLibraries()` of the cornerstone extension's utility module).
 */
import type { Box, Condition } from './api';

export interface Managers {
  servicesManager: any;
  commandsManager: any;
  extensionManager: any;
}

const SOP_IN_IMAGE_ID = /\/series\/([^/]+)\/instances\/([^/]+)(?:\/frames\/(\d+))?/;

export function cornerstoneLibraries({ extensionManager }: Managers): { cornerstone: any; cornerstoneTools: any } {
  const entry = extensionManager.getModuleEntry('@ohif/extension-cornerstone.utilityModule.common');
  return entry.exports.getCornerstoneLibraries();
}

/**
 * Series, instance and 1-based frame of a WADO-RS image id. The frame is what tells the slices of
 * an Enhanced (multi-frame) MR object apart: one SOP instance holds the whole stack, so a box or a
 * key slice that named only the instance would point at frame 1. Single-frame images say frame 1
 * (the server stores no frame for them); ``null`` when the id names no frame (WADO-URI).
 */
export function uidsOfImageId(imageId: string): { series_uid: string; sop_uid: string; frame: number | null } | null {
  const match = SOP_IN_IMAGE_ID.exec(imageId ?? '');
  if (!match) return null;
  return {
    series_uid: decodeURIComponent(match[1]),
    sop_uid: decodeURIComponent(match[2]),
    frame: match[3] ? Number(match[3]) : null,
  };
}

/**
 * Whether a box or key slice (``sop_uid`` and, on a multi-frame image, ``frame``) lies on the image
 * ``uids`` names. A missing frame is frame 1: what a single-frame image always is.
 */
export function onImage(ref: { sop_uid: string; frame?: number | null }, uids: { sop_uid: string; frame: number | null }): boolean {
  return ref.sop_uid === uids.sop_uid && (ref.frame ?? 1) === (uids.frame ?? 1);
}

function viewportEntries(m: Managers): Array<[string, any]> {
  const { viewports } = m.servicesManager.services.viewportGridService.getState();
  return viewports instanceof Map ? Array.from(viewports.entries()) : Object.entries(viewports ?? {});
}

function displaySetsOf(m: Managers, viewport: any): any[] {
  const { displaySetService } = m.servicesManager.services;
  return (viewport.displaySetInstanceUIDs ?? []).map((uid: string) => displaySetService.getDisplaySetByUID(uid)).filter(Boolean);
}

/**
 * Show image ``sopUid`` (its ``frame`` when multi-frame) of series ``seriesUid`` in every viewport
 * that shows that series; if none does, load the series into the active viewport at that image.
 * Returns the viewports moved.
 */
export async function jumpToImage(m: Managers, seriesUid: string, sopUid: string, frame?: number | null): Promise<string[]> {
  const { cornerstoneViewportService, displaySetService, viewportGridService } = m.servicesManager.services;
  const moved: string[] = [];
  for (const [viewportId, viewport] of viewportEntries(m)) {
    if (!displaySetsOf(m, viewport).some(ds => ds.SeriesInstanceUID === seriesUid)) continue;
    const csViewport = cornerstoneViewportService.getCornerstoneViewport(viewportId);
    const imageIds: string[] = csViewport?.getImageIds?.() ?? [];
    const index = imageIds.findIndex(id => {
      const uids = uidsOfImageId(id);
      return uids !== null && onImage({ sop_uid: sopUid, frame }, uids);
    });
    if (index >= 0) {
      await csViewport.setImageIdIndex(index);
      moved.push(viewportId);
    }
  }
  if (moved.length) return moved;
  const displaySet = displaySetService
    .getActiveDisplaySets()
    .find((ds: any) => ds.SeriesInstanceUID === seriesUid && ds.Modality !== 'SR');
  if (!displaySet) return moved;
  const first = (displaySet.images ?? displaySet.instances ?? []).findIndex((i: any) => i.SOPInstanceUID === sopUid);
  // a multi-frame object is one instance whose frames are consecutive images of the display set
  const index = Math.max(0, first) + (first >= 0 && frame ? frame - 1 : 0);
  const { activeViewportId } = viewportGridService.getState();
  viewportGridService.setDisplaySetsForViewports([
    {
      viewportId: activeViewportId,
      displaySetInstanceUIDs: [displaySet.displaySetInstanceUID],
      viewportOptions: { initialImageOptions: { index } },
    },
  ]);
  return [activeViewportId];
}

/** The SR display set that holds ``sopUid`` (OHIF shows the newest instance of an SR series). */
function srDisplaySet(m: Managers, seriesUid: string): any {
  return m.servicesManager.services.displaySetService
    .getActiveDisplaySets()
    .find((ds: any) => ds.Modality === 'SR' && ds.SeriesInstanceUID === seriesUid);
}

/**
 * Turn the boxes of our SR into editable Cornerstone rectangles (OHIF's own SR hydration).
 * 'missing' when the viewer has not loaded that SR (it was stored after the viewer opened).
 */
export async function hydrateBoxes(
  m: Managers,
  srSeriesUid: string,
  srSopUid: string,
  allowPartial = false
): Promise<'hydrated' | 'missing' | 'older' | 'waiting'> {
  const displaySet = srDisplaySet(m, srSeriesUid);
  if (!displaySet) return 'missing';
  if (displaySet.instance?.SOPInstanceUID !== srSopUid) return 'older';
  if (!displaySet.isLoaded) await displaySet.load();
  // OHIF matches each SR box to its image as that image's series arrives; hydrating before
  // then drops the box (the adapter cannot place it), so wait for every geometric one
  const unmatched = (displaySet.measurements ?? []).filter((x: any) => x.coords?.[0]?.ValueType && !x.loaded);
  if (unmatched.length && !allowPartial) return 'waiting';
  m.commandsManager.runCommand('hydrateStructuredReport', { displaySetInstanceUID: displaySet.displaySetInstanceUID });
  render(m);
  return 'hydrated';
}

export function render(m: Managers): void {
  const { cornerstone } = cornerstoneLibraries(m);
  for (const engine of cornerstone.getRenderingEngines?.() ?? []) engine.render();
}

/** The RectangleROI annotations on the images now (our boxes, hydrated or drawn). */
export function rectangles(m: Managers): any[] {
  const { cornerstoneTools } = cornerstoneLibraries(m);
  return (cornerstoneTools.annotation.state.getAllAnnotations() ?? []).filter(
    (a: any) => a.metadata?.toolName === 'RectangleROI'
  );
}

export function setBoxesVisible(m: Managers, visible: boolean): number {
  const { cornerstoneTools } = cornerstoneLibraries(m);
  const boxes = rectangles(m);
  for (const a of boxes) cornerstoneTools.annotation.visibility.setAnnotationVisibility(a.annotationUID, visible);
  render(m);
  return boxes.length;
}

function pixelBox(cornerstone: any, annotation: any): { imageId: string; xyxy: number[] } | null {
  const imageId: string = annotation.metadata?.referencedImageId;
  const points: number[][] = annotation.data?.handles?.points ?? [];
  if (!imageId || points.length < 2) return null;
  const pixels = points.map(p => cornerstone.utilities.worldToImageCoords(imageId, p));
  const xs = pixels.map(p => p[0]);
  const ys = pixels.map(p => p[1]);
  return { imageId, xyxy: [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)] };
}

/** annotationUID -> condition of the SR box it was hydrated from (what a later edit keeps). */
export const boxConditions = new Map<string, string>();

/**
 * After hydration: give each rectangle the condition of the SR box it came from, matched by image
 * and position (the nearest box on the same image). Labels are not relied upon: OHIF shows them
 * but a reader may rename them.
 */
export function rememberConditions(m: Managers, srBoxes: Box[]): number {
  const { cornerstone } = cornerstoneLibraries(m);
  let matched = 0;
  for (const a of rectangles(m)) {
    if (boxConditions.has(a.annotationUID)) continue;
    const box = pixelBox(cornerstone, a);
    const uids = box && uidsOfImageId(box.imageId);
    if (!box || !uids) continue;
    let best: Box | null = null;
    let bestDistance = Infinity;
    for (const b of srBoxes) {
      if (!onImage(b, uids) || !b.condition) continue;
      const distance = b.xyxy.reduce((sum, v, i) => sum + Math.abs(v - box.xyxy[i]), 0);
      if (distance < bestDistance) [best, bestDistance] = [b, distance];
    }
    if (best && bestDistance < 4) {
      boxConditions.set(a.annotationUID, best.condition!);
      matched += 1;
    }
  }
  return matched;
}

/** condition key of a rectangle: its label/finding names one of the 17 conditions, else ``fallback``. */
function conditionOf(annotation: any, measurement: any, conditions: Condition[], fallback: string | null): string | null {
  const known = boxConditions.get(annotation.annotationUID);
  if (known) return known;
  const texts = [
    measurement?.finding?.CodeValue,
    measurement?.label,
    annotation.data?.label,
    ...(measurement?.findingSites ?? []).map((s: any) => s?.CodeValue),
  ].filter((t): t is string => typeof t === 'string' && t.length > 0);
  for (const text of texts) {
    const hit = conditions.find(c => c.key === text || c.name.slice(0, 64) === text || text.startsWith(`${c.key} `));
    if (hit) return hit.key;
  }
  return fallback;
}

/**
 * The rectangles now on the images, in image pixels, as the box set to save. Boxes whose
 * condition cannot be told are reported in ``unlabelled`` (the caller asks the user).
 */
export function currentBoxes(m: Managers, conditions: Condition[], fallback: string | null): { boxes: Box[]; unlabelled: number } {
  const { cornerstone } = cornerstoneLibraries(m);
  const { measurementService } = m.servicesManager.services;
  const boxes: Box[] = [];
  let unlabelled = 0;
  for (const a of rectangles(m)) {
    const box = pixelBox(cornerstone, a);
    const uids = box && uidsOfImageId(box.imageId);
    if (!box || !uids) continue;
    const condition = conditionOf(a, measurementService.getMeasurement?.(a.annotationUID), conditions, fallback);
    if (!condition) {
      unlabelled += 1;
      continue;
    }
    const round = (v: number) => Math.round(v * 1000) / 1000;
    boxes.push({
      condition,
      series_uid: uids.series_uid,
      sop_uid: uids.sop_uid,
      ...(uids.frame !== null ? { frame: uids.frame } : {}),
      xyxy: box.xyxy.map(round),
      label: a.data?.label ?? '',
    });
  }
  return { boxes, unlabelled };
}

/** What each viewport shows now (for the status line and for the end-to-end tests). */
export function viewportState(m: Managers): Array<{ viewportId: string; series_uid: string; sop_uid: string; index: number; boxes: number; visibleBoxes: number }> {
  const { cornerstoneViewportService } = m.servicesManager.services;
  const { cornerstoneTools } = cornerstoneLibraries(m);
  const all = rectangles(m);
  return viewportEntries(m).map(([viewportId]) => {
    const csViewport = cornerstoneViewportService.getCornerstoneViewport(viewportId);
    const imageId: string = csViewport?.getCurrentImageId?.() ?? '';
    const uids = uidsOfImageId(imageId);
    const onImage = all.filter(a => a.metadata?.referencedImageId === imageId);
    return {
      viewportId,
      series_uid: uids?.series_uid ?? '',
      sop_uid: uids?.sop_uid ?? '',
      index: csViewport?.getCurrentImageIdIndex?.() ?? -1,
      boxes: onImage.length,
      visibleBoxes: onImage.filter(a => cornerstoneTools.annotation.visibility.isAnnotationVisible(a.annotationUID) !== false).length,
    };
  });
}

/**
 * Page coordinates of the corner handles of the rectangles on a viewport's current image, and
 * their image-pixel box (for the end-to-end tests, which drag a handle like a reader would).
 */
export function boxHandles(m: Managers, viewportId: string): Array<{ annotationUID: string; handles: number[][]; xyxy: number[] }> {
  const { cornerstoneViewportService } = m.servicesManager.services;
  const { cornerstone } = cornerstoneLibraries(m);
  const viewport = cornerstoneViewportService.getCornerstoneViewport(viewportId);
  if (!viewport) return [];
  const imageId: string = viewport.getCurrentImageId();
  const rect = viewport.canvas.getBoundingClientRect();
  return rectangles(m)
    .filter(a => a.metadata?.referencedImageId === imageId)
    .map(a => {
      const points: number[][] = a.data.handles.points;
      const pixels = points.map(p => cornerstone.utilities.worldToImageCoords(imageId, p));
      const xs = pixels.map(p => p[0]);
      const ys = pixels.map(p => p[1]);
      return {
        annotationUID: a.annotationUID,
        handles: points.map(p => {
          const [cx, cy] = viewport.worldToCanvas(p);
          return [rect.left + cx, rect.top + cy];
        }),
        xyxy: [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)],
      };
    });
}

/**
 * Put series ``seriesUid`` into viewport ``viewportId`` at its middle image (the reader's own
 * "drag a thumbnail"); false when the study has no such image series. For the end-to-end tests,
 * which open every copy of one series in turn in the same viewport.
 */
export function showSeries(m: Managers, viewportId: string, seriesUid: string): boolean {
  const { displaySetService, viewportGridService } = m.servicesManager.services;
  const displaySet = displaySetService
    .getActiveDisplaySets()
    .find((ds: any) => ds.SeriesInstanceUID === seriesUid && ds.Modality !== 'SR');
  if (!displaySet) return false;
  const count = displaySet.imageIds?.length ?? displaySet.numImageFrames ?? displaySet.images?.length ?? 1;
  viewportGridService.setDisplaySetsForViewports([
    {
      viewportId,
      displaySetInstanceUIDs: [displaySet.displaySetInstanceUID],
      viewportOptions: { initialImageOptions: { index: Math.floor(count / 2) } },
    },
  ]);
  return true;
}

/**
 * What a viewport shows now, as pixels: the decoded image (its stored values, as the codec gave
 * them) and the statistics of the canvas it was drawn on. A codec that fails or a frame that never
 * arrives leaves no image or a uniform canvas; the decoded values let a test compare them with
 * the file's own.
 */
export function renderedImage(
  m: Managers,
  viewportId: string
): { series_uid: string; sop_uid: string; frame: number | null; rows: number; columns: number; pixels: number[]; canvas: { width: number; height: number; mean: number; variance: number } } | null {
  const viewport = m.servicesManager.services.cornerstoneViewportService.getCornerstoneViewport(viewportId);
  const imageId: string | undefined = viewport?.getCurrentImageId?.();
  const image = viewport?.getCornerstoneImage?.();
  const uids = uidsOfImageId(imageId ?? '');
  if (!viewport || !image || !uids || image.imageId !== imageId) return null;
  const source: HTMLCanvasElement = viewport.canvas;
  const copy = document.createElement('canvas');
  [copy.width, copy.height] = [source.width, source.height];
  const context = copy.getContext('2d');
  if (!context || !copy.width || !copy.height) return null;
  context.drawImage(source, 0, 0);
  const { data } = context.getImageData(0, 0, copy.width, copy.height);
  let sum = 0;
  let squares = 0;
  for (let i = 0; i < data.length; i += 4) {
    const grey = (data[i] + data[i + 1] + data[i + 2]) / 3;
    sum += grey;
    squares += grey * grey;
  }
  const n = data.length / 4;
  const mean = sum / n;
  return {
    ...uids,
    rows: image.rows,
    columns: image.columns,
    pixels: Array.from(image.getPixelData() as ArrayLike<number>),
    canvas: { width: copy.width, height: copy.height, mean, variance: squares / n - mean * mean },
  };
}
