/**
 * Stand-in for the `react` package (esbuild alias): OHIF's own React instance. Panels import
 * hooks from 'react' as usual. When the build guard refused, every hook throws a clear error.
 */
import { ohifBuild } from './ohifBuild';

const React: any =
  ohifBuild.React ??
  new Proxy(
    {},
    {
      get: () => {
        throw new Error(`SpineReview: React unavailable (${ohifBuild.error})`);
      },
    }
  );

export default React;
export const createElement = (...args: any[]) => React.createElement(...args);
export const useState = <T,>(initial: T | (() => T)) => React.useState(initial) as [T, (v: T | ((p: T) => T)) => void];
export const useEffect = (fn: () => void | (() => void), deps?: unknown[]) => React.useEffect(fn, deps);
export const useCallback = <T extends (...args: any[]) => any>(fn: T, deps: unknown[]) => React.useCallback(fn, deps) as T;
export const useMemo = <T,>(fn: () => T, deps: unknown[]) => React.useMemo(fn, deps) as T;
export const useRef = <T,>(initial: T) => React.useRef(initial) as { current: T };
export const Fragment = ohifBuild.React?.Fragment;
