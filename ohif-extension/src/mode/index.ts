/**
 * Spine review mode, built on OHIF's longitudinal mode (its tools, toolbar, SOP class handlers
 * and lifecycle) through `modeFactory({ loadModules })`: our hanging protocol, our panels on the
 * right, the study list's thumbnails on the left. Image viewports are the plain Cornerstone
 * viewport rather than the measurement-tracking one, so editing boxes never opens OHIF's
 * "track this series?" prompts: box corrections are saved through our own SR endpoint.
 */
import { api } from '../api';
import { watchBoxes } from '../boxes';
import { PROTOCOL_ID } from '../hangingProtocol';
import { FINDINGS_PANEL, MODE_ID, MODE_ROUTE, REPORT_PANEL } from '../ids';
import { ohifBuild } from '../ohifBuild';
import { selectFinding, stepFinding } from '../panels/FindingsPanel';
import { installShortcuts, setShortcutHandlers } from '../shortcuts';
import * as store from '../store';
import { boxHandles, hydrateBoxes, viewportState, type Managers } from '../viewerControl';

const EXTENSION_URL = new URL('./extension.js', import.meta.url).href;
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
        store.start(store.studyUidFromUrl(), pollSeconds());
        setShortcutHandlers({
          nextFinding: () => stepFinding(managers, 1),
          previousFinding: () => stepFinding(managers, -1),
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
        // read-only hooks for the end-to-end tests and for support ("what does the viewer show?")
        (window as any).__spinereview = {
          viewportState: () => viewportState(managers),
          boxHandles: (viewportId: string) => boxHandles(managers, viewportId),
          activate: (viewportId: string) => args.servicesManager.services.viewportGridService.setActiveViewportId(viewportId),
          selectFinding: (key: string) => selectFinding(managers, key),
          state: () => store.getState(),
          hydrate: (seriesUid: string, sopUid: string) => hydrateBoxes(managers, seriesUid, sopUid),
          displaySets: () =>
            args.servicesManager.services.displaySetService.getActiveDisplaySets().map((ds: any) => ({
              modality: ds.Modality,
              series_uid: ds.SeriesInstanceUID,
              sop_uid: ds.instance?.SOPInstanceUID ?? null,
              loaded: ds.isLoaded ?? null,
            })),
        };
        cleanup = [installShortcuts(), watchBoxes(managers), () => delete (window as any).__spinereview, () => store.stop()];
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
