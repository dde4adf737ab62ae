/**
 * The OHIF build this extension was made for, and the React instance inside it.
 *
 * Why: OHIF 3.13.2 loads our bundle with a native import() but exposes no React global, and
 * panels must use OHIF's own React (18.3.1) for hooks to work. The bundle's chunk-loading global
 * `rspackChunk` runs the runtime callback of a pushed chunk with the bundle's internal `require`;
 * we take that `require`, find React by scanning the module table (not by a fixed module id) and
 * require it (already loaded, so the same instance). This depends on the exact build: we check
 * the app bundle's content hash and React's version first and refuse to load otherwise, with a
 * message on screen (docs/viewer.md, "What we rely on in OHIF"). OHIF 3.14+ has an official runtime-plugin contract: move there.
 */

export const OHIF_VERSION = '3.13.2';
export const OHIF_APP_BUNDLE = 'app.bundle.0f6159c501addfe9.js'; // content hash of @ohif/app 3.13.2
export const REACT_VERSION = '18.3.1';

export class OhifBuildError extends Error {}

type RspackRequire = ((id: string | number) => any) & { m: Record<string, (...args: unknown[]) => void> };

function appBundleName(): string | null {
  const script = Array.from(document.scripts).find(s => /\/app\.bundle\.[0-9a-f]+\.js$/.test(s.src));
  return script ? script.src.split('/').pop() ?? null : null;
}

function captureRequire(): RspackRequire {
  const chunks = (globalThis as any).rspackChunk;
  if (!chunks || typeof chunks.push !== 'function') {
    throw new OhifBuildError('the viewer has no rspackChunk loader (not the OHIF 3.13.2 prebuilt build)');
  }
  let req: RspackRequire | undefined;
  // a chunk id nobody uses, so the loader runs our runtime callback with its require
  chunks.push([[`spinereview-probe-${Date.now()}-${Math.random()}`], {}, (r: RspackRequire) => (req = r)]);
  if (typeof req !== 'function' || typeof req.m !== 'object') {
    throw new OhifBuildError('rspackChunk did not hand out the module loader');
  }
  return req;
}

function findReact(req: RspackRequire): any {
  const marker = `exports.version="${REACT_VERSION}"`;
  for (const [id, factory] of Object.entries(req.m)) {
    const source = Function.prototype.toString.call(factory);
    if (source.includes(marker) && source.includes('exports.useState=')) {
      const react = req(id);
      if (react?.version === REACT_VERSION && typeof react.useState === 'function') {
        return react;
      }
    }
  }
  throw new OhifBuildError(`React ${REACT_VERSION} not found in the viewer's module table`);
}

function showRefusal(message: string): void {
  const banner = document.createElement('div');
  banner.setAttribute('role', 'alert');
  banner.dataset.spinereview = 'refused';
  banner.textContent = `SpineReview extension not loaded: ${message}`;
  banner.style.cssText =
    'position:fixed;top:0;left:0;right:0;z-index:100000;padding:10px 16px;background:#7f1d1d;' +
    'color:#fff;font:14px/1.4 system-ui,sans-serif';
  const add = () => document.body.appendChild(banner);
  if (document.body) add();
  else window.addEventListener('DOMContentLoaded', add);
}

export interface OhifBuild {
  ok: boolean;
  error?: string;
  React?: any;
}

function load(): OhifBuild {
  try {
    const bundle = appBundleName();
    if (bundle !== OHIF_APP_BUNDLE) {
      throw new OhifBuildError(
        `this OHIF build (${bundle ?? 'unknown app bundle'}) differs from the pinned ${OHIF_VERSION} (${OHIF_APP_BUNDLE})`
      );
    }
    return { ok: true, React: findReact(captureRequire()) };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    console.error('[spinereview]', message);
    showRefusal(message);
    return { ok: false, error: message };
  }
}

export const ohifBuild: OhifBuild = ((globalThis as any).__spinereviewOhifBuild ??= load());
