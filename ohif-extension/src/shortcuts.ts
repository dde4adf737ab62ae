/**
 * Keyboard shortcuts of the review: n / p next / previous finding, Shift+N next study,
 * Ctrl+Enter (or Cmd+Enter) sign-off. Single letters are ignored while typing in a text field.
 */
type Handlers = { nextFinding: () => void; previousFinding: () => void; nextStudy: () => void; signOff: () => void };

let handlers: Partial<Handlers> = {};

export function setShortcutHandlers(patch: Partial<Handlers>): void {
  handlers = { ...handlers, ...patch };
}

function typing(target: EventTarget | null): boolean {
  const el = target as HTMLElement | null;
  return !!el && (el.tagName === 'TEXTAREA' || el.tagName === 'INPUT' || el.tagName === 'SELECT' || el.isContentEditable);
}

function onKeyDown(event: KeyboardEvent): void {
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    handlers.signOff?.();
    return;
  }
  if (typing(event.target) || event.altKey || event.ctrlKey || event.metaKey) return;
  const action =
    event.key === 'N' && event.shiftKey ? handlers.nextStudy
    : event.key === 'n' ? handlers.nextFinding
    : event.key === 'p' ? handlers.previousFinding
    : undefined;
  if (action) {
    event.preventDefault();
    event.stopPropagation();
    action();
  }
}

export function installShortcuts(): () => void {
  window.addEventListener('keydown', onKeyDown, true);
  return () => window.removeEventListener('keydown', onKeyDown, true);
}
