"""The reference readers of `radsight validate` on real files: the shared real chest CT set's
LUNA16 rows, LIDC reader XML, Lung-PET-CT-Dx VOC boxes, IBSI RTSTRUCT and NIfTI mask; and DICOM
SEG and TID 1500 SR references written here by highdicom and read back. Figures checked against
numbers stated independently (the data sets' PROVENANCE.txt and what the test itself wrote)."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from tests.dicom_factory import write_series
from viewer.dicom import load_series, open_path
from viewer.validation.discovery import discover
from viewer.validation.formats.labelmap import LabelMap
from viewer.validation.formats.lidc_xml import LidcXml
from viewer.validation.formats.luna_csv import LunaCsv
from viewer.validation.formats.rtstruct import RtStruct
from viewer.validation.formats.seg import SegReference
from viewer.validation.formats.sr import SrReference
from viewer.validation.lesion import ReferenceError, Target
from viewer.validation.matching import dice

LUNA_CENTRE = (72.28670656, 76.90023946, -190.4589276)


def _targets(folder):
    series_list, _ = open_path(folder)
    out = []
    for series in series_list:
        volume = load_series(series)
        out.append(Target.from_series(series, volume))
    return out


@pytest.fixture(scope="module")
def real(shared_testdata):
    return shared_testdata / "real_ct"


@pytest.fixture(scope="module")
def lidc_target(real):
    [target] = _targets(real / "lidc_idri_0003_slab")
    return target


def test_luna16_rows_quoted_in_a_text_file(real, lidc_target):
    reference = LunaCsv.from_file(real / "lidc_idri_0003_slab" / "ANNOTATIONS_derived_from_xml.txt")
    assert len(reference.rows) == 3
    attached = reference.attach(lidc_target)
    assert attached.matched_by == "Series Instance UID"
    [lesion] = attached.lesions  # the other two nodules lie above the 11-slice slab
    assert len(attached.notes) == 2 and all("outside the series" in n for n in attached.notes)
    assert lesion.diameter_mm == pytest.approx(21.45372882)
    edge = np.array(LUNA_CENTRE) + [0, 0, 10.5]
    assert lesion.contains([LUNA_CENTRE, edge, np.array(LUNA_CENTRE) + [0, 0, 11.0]]).tolist() == [True, True, False]


def test_lidc_readers_clustered_into_one_lesion(real, lidc_target):
    [xml] = (real / "lidc_idri_0003_slab").rglob("*.xml")
    reference = LidcXml.from_file(xml)
    assert reference.readers == 4
    attached = reference.attach(lidc_target)
    [lesion] = attached.lesions
    assert (lesion.readers, lesion.readers_total, lesion.counts) == (4, 4, True)
    assert lesion.contains([LUNA_CENTRE])[0]
    # Independent statement (PROVENANCE / ANNOTATIONS_derived_from_xml): 28-35 mm reader extents,
    # LUNA16 diameter 21.5 mm; the consensus diameter lies between.
    assert 20.0 < lesion.diameter_mm < 35.0
    assert np.linalg.norm(np.subtract(lesion.centre_lps_mm, LUNA_CENTRE)) < 3.0
    # The union of contours is at least as large as the 50% consensus mask.
    assert lesion.region.voxels.sum() >= lesion.mask.voxels.sum() > 0


def test_voc_boxes_make_one_lesion_per_series(real):
    folder = real / "lung_pet_ct_dx_A0002"
    found = discover(folder)
    [boxes] = [r for r in found.references if r.format == "PASCAL VOC boxes"]
    assert len(boxes.slices) == 18
    targets = _targets(folder)
    assert len(targets) == 2
    total = 0
    for target in targets:
        attached = boxes.attach(target)
        [lesion] = attached.lesions
        total += len(lesion.boxes)
        ks = sorted(b.k for b in lesion.boxes)
        assert ks == list(range(ks[0], ks[-1] + 1))  # consecutive slices
        # A box's centre on its slice is inside; the same point two slices beyond the stack is not.
        box = lesion.boxes[0]
        inside = target.volume.index_to_lps([(box.i0 + box.i1) / 2, (box.j0 + box.j1) / 2, box.k])
        beyond = target.volume.index_to_lps([(box.i0 + box.i1) / 2, (box.j0 + box.j1) / 2, ks[0] - 2])
        assert lesion.contains([inside, beyond]).tolist() == [True, False]
        # PROVENANCE: boxes z 176..248 mm, centres x -65..-43, y -111..-92 mm (LPS).
        x, y, z = lesion.centre_lps_mm
        assert -66 < x < -42 and -112 < y < -91 and 176 <= z <= 248
    assert total == 18


def test_rtstruct_and_nifti_mask_agree(real):
    [target] = _targets(real / "ibsi1_nsclc_crop" / "dicom" / "image")
    rt = RtStruct.from_file(next((real / "ibsi1_nsclc_crop" / "dicom" / "mask").glob("*.dcm")))
    [from_rt] = rt.attach(target).lesions
    assert rt.attach(target).matched_by == "Series Instance UID"
    label_map = LabelMap.from_file(real / "ibsi1_nsclc_crop" / "nifti" / "mask" / "mask.nii.gz")
    attached = label_map.attach(target)
    assert attached.matched_by == "geometry (same grid)"
    [from_nifti] = attached.lesions
    # PROVENANCE: 125,256 voxels = 358.7 ml; centroid about (-74.5, 16.3, -18.7) mm.
    assert from_nifti.mask.voxels.sum() == 125256
    assert from_nifti.volume_mm3 == pytest.approx(358.7e3, rel=2e-3)
    assert np.allclose(from_nifti.centre_lps_mm, (-74.5, 16.3, -18.7), atol=0.3)
    assert from_rt.volume_mm3 == pytest.approx(from_nifti.volume_mm3, rel=0.03)
    assert dice(from_rt.mask, from_nifti.mask) > 0.95


def test_discovery_of_the_real_set(real):
    found = discover(real)
    assert len(found.cases) == 5  # COVID, LIDC slab, two Lung-PET-CT-Dx reconstructions, IBSI crop (DICOM only)
    assert sorted(r.format for r in found.references) == ["LIDC XML", "LUNA16 CSV", "PASCAL VOC boxes", "RTSTRUCT",
                                                          "label map"]
    assert not found.warnings


@pytest.fixture(scope="module")
def small_series(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seg-sr")
    truth = write_series(folder / "ct", shape_zyx=(10, 32, 36), spacing_xy=(0.8, 0.8), step=2.0)
    series = open_path(folder / "ct")[0][0]
    volume = load_series(series)
    return folder, truth, Target.from_series(series, volume), [pydicom.dcmread(p) for p in sorted(truth["paths"])]


def _source_images(datasets, volume):
    for ds in datasets:
        ds.PatientID, ds.PatientName, ds.StudyDate, ds.StudyTime = "TEST", "Test^Patient", "20250101", "120000"
        ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID, ds.PatientSex, ds.PatientBirthDate = "", "", "1", "O", ""
        ds.Manufacturer = "test"
    return sorted(datasets, key=lambda d: volume.lps_to_index([float(v) for v in d.ImagePositionPatient])[2])


def test_seg_written_by_highdicom_read_back(small_series):
    folder, truth, target, datasets = small_series
    images = _source_images(datasets, target.volume)
    pixels = np.zeros((10, 32, 36), np.uint8)
    pixels[2:5, 4:10, 5:11] = 1       # lesion A: 3 x 6 x 6 voxels
    pixels[6:9, 20:28, 22:30] = 1     # lesion B: 3 x 8 x 8 voxels
    lung = np.ones_like(pixels)
    description = [
        hd.seg.SegmentDescription(1, "Nodule", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Nodule,
                                  hd.seg.SegmentAlgorithmTypeValues.MANUAL),
        hd.seg.SegmentDescription(2, "Lung", codes.SCT.Organ, codes.SCT.Lung, hd.seg.SegmentAlgorithmTypeValues.MANUAL)]
    seg = hd.seg.Segmentation(images, np.stack([pixels, lung], axis=-1), hd.seg.SegmentationTypeValues.BINARY,
                              description, generate_uid(), 99, generate_uid(), 1, "test", "test", "1", "1")
    path = folder / "ref.seg.dcm"
    seg.save_as(path)
    reference = SegReference.from_file(path)
    attached = reference.attach(target)
    assert attached.matched_by == "Series Instance UID"
    assert any("Lung" in n for n in attached.notes)  # anatomy is not a lesion
    sizes = sorted(int(l.mask.voxels.sum()) for l in attached.lesions)
    assert sizes == [3 * 6 * 6, 3 * 8 * 8]
    b = max(attached.lesions, key=lambda l: l.mask.voxels.sum())
    expected = target.volume.index_to_lps([(22 + 29) / 2, (20 + 27) / 2, 7])
    assert np.allclose(b.centre_lps_mm, expected, atol=1e-6)
    assert b.volume_mm3 == pytest.approx(3 * 8 * 8 * 0.8 * 0.8 * 2.0)


def test_tid1500_sr_written_by_highdicom_read_back(small_series):
    folder, truth, target, datasets = small_series
    images = _source_images(datasets, target.volume)
    image = images[4]
    observer = hd.sr.ObserverContext(codes.DCM.Person, hd.sr.PersonObserverIdentifyingAttributes("Reader^A"))
    # A circle of 5 px radius centred at pixel (column 12.5, row 10.5): the voxel i=12, j=10 of slice 4.
    region = hd.sr.ImageRegion(hd.sr.GraphicTypeValues.CIRCLE, np.array([[12.5, 10.5], [17.5, 10.5]]),
                               hd.sr.SourceImageForRegion(image.SOPClassUID, image.SOPInstanceUID))
    diameter = hd.sr.Measurement(codes.SCT.Diameter, 7.5, codes.UCUM.Millimeter)
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="nodule 1"),
        referenced_region=region, finding_type=codes.SCT.Nodule, measurements=[diameter])
    report = hd.sr.MeasurementReport(hd.sr.ObservationContext(observer_person_context=observer),
                                     hd.sr.CodedConcept("126010", "DCM", "Imaging Measurements"), [group])
    sr = hd.sr.Comprehensive3DSR(images, report, generate_uid(), 98, generate_uid(), 1, "test")
    path = folder / "ref.sr.dcm"
    sr.save_as(path)
    reference = SrReference.from_file(path)
    attached = reference.attach(target)
    assert attached.matched_by == "SOP Instance UID"
    [lesion] = attached.lesions
    expected = target.volume.index_to_lps([12, 10, 4])
    assert np.allclose(lesion.centre_lps_mm, expected, atol=1e-6)
    assert lesion.diameter_mm == pytest.approx(7.5)
    assert lesion.contains([expected, expected + [3.7, 0, 0], expected + [3.8, 0, 0]]).tolist() == [True, True, False]


def test_unreadable_references_say_which_file(tmp_path):
    (tmp_path / "bad.csv").write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n1.2.3,1,2,oops,4\n")
    (tmp_path / "broken.xml").write_text("<annotation><filename>not-a-uid</filename><object><name>A</name>"
                                         "<bndbox><xmin>1</xmin></bndbox></object></annotation>")
    with pytest.raises(ReferenceError, match=r"bad\.csv: line 2: not a number"):
        LunaCsv.from_file(tmp_path / "bad.csv")
    found = discover(tmp_path)
    assert any("bad.csv" in w and "line 2" in w for w in found.warnings)
    assert any("broken.xml" in w for w in found.warnings)
