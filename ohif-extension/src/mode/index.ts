/**
 * Spine review mode, built on OHIF's longitudinal mode (its tools, toolbar, SOP class handlers
 * and lifecycle) through `modeFactory({ loadModules })`: our hanging protocol, our panels on the
 * right, the study list's thumbnails on the left. Image viewports are the plain Cornerstone
 * viewport rather than the measurement-tracking one, so editing boxes never opens OHIF's
 * "track this series?" prompts: box corrections are saved through our own SR endpoint.
 */
import { api } from '../api';
import { relabel, watchBoxes } from '../boxes';
import { boxLabels } from '../boxStyle';
import { announceCpuCameras } from '../cpuViewports';
import { afterFirstImage } from '../firstImage';
import { currentSlots, PROTOCOL_ID, setApiSeries, VIEWPORTS } from '../hangingProtocol';
import { FINDINGS_PANEL, MODE_ID, MODE_ROUTE, REPORT_PANEL } from '../ids';
import { levelAxials, linkReferenceLines, referenceLinesState, watchNewBoxes } from '../linking';
import { ohifBuild } from '../ohifBuild';
import { selectFinding } from '../panels/FindingsPanel';
import { startReadingClock } from '../readingClock';
import { HOTKEYS, mergeHotkeys, setReviewHandlers } from '../review';
import * as store from '../store';
import {
  boxHandles,
  cornerstoneLibraries,
  currentBoxes,
  hydrateBoxes,
  renderedImage,
  showSeries,
  viewportState,
  type Managers,
} from '../viewerControl';
import { announceWarmupDrawn, isWarmupFrame, scheduleWarmup } from '../warmup';

// The extension as the app config lists it (with its ?v= content stamp): the mode must name the
// same URL, or OHIF fetches the extension a second time under the unstamped one.
function extensionUrl(): string {
  const listed = ((window as any).config?.extensions ?? []).find(
    (e: unknown) => typeof e === 'string' && new URL(e, window.location.href).pathname.endsWith('/extension.js'),
  );
  return listed ?? new URL('./extension.js', import.meta.url).href;
}
const EXTENSION_URL = extensionUrl();
const CORNERSTONE_VIEWPORT = '@ohif/extension-cornerstone.viewportModule.cornerstone';
const THUMBNAILS = '@ohif/extension-default.panelModule.seriesList';

function pollSeconds(): number {
  return Number((window as any).config?.spinereview?.pollSeconds) || 5;
}

const mode = {
  id: MODE_ID,
  async modeFactory({ loadModules }: { modeConfiguration: unknown; loadModules: (ids: string[]) => Promise<any[]> }) {
    if (!ohifBuild.ok) return null; // the extension's banner says why
    const [longitudinal] = await loadModules(['@ohif/mode-longitudinal']);
    const base = longitudinal.modeInstance;
    const route = base.routes[0];
    const props = route.layoutInstance.props;
    const layoutInstance = {
      ...route.layoutInstance,
      props: {
        ...props,
        leftPanels: [THUMBNAILS],
        rightPanels: [FINDINGS_PANEL, REPORT_PANEL],
        rightPanelClosed: false,
        viewports: [{ ...props.viewports[0], namespace: CORNERSTONE_VIEWPORT }, ...props.viewports.slice(1)],
      },
    };
    let cleanup: Array<() => void> = [];
    return {
      ...base,
      id: MODE_ID,
      routeName: MODE_ROUTE,
      displayName: 'Spine review',
      hide: false,
      hangingProtocol: PROTOCOL_ID,
      extensions: { ...base.extensions, [EXTENSION_URL]: '^0.1.0' },
      routes: [{ ...route, path: MODE_ROUTE, layoutInstance }],
      onModeEnter(this: any, args: any) {
        base.onModeEnter.call(this, args);
        const managers: Managers = {
          servicesManager: args.servicesManager,
          commandsManager: args.commandsManager,
          extensionManager: args.extensionManager,
        };
        const notify = args.servicesManager.services.uiNotificationService;
        const { customizationService, hangingProtocolService, displaySetService, viewportGridService } =
          args.servicesManager.services;
        // our review keys join OHIF's hotkeys (read by OHIF right after onModeEnter); the keys
        // they take over (W/L presets 1-4, segmentation's n/a/e/[/]) mean nothing in this mode
        customizationService.setCustomizations({ 'ohif.hotkeyBindings': { $apply: mergeHotkeys } });
        store.start(store.studyUidFromUrl(), pollSeconds());
        setReviewHandlers({
          selectFinding: (key: string) => selectFinding(managers, key),
          focusReport: () => (document.querySelector('textarea[data-section]') as HTMLTextAreaElement | null)?.focus(),
          nextStudy: async () => {
            const current = store.getState().context?.study.id;
            if (current === undefined) return;
            try {
              const next = await api.nextStudy(current);
              window.location.assign(`/${MODE_ROUTE}?StudyInstanceUIDs=${encodeURIComponent(next.study_uid)}`);
            } catch (error) {
              notify.show({ title: 'Next study', message: (error as Error).message, type: 'error' });
            }
          },
        });
        // the series classes arrive with the study context: hang the series again if they put
        // another series in a slot than the DICOM-header heuristics did before they arrived
        let classified = false;
        let imageShown = false; // restyling boxes waits for the first image (firstImage.ts)
        const onContext = (state: store.StudyState) => {
          if (!state.context) return;
          if (!classified) {
            classified = true;
            const before = JSON.stringify(currentSlots(displaySetService));
            setApiSeries(state.context.study.series);
            const after = JSON.stringify(currentSlots(displaySetService));
            if (before !== after && hangingProtocolService.getActiveProtocol?.()?.protocol?.id === PROTOCOL_ID) {
              try {
                hangingProtocolService.setProtocol(PROTOCOL_ID);
              } catch (error) {
                console.warn('spinereview: re-hanging the series failed', error);
              }
            }
          }
          // levels follow the reader's corrections; visibility per condition
          if (imageShown) relabel(managers);
        };
        const unsubscribe = store.subscribe(onContext);
        setApiSeries(null);
        // read-only hooks for the end-to-end tests and for support ("what does the viewer show?")
        (window as any).__spinereview = {
          viewportState: () => viewportState(managers),
          boxHandles: (viewportId: string) => boxHandles(managers, viewportId),
          boxLabels: () => boxLabels(managers),
          slots: () => currentSlots(displaySetService),
          viewportIds: () => VIEWPORTS.map(v => v.id),
          hotkeys: () => HOTKEYS,
          activeViewportId: () => viewportGridService.getState().activeViewportId,
          activate: (viewportId: string) => args.servicesManager.services.viewportGridService.setActiveViewportId(viewportId),
          selectFinding: (key: string) => selectFinding(managers, key),
          referenceLines: () => referenceLinesState(managers),
          // the geometric level alone (what a finding without an axial key slice gets)
          levelAxials: (key: string) => {
            const f = store.getState().context?.draft?.findings.find(x => x.condition === key);
            return f ? levelAxials(managers, f, []) : Promise.resolve([]);
          },
          // where the current image lies on the page (the letterboxed image, not the whole canvas)
          imageRect: (viewportId: string) => {
            const viewport = args.servicesManager.services.cornerstoneViewportService.getCornerstoneViewport(viewportId);
            const imageId: string | undefined = viewport?.getCurrentImageId?.();
            if (!viewport || !imageId) return null;
            const { cornerstone } = cornerstoneLibraries(managers);
            const pixels = cornerstone.metaData.get('imagePixelModule', imageId);
            const page = viewport.canvas.getBoundingClientRect();
            const [a, b] = [[0, 0], [pixels.columns, pixels.rows]].map(p =>
              viewport.worldToCanvas(cornerstone.utilities.imageToWorldCoords(imageId, p))
            );
            return { x: page.left + Math.min(a[0], b[0]), y: page.top + Math.min(a[1], b[1]), width: Math.abs(b[0] - a[0]), height: Math.abs(b[1] - a[1]) };
          },
          activateTool: (toolName: string) =>
            args.commandsManager.runCommand('setToolActive', { toolName, toolGroupId: 'default' }),
          state: () => store.getState(),
          showSeries: (viewportId: string, seriesUid: string) => showSeries(managers, viewportId, seriesUid),
          renderedImage: (viewportId: string) => renderedImage(managers, viewportId),
          // the box set the panel's "Save boxes" would send now (image, frame, pixels, condition)
          currentBoxes: () => {
            const state = store.getState();
            return currentBoxes(managers, state.context?.conditions ?? [], state.newBoxCondition || state.selected);
          },
          hydrate: (seriesUid: string, sopUid: string) => hydrateBoxes(managers, seriesUid, sopUid),
          displaySets: () =>
            args.servicesManager.services.displaySetService.getActiveDisplaySets().map((ds: any) => ({
              modality: ds.Modality,
              series_uid: ds.SeriesInstanceUID,
              sop_uid: ds.instance?.SOPInstanceUID ?? null,
              loaded: ds.isLoaded ?? null,
            })),
        };
        // the next study's code cache (warmup.ts): scheduled once the first image is drawn
        let cancelWarmup: () => void = () => undefined;
        cleanup = [
          unsubscribe,
          // the hidden frame that warms the browser's code cache is nobody reading
          isWarmupFrame() ? () => undefined : startReadingClock(),
          watchBoxes(managers),
          afterFirstImage(managers, () => {
            imageShown = true;
            relabel(managers);
            announceWarmupDrawn();
            cancelWarmup = scheduleWarmup();
          }),
          () => cancelWarmup(),
          linkReferenceLines(managers),
          announceCpuCameras(managers),
          watchNewBoxes(managers, () => relabel(managers)),
          () => delete (window as any).__spinereview,
          () => store.stop(),
          () => setApiSeries(null),
        ];
      },
      onModeExit(this: any, args: any) {
        cleanup.forEach(fn => fn());
        cleanup = [];
        base.onModeExit.call(this, args);
      },
    };
  },
};

export default mode;
