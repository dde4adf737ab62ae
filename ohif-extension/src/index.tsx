/**
 * The SpineReview OHIF extension (loaded at runtime by URL from app-config.js): our two panels,
 * the spine hanging protocol and the slot attributes it matches on, the review commands. One file per module.
 */
import React from 'react';
import { registerSlotAttributes, PROTOCOL_ID, protocol } from './hangingProtocol';
import { EXTENSION_ID, EXTENSION_VERSION } from './ids';
import { ohifBuild } from './ohifBuild';
import { FindingsPanel } from './panels/FindingsPanel';
import { ReportPanel } from './panels/ReportPanel';
import { commandsModule } from './review';
import { onBeforeSRAddMeasurement } from './srCompat';
import { injectStyles } from './styles';

const extension = ohifBuild.ok
  ? {
      id: EXTENSION_ID,
      version: EXTENSION_VERSION,
      preRegistration({ servicesManager }: any) {
        injectStyles();
        registerSlotAttributes(servicesManager.services.hangingProtocolService, () => servicesManager.services.displaySetService);
      },
      getPanelModule({ servicesManager, commandsManager, extensionManager }: any) {
        const managers = { servicesManager, commandsManager, extensionManager };
        const Findings = () => <FindingsPanel {...managers} />;
        const Report = () => <ReportPanel />;
        return [
          { name: 'findings', iconName: 'tab-linear', iconLabel: 'Findings', label: 'Findings', component: Findings },
          { name: 'report', iconName: 'tab-patient-info', iconLabel: 'Report', label: 'Report', component: Report },
        ];
      },
      getCommandsModule({ servicesManager, commandsManager, extensionManager }: any) {
        return commandsModule({ servicesManager, commandsManager, extensionManager });
      },
      getCustomizationModule() {
        return [{ name: 'global', value: { onBeforeSRAddMeasurement } }];
      },
      getHangingProtocolModule() {
        return [{ name: PROTOCOL_ID, protocol }];
      },
    }
  : { id: EXTENSION_ID, version: EXTENSION_VERSION }; // refused: registers nothing (banner shown)

export default extension;
