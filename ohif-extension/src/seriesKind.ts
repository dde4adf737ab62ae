/**
 * What kind of spine series a display set is: "SAG_T2", "SAG_T1", "SAG_STIR", "AX_T2", or "".
 *
 * Plane from ImageOrientationPatient (the normal's dominant axis), contrast from the series
 * description with the timing parameters as a fallback (the same evidence order as the app's
 * classifier, ml/dicom/series_classifier.py, kept deliberately small here: the hanging protocol
 * only has to put the right series in the right viewport, never to label data).
 */

export type SeriesKind = 'SAG_T2' | 'SAG_T1' | 'SAG_STIR' | 'AX_T2' | '';

function num(value: unknown): number | null {
  const v = Array.isArray(value) ? value[0] : value;
  const n = typeof v === 'string' ? parseFloat(v) : typeof v === 'number' ? v : NaN;
  return Number.isFinite(n) ? n : null;
}

export function planeOf(iop: unknown): 'sagittal' | 'coronal' | 'axial' | '' {
  if (!Array.isArray(iop) || iop.length !== 6) return '';
  const [a, b, c, d, e, f] = iop.map(Number);
  const normal = [b * f - c * e, c * d - a * f, a * e - b * d].map(Math.abs);
  const axis = normal.indexOf(Math.max(...normal));
  return (['sagittal', 'coronal', 'axial'] as const)[axis];
}

export function contrastOf(instance: Record<string, any>, description: string): 'T1' | 'T2' | 'STIR' | '' {
  const text = description.toUpperCase();
  if (/\b(STIR|TIRM|SPAIR|FAT ?SAT)\b/.test(text) && !/\bT1\b/.test(text)) return 'STIR';
  if (/\b(C\+|POST|GAD|GD|DWI|ADC|LOC|SCOUT)\b/.test(text)) return '';
  if (/T2/.test(text)) return 'T2';
  if (/T1/.test(text)) return 'T1';
  const tr = num(instance.RepetitionTime);
  const te = num(instance.EchoTime);
  const ti = num(instance.InversionTime);
  if (ti !== null && ti > 80 && ti < 250) return 'STIR';
  if (tr !== null && te !== null) {
    if (tr < 1000 && te < 30) return 'T1';
    if (tr > 2000 && te > 60) return 'T2';
  }
  return '';
}

export function seriesKind(displaySet: Record<string, any>): SeriesKind {
  if (displaySet?.Modality !== 'MR') return '';
  const instance = displaySet.instance ?? displaySet.instances?.[0] ?? {};
  const plane = planeOf(instance.ImageOrientationPatient);
  const contrast = contrastOf(instance, String(displaySet.SeriesDescription ?? instance.SeriesDescription ?? ''));
  if (plane === 'sagittal' && contrast) return `SAG_${contrast}` as SeriesKind;
  if (plane === 'axial' && contrast === 'T2') return 'AX_T2';
  return '';
}
