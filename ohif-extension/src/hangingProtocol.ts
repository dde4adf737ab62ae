/**
 * Hanging protocol: sagittal T2, sagittal T1, sagittal STIR (or another fat-suppressed T2) and
 * axial T2 side by side, filled from the app's own series classifier (class, subtype and plane
 * of every series, from the study context API), so vendor naming does not matter: Siemens'
 * `t2_tirm_sag`, Philips' `T2W_mDIXON_SAG_W`, Canon's `Sag FST2` all land where they belong.
 *
 * Each viewport slot ranks the series by preference tiers (e.g. STIR slot: STIR, then Dixon
 * water, then a fat-suppressed T2); a slot whose preferred sequences the study lacks takes the
 * next best series (NEXT_BEST: for the STIR slot a T2-weighted one before a T1), never stays blank. The custom attribute
 * `spineSlot_<id>` is true for the one display set chosen for that slot. Until the study context
 * has arrived, the choice falls back to the description and timing heuristics of seriesKind.ts,
 * and the protocol is applied again once the classes are known (mode/index.ts).
 */
import type { Series } from './api';
import { planeOf, seriesKind } from './seriesKind';

export const PROTOCOL_ID = 'spinereview-spine';
export const VIEWPORTS = [
  { id: 'sagT2', plane: 'sagittal' },
  { id: 'sagT1', plane: 'sagittal' },
  { id: 'sagSTIR', plane: 'sagittal' },
  { id: 'axT2', plane: 'axial' },
] as const;
export type SlotId = (typeof VIEWPORTS)[number]['id'];

/** What a series is, as far as the slots care (from our API, else from the DICOM header). */
export interface SeriesInfo {
  series_uid: string;
  plane: string; // sagittal | axial | coronal | oblique | unknown | ''
  subtype: string; // the classifier's subtype: T1, T2, STIR, DIXON_WATER, T1_POSTCONTRAST, ...
  description: string;
  images: number;
  number: number;
}

const FAT_SUPPRESSED = /(\bFS\b|FAT ?SAT|FATSAT|SPAIR|SPIR|\bFST2\b|\bFS_?T2\b|\bT2_?FS\b|\bCHESS\b)/i;
const NOT_IMAGES = new Set(['LOCALIZER', 'DWI', 'ADC', 'PARAMETRIC_MAP']);

/** Preference tiers per slot: a series in an earlier tier always beats one in a later tier. */
const TIERS: Record<SlotId, Array<(s: SeriesInfo) => boolean>> = {
  sagT2: [
    s => s.plane === 'sagittal' && s.subtype === 'T2' && !FAT_SUPPRESSED.test(s.description),
    s => s.plane === 'sagittal' && (s.subtype === 'DIXON_IN_PHASE' || s.subtype === 'DIXON'),
    s => s.plane === 'sagittal' && s.subtype === 'T2',
    s => s.plane === 'sagittal' && (s.subtype === 'DIXON_WATER' || s.subtype === 'FLAIR' || s.subtype === 'PD'),
  ],
  sagT1: [
    s => s.plane === 'sagittal' && s.subtype === 'T1',
    s => s.plane === 'sagittal' && s.subtype === 'T1_POSTCONTRAST',
    s => s.plane === 'sagittal' && (s.subtype === 'DIXON_OPP_PHASE' || s.subtype === 'DIXON_FAT'),
  ],
  sagSTIR: [
    s => s.plane === 'sagittal' && s.subtype === 'STIR',
    s => s.plane === 'sagittal' && s.subtype === 'DIXON_WATER',
    s => s.plane === 'sagittal' && s.subtype === 'T2' && FAT_SUPPRESSED.test(s.description),
  ],
  axT2: [
    s => s.plane === 'axial' && s.subtype === 'T2',
    s => s.plane === 'axial' && ['DIXON_WATER', 'DIXON_IN_PHASE', 'DIXON', 'STIR', 'FLAIR', 'PD'].includes(s.subtype),
    s => s.plane === 'axial' && ['T1', 'T1_POSTCONTRAST'].includes(s.subtype),
  ],
};

// T2-weighted by the classifier's subtypes (ml/dicom/series_classifier.py SUBTYPE_CLASS), less
// Dixon fat / opposed-phase, which show fat bright as a T1 does
const T2_WEIGHTED = new Set(['T2', 'STIR', 'FLAIR', 'DIXON', 'DIXON_IN_PHASE', 'DIXON_WATER']);
const T1_WEIGHTED = new Set(['T1', 'T1_POSTCONTRAST', 'DIXON_OPP_PHASE', 'DIXON_FAT']);

/**
 * A slot's next best when the study has none of its tiers, ranked before images and series
 * number: the fat-suppressed slot shows a T2-weighted series (a T2 reads the oedema a STIR would
 * best; a T1 shows it dark), the T2 slots another T2-weighted one, the T1 slot a T1-weighted one.
 * Without it, a study lacking a STIR repeated whichever sagittal series had the lower number
 * (often the T1).
 */
const NEXT_BEST: Record<SlotId, Array<(s: SeriesInfo) => boolean>> = {
  sagT2: [s => T2_WEIGHTED.has(s.subtype)],
  sagSTIR: [s => s.subtype === 'T2', s => T2_WEIGHTED.has(s.subtype)],
  sagT1: [s => T1_WEIGHTED.has(s.subtype)],
  axT2: [s => T2_WEIGHTED.has(s.subtype)],
};

function better(a: SeriesInfo, b: SeriesInfo): boolean {
  return a.images !== b.images ? a.images > b.images : a.number < b.number;
}

function rank(slot: SlotId, s: SeriesInfo): number {
  const i = NEXT_BEST[slot].findIndex(tier => tier(s));
  return i < 0 ? NEXT_BEST[slot].length : i;
}

/**
 * series_uid per slot. Slots are filled in order of how specific they are; a series already
 * used is taken again only when nothing else is left. A slot with no series of its tiers takes
 * the next best unused image series (same plane first), so no viewport stays blank while the
 * study has images.
 */
export function assignSlots(series: SeriesInfo[]): Record<SlotId, string | null> {
  const images = series.filter(s => s.images > 0 && !NOT_IMAGES.has(s.subtype));
  const used = new Set<string>();
  const out = {} as Record<SlotId, string | null>;
  const pick = (candidates: SeriesInfo[]): SeriesInfo | null =>
    candidates.reduce<SeriesInfo | null>((best, s) => (!best || better(s, best) ? s : best), null);
  const pending: SlotId[] = [];
  for (const slot of ['sagT2', 'sagSTIR', 'sagT1', 'axT2'] as SlotId[]) {
    let chosen: SeriesInfo | null = null;
    for (const tier of TIERS[slot]) {
      chosen = pick(images.filter(s => tier(s) && !used.has(s.series_uid)));
      if (chosen) break;
    }
    if (chosen) {
      used.add(chosen.series_uid);
      out[slot] = chosen.series_uid;
    } else {
      pending.push(slot);
    }
  }
  for (const slot of pending) {
    const plane = VIEWPORTS.find(v => v.id === slot)!.plane;
    const free = images.filter(s => !used.has(s.series_uid));
    const pickNext = (candidates: SeriesInfo[]): SeriesInfo | null =>
      candidates.reduce<SeriesInfo | null>((best, s) => {
        if (!best) return s;
        const [rs, rb] = [rank(slot, s), rank(slot, best)];
        return rs !== rb ? (rs < rb ? s : best) : better(s, best) ? s : best;
      }, null);
    const chosen =
      pickNext(free.filter(s => s.plane === plane)) ??
      pickNext(free) ??
      pickNext(images.filter(s => s.plane === plane)) ??
      pickNext(images);
    if (chosen) used.add(chosen.series_uid);
    out[slot] = chosen?.series_uid ?? null;
  }
  return out;
}

/** Our API's series (the classifier's view). */
export function fromApi(series: Series[]): SeriesInfo[] {
  return series.map(s => ({
    series_uid: s.series_uid,
    plane: s.plane || '',
    subtype: s.sequence_subtype || '',
    description: s.description || '',
    images: s.instance_count ?? 1,
    number: s.series_number ?? 0,
  }));
}

/** The DICOM header's view, before our API has answered (seriesKind.ts heuristics). */
export function fromDisplaySets(displaySets: any[]): SeriesInfo[] {
  return displaySets
    .filter(ds => ds?.Modality === 'MR')
    .map(ds => {
      const instance = ds.instance ?? ds.instances?.[0] ?? {};
      const kind = seriesKind(ds);
      return {
        series_uid: ds.SeriesInstanceUID,
        plane: planeOf(instance.ImageOrientationPatient),
        subtype: kind === 'SAG_STIR' ? 'STIR' : kind ? kind.slice(kind.indexOf('_') + 1) : '',
        description: String(ds.SeriesDescription ?? ''),
        images: ds.numImageFrames ?? ds.instances?.length ?? 1,
        number: Number(ds.SeriesNumber ?? 0),
      };
    });
}

let apiSeries: SeriesInfo[] | null = null;
let cache: { key: string; slots: Record<SlotId, string | null> } | null = null;

/** Called when the study context arrives: from now on slots follow the classifier. */
export function setApiSeries(series: Series[] | null): void {
  apiSeries = series ? fromApi(series) : null;
  cache = null;
}

export function currentSlots(displaySetService: any): Record<SlotId, string | null> {
  const displaySets = displaySetService?.getActiveDisplaySets?.() ?? [];
  const present = new Set(displaySets.map((ds: any) => ds.SeriesInstanceUID));
  const source = apiSeries ? apiSeries.filter(s => present.has(s.series_uid)) : fromDisplaySets(displaySets);
  const key = `${apiSeries ? 'api' : 'dicom'}:${source.map(s => s.series_uid).sort().join(',')}`;
  if (!cache || cache.key !== key) cache = { key, slots: assignSlots(source) };
  return cache.slots;
}

export function registerSlotAttributes(hangingProtocolService: any, displaySetService: () => any): void {
  for (const v of VIEWPORTS) {
    hangingProtocolService.addCustomAttribute(
      `spineSlot_${v.id}`,
      `Spine slot ${v.id}`,
      (displaySet: any) => currentSlots(displaySetService())[v.id] === displaySet.SeriesInstanceUID
    );
  }
}

export const protocol = {
  id: PROTOCOL_ID,
  name: 'Spine review: sagittal T2 / T1 / STIR, axial T2',
  description: 'SpineReview: the four series a spine MRI read needs, side by side, from the series classifier',
  protocolMatchingRules: [{ attribute: 'ModalitiesInStudy', constraint: { contains: ['MR'] }, weight: 1 }],
  toolGroupIds: ['default'],
  numberOfPriorsReferenced: 0,
  displaySetSelectors: Object.fromEntries(
    VIEWPORTS.map(v => [
      v.id,
      {
        seriesMatchingRules: [
          { attribute: `spineSlot_${v.id}`, constraint: { equals: { value: true } }, required: true, weight: 10 },
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
        viewportOptions: {
          viewportId: v.id,
          viewportType: 'stack',
          toolGroupId: 'default',
          allowUnmatchedView: true,
          // the reading starts mid-stack: for a sagittal series sorted by position, the slice
          // at the middle of the slab (the canal, not a far-lateral slice); for the axial, the
          // middle level of the stack until a finding is selected
          initialImageOptions: { preset: 'middle' },
        },
        displaySets: [{ id: v.id }],
      })),
    },
  ],
};
