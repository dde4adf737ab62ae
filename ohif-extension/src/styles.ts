/** Our own styles (OHIF's CSS only has the Tailwind classes OHIF itself uses). */
const CSS = `
.sr-panel{font:13px/1.4 system-ui,sans-serif;color:#e5e7eb;padding:8px;display:flex;flex-direction:column;gap:8px;height:100%;overflow:auto}
.sr-panel>*{flex-shrink:0}
.sr-panel h3{margin:4px 0;font-size:13px;color:#93c5fd;text-transform:uppercase;letter-spacing:.04em}
.sr-error{background:#7f1d1d;color:#fff;padding:6px 8px;border-radius:4px;white-space:pre-wrap}
.sr-note{background:#1e3a5f;padding:6px 8px;border-radius:4px}
.sr-ok{color:#86efac}
.sr-muted{color:#9ca3af}
.sr-findings{list-style:none;margin:0;padding:0}
.sr-finding{display:grid;grid-template-columns:1fr auto;gap:2px 8px;padding:4px 6px;border-radius:4px;cursor:pointer;border:1px solid transparent}
.sr-finding:hover{background:#1f2937}
.sr-finding.sr-selected{border-color:#60a5fa;background:#172554}
.sr-finding.sr-present .sr-name{color:#fca5a5;font-weight:600}
.sr-prob{font-variant-numeric:tabular-nums}
.sr-meta{grid-column:1/3;color:#9ca3af;font-size:12px}
.sr-row{display:flex;gap:6px;align-items:center;flex-wrap:wrap}
.sr-btn{background:#1d4ed8;color:#fff;border:0;border-radius:4px;padding:4px 10px;cursor:pointer;font-size:12px}
.sr-btn:disabled{background:#374151;color:#9ca3af;cursor:default}
.sr-btn.sr-secondary{background:#374151}
a.sr-btn{text-decoration:none}
.sr-slices{list-style:none;margin:0;padding:0}
.sr-slices li{padding:2px 6px;cursor:pointer;border-radius:3px}
.sr-slices li.sr-current{background:#1e40af}
.sr-section label{display:block;color:#93c5fd;font-size:12px;margin-top:4px}
.sr-panel select{flex:1;min-width:0;background:#0b1220;color:#e5e7eb;border:1px solid #374151;border-radius:4px;padding:2px 4px;font-size:12px}
.sr-section textarea,.sr-panel textarea{width:100%;box-sizing:border-box;background:#0b1220;color:#e5e7eb;border:1px solid #374151;border-radius:4px;padding:4px;font:12px/1.4 ui-monospace,monospace;resize:vertical}
.sr-diff{white-space:pre-wrap;font:12px/1.4 ui-monospace,monospace;background:#0b1220;padding:6px;border-radius:4px}
.sr-del{background:#7f1d1d;text-decoration:line-through}
.sr-ins{background:#14532d}
.sr-radpeer{display:grid;grid-template-columns:auto 1fr;gap:2px 6px;align-items:start}
.sr-similar{background:#111827;padding:6px;border-radius:4px;white-space:pre-wrap;font-size:12px;max-height:160px;overflow:auto}
.sr-conflict{border:1px solid #f59e0b;padding:6px;border-radius:4px;background:#2a1f05}
.sr-conflict pre{white-space:pre-wrap;max-height:140px;overflow:auto;background:#0b1220;padding:4px}
.sr-tabs{display:flex;gap:4px}
.sr-kbd{font:11px ui-monospace,monospace;background:#374151;padding:0 4px;border-radius:3px}
.sr-small{padding:1px 6px;font-size:11px}
.sr-verdict{grid-column:1/3;font-size:12px}
.sr-verdict-agree{color:#86efac}.sr-verdict-disagree{color:#fca5a5}.sr-verdict-correct{color:#fcd34d}
.sr-verdict-buttons{grid-column:1/3;display:flex;gap:4px;flex-wrap:wrap}
.sr-swatch{display:inline-block;width:8px;height:8px;border-radius:2px;margin-right:4px}
.sr-toggle{display:inline-flex;gap:3px;align-items:center;border-left:4px solid;padding-left:4px;font-size:12px}
.sr-keys{list-style:none;margin:0;padding:0;font-size:12px;color:#9ca3af;columns:2}
`;

export function injectStyles(): void {
  if (document.getElementById('spinereview-styles')) return;
  const style = document.createElement('style');
  style.id = 'spinereview-styles';
  style.textContent = CSS;
  document.head.appendChild(style);
}
