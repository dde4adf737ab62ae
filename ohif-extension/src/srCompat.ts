/**
 * OHIF 3.13.2's SR loader matches every measurement group of an SR to the images by its first
 * coordinate (`measurement.coords[0].ReferencedSOPSequence`). A group without coordinates (our
 * key-slice groups, or any non-geometric measurement another system wrote) throws a TypeError
 * there, which aborts the matching of every other group: no box of the SR would load. This
 * customization (the loader's documented `onBeforeSRAddMeasurement` hook) hands the loader a
 * harmless stand-in for such groups, so they match nothing and the boxes load.
 */
const NO_IMAGE = { ReferencedSOPSequence: { ReferencedSOPInstanceUID: '' } };

export function onBeforeSRAddMeasurement({ measurement }: { measurement: any }): any {
  if (measurement && Array.isArray(measurement.coords) && measurement.coords.length === 0) {
    return { ...measurement, coords: [NO_IMAGE] };
  }
  return measurement;
}
