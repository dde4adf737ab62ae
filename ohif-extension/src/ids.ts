/** Ids from package.json, and the module ids the mode refers to. */
import pkg from '../package.json';

export const EXTENSION_ID: string = pkg.name;
export const EXTENSION_VERSION: string = pkg.version;
export const MODE_ID = '@spinereview/mode-spine-review';
export const MODE_ROUTE = 'spine-review'; // reviewer/viewer.py MODE_ROUTE
export const FINDINGS_PANEL = `${EXTENSION_ID}.panelModule.findings`;
export const REPORT_PANEL = `${EXTENSION_ID}.panelModule.report`;
