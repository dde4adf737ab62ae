/**
 * The patient's prior studies beside the draft: the list (date, description, whether a signed
 * report exists), the most recent prior's signed report (collapsible), and "Side by side", which
 * reopens the viewer with both studies (`StudyInstanceUIDs=current,prior`) under OHIF's comparison
 * hanging protocol (`@ohif/hpCompare`: the current study's images left, the prior's right); our
 * panels keep reading the first UID, the current study. The server decides what the reader may
 * see of a prior's report (signed reports only; a blinded prior without its reader's name).
 */
import React from 'react';
import type { Prior } from '../api';
import { MODE_ROUTE } from '../ids';

export const COMPARE_PROTOCOL = '@ohif/hpCompare';

export function compareUrl(currentUid: string, priorUid: string): string {
  const uids = [currentUid, priorUid].map(encodeURIComponent).join(',');
  return `/${MODE_ROUTE}?StudyInstanceUIDs=${uids}&hangingProtocolId=${encodeURIComponent(COMPARE_PROTOCOL)}`;
}

function when(p: Prior): string {
  return p.study_date ?? 'date unknown';
}

export function PriorsView({ priors, currentUid }: { priors: Prior[]; currentUid: string }) {
  if (!priors.length) return <div className="sr-muted" data-testid="sr-priors-none">No prior studies of this patient.</div>;
  const withReport = priors.find(p => p.report);
  return (
    <div data-testid="sr-priors">
      {withReport?.report && (
        <details className="sr-prior" open data-testid="sr-prior-report" data-study-uid={withReport.study_uid}>
          <summary>
            Prior report {when(withReport)}
            {withReport.description ? ` · ${withReport.description}` : ''}
            {withReport.report.reader ? ` · signed by ${withReport.report.reader}` : ' · signed'}
            {withReport.report.is_addendum ? ' (with addendum)' : ''}
          </summary>
          <pre>{withReport.report.text}</pre>
        </details>
      )}
      <ul className="sr-slices">
        {priors.map(p => (
          <li key={p.study_uid} className="sr-row" data-prior={p.study_uid}>
            <span>
              {when(p)} {p.description}
              <span className="sr-muted"> · {p.report ? 'signed report' : 'no signed report'}</span>
            </span>
            <a className="sr-btn sr-secondary sr-small" data-testid="sr-prior-compare" href={compareUrl(currentUid, p.study_uid)}>
              Side by side
            </a>
          </li>
        ))}
      </ul>
    </div>
  );
}
