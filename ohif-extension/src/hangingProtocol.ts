/**
 * Hanging protocol: sagittal T2, sagittal T1, sagittal STIR and axial T2 side by side, whatever
 * the study has (a missing series leaves its viewport empty rather than repeating another).
 * Series are matched on the custom attribute `spineSeriesKind` (seriesKind.ts).
 */
import { seriesKind } from './seriesKind';

export const PROTOCOL_ID = 'spinereview-spine';
export const KIND_ATTRIBUTE = 'spineSeriesKind';
export const VIEWPORTS = [
  { id: 'sagT2', kind: 'SAG_T2' },
  { id: 'sagT1', kind: 'SAG_T1' },
  { id: 'sagSTIR', kind: 'SAG_STIR' },
  { id: 'axT2', kind: 'AX_T2' },
] as const;

export function registerKindAttribute(hangingProtocolService: any): void {
  hangingProtocolService.addCustomAttribute(KIND_ATTRIBUTE, 'Spine series kind', (displaySet: any) => seriesKind(displaySet));
}

export const protocol = {
  id: PROTOCOL_ID,
  name: 'Spine review: sagittal T2 / T1 / STIR, axial T2',
  description: 'SpineReview: the four series a spine MRI read needs, side by side',
  protocolMatchingRules: [{ attribute: 'ModalitiesInStudy', constraint: { contains: ['MR'] }, weight: 1 }],
  toolGroupIds: ['default'],
  numberOfPriorsReferenced: 0,
  displaySetSelectors: Object.fromEntries(
    VIEWPORTS.map(v => [
      v.id,
      {
        seriesMatchingRules: [
          { attribute: KIND_ATTRIBUTE, constraint: { equals: { value: v.kind } }, required: true, weight: 10 },
          // prefer the series with more images when a kind occurs twice (e.g. a repeat)
          { attribute: 'numImageFrames', constraint: { greaterThan: { value: 1 } }, weight: 1 },
        ],
      },
    ])
  ),
  stages: [
    {
      id: 'spine',
      name: 'spine',
      viewportStructure: { layoutType: 'grid', properties: { rows: 1, columns: VIEWPORTS.length } },
      viewports: VIEWPORTS.map(v => ({
        viewportOptions: { viewportId: v.id, viewportType: 'stack', toolGroupId: 'default', allowUnmatchedView: true },
        displaySets: [{ id: v.id }],
      })),
    },
  ],
};
