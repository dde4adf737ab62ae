/**
 * What a viewport drawn on the CPU misses. The app config has Cornerstone draw on the CPU where
 * the browser's WebGL is a software renderer (reviewer/viewer_config.py): there a stack of MR
 * slices reaches the screen sooner than through software WebGL and its read-back. One thing
 * does not come along: on the GPU path a stack viewport announces its first camera
 * (CAMERA_MODIFIED, from its camera reset), and on the CPU path it does not. OHIF's orientation
 * markers (the "A", "H", "R" at a viewport's edges) wait for that event, so a reader on such a
 * machine would see no orientation until they pan or zoom.
 *
 * So each CPU-drawn viewport, once it has an image in it (again after each new image set), announces
 * its current camera as unchanged (previous camera = camera): whatever listens for camera changes
 * redraws from the camera it already has, and nothing moves.
 *
 * Once the markers have a camera, they are recomputed whenever the viewport's data changes, and a
 * CPU-drawn viewport between two image sets has no image: its canvasToWorld then returns
 * undefined (the GPU path always answers from its camera), and OHIF's markers threw on it, taking
 * the whole viewer down (seen with the transfer-syntax e2e, which swaps series in a viewport).
 * So on a CPU-drawn viewport canvasToWorld answers a point even then (the world origin: the markers
 * come out empty until the image, then are drawn from the announced camera).
 */
import { cornerstoneLibraries, type Managers } from './viewerControl';

/** Watch every enabled viewport; returns the cancel, which removes every listener. */
export function announceCpuCameras(m: Managers): () => void {
  const { cornerstone } = cornerstoneLibraries(m);
  const { Events } = cornerstone.Enums;
  const pending = new WeakSet<HTMLElement>(); // elements whose image set has not announced its camera yet
  const watched = new Set<HTMLElement>();

  const viewportOf = (element: HTMLElement): any => cornerstone.getEnabledElement(element)?.viewport ?? null;
  const isCpu = (viewport: any): boolean => viewport?.useCPURendering === true || !!viewport?._cpuFallbackEnabledElement;
  const guarded = new WeakSet<object>();
  const guard = (viewport: any) => {
    if (!isCpu(viewport) || guarded.has(viewport) || typeof viewport.canvasToWorld !== 'function') return;
    guarded.add(viewport);
    const canvasToWorld = viewport.canvasToWorld;
    viewport.canvasToWorld = (...args: unknown[]) => canvasToWorld.apply(viewport, args) ?? [0, 0, 0];
  };
  const announce = (element: HTMLElement) => {
    const viewport = viewportOf(element);
    guard(viewport);
    if (!isCpu(viewport) || !viewport.getImageData?.()) return;
    pending.delete(element);
    const camera = viewport.getCamera();
    const detail = {
      previousCamera: camera,
      camera,
      element,
      viewportId: viewport.id,
      renderingEngineId: viewport.renderingEngineId,
    };
    element.dispatchEvent(new CustomEvent(Events.CAMERA_MODIFIED, { detail, cancelable: true }));
  };
  const onRendered = (evt: any) => {
    const element: HTMLElement | undefined = evt?.detail?.element ?? evt?.target;
    if (element && pending.has(element)) announce(element);
  };
  const onNewImageSet = (evt: any) => {
    const element: HTMLElement | undefined = evt?.detail?.element ?? evt?.target;
    if (!element) return;
    pending.add(element);
    guard(viewportOf(element));
  };
  const watch = (element: HTMLElement | undefined) => {
    if (!element) return;
    pending.add(element);
    guard(viewportOf(element));
    if (watched.has(element)) return;
    watched.add(element);
    element.addEventListener(Events.VIEWPORT_NEW_IMAGE_SET, onNewImageSet);
    element.addEventListener(Events.IMAGE_RENDERED, onRendered);
  };
  const onEnabled = (evt: any) => watch(evt?.detail?.element);

  cornerstone.eventTarget.addEventListener(Events.ELEMENT_ENABLED, onEnabled);
  for (const enabled of cornerstone.getEnabledElements?.() ?? []) {
    const element = enabled.viewport?.element;
    watch(element);
    if (element) announce(element);
  }
  return () => {
    cornerstone.eventTarget.removeEventListener(Events.ELEMENT_ENABLED, onEnabled);
    for (const element of watched) {
      element.removeEventListener(Events.VIEWPORT_NEW_IMAGE_SET, onNewImageSet);
      element.removeEventListener(Events.IMAGE_RENDERED, onRendered);
    }
    watched.clear();
  };
}
