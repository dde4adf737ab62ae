"""The PS3.15 Basic Application Level Confidentiality Profile with the Clean Descriptors Option,
as data: the table of attributes and actions (neither pydicom nor highdicom ships one), the
catch-alls by VR so that an attribute the table misses does not leak, and how the applied
profile is recorded. ``reviewer.deid.deidentify_dataset`` applies it to a dataset; the export code
takes its DICOM-derived fields through the same actions. Described in docs/security.md."""

from __future__ import annotations

# Actions (PS3.15 Table E.1-1): X remove, Z empty (type 2 attributes stay present), D dummy value
# (here: the keyed pseudonym), U keyed replacement UID, C clean (free text through scrub_text; the
# Clean Descriptors Option, which keeps series descriptions readable for sequence classification).
# Attributes not listed are kept unless a catch-all below applies.
BASIC_PROFILE: dict[str, str] = {
    # patient
    "PatientName": "D", "PatientID": "D", "IssuerOfPatientID": "X", "PatientBirthDate": "Z",
    "PatientBirthTime": "X", "PatientSex": "Z", "PatientAge": "X", "PatientSize": "X", "PatientWeight": "X",
    "PatientAddress": "X", "PatientTelephoneNumbers": "X", "PatientTelecomInformation": "X",
    "OtherPatientIDsSequence": "X", "OtherPatientNames": "X", "PatientBirthName": "X",
    "PatientMotherBirthName": "X", "MedicalRecordLocator": "X", "ReferencedPatientPhotoSequence": "X",
    "ResponsiblePerson": "X", "ResponsiblePersonRole": "X", "ResponsibleOrganization": "X",
    "CountryOfResidence": "X", "RegionOfResidence": "X", "MilitaryRank": "X", "BranchOfService": "X",
    "EthnicGroup": "X", "Occupation": "X", "AdditionalPatientHistory": "X", "PatientComments": "X",
    "PatientState": "X", "PregnancyStatus": "X", "SmokingStatus": "X", "MedicalAlerts": "X", "Allergies": "X",
    "PatientReligiousPreference": "X", "LastMenstrualDate": "X", "PatientInsurancePlanCodeSequence": "X",
    "PatientPrimaryLanguageCodeSequence": "X", "CurrentPatientLocation": "X", "AdmissionID": "X",
    "IssuerOfAdmissionIDSequence": "X",
    # study, visit, request
    "StudyInstanceUID": "U", "StudyID": "Z", "AccessionNumber": "Z", "StudyDate": "Z", "StudyTime": "Z",
    "StudyDescription": "C", "ReferringPhysicianName": "Z", "ReferringPhysicianAddress": "X",
    "ReferringPhysicianTelephoneNumbers": "X", "ReferringPhysicianIdentificationSequence": "X",
    "PhysiciansOfRecord": "X", "PhysiciansOfRecordIdentificationSequence": "X", "NameOfPhysiciansReadingStudy": "X",
    "PhysiciansReadingStudyIdentificationSequence": "X", "ConsultingPhysicianName": "X",
    "ConsultingPhysicianIdentificationSequence": "X", "RequestingPhysician": "X", "RequestingService": "X",
    "RequestAttributesSequence": "X", "ReasonForTheRequestedProcedure": "X", "RequestedProcedureID": "X",
    "RequestedProcedureDescription": "X", "ScheduledPerformingPhysicianName": "X", "ScheduledStudyLocation": "X",
    "ScheduledProcedureStepID": "X", "ScheduledProcedureStepDescription": "X", "PerformedProcedureStepID": "X",
    "PerformedProcedureStepDescription": "X", "FillerOrderNumberImagingServiceRequest": "X",
    "PlacerOrderNumberImagingServiceRequest": "X", "OrderEnteredBy": "X", "OrderEntererLocation": "X",
    "OrderCallbackPhoneNumber": "X", "ReferencedStudySequence": "X",
    "ReferencedPerformedProcedureStepSequence": "X", "InterpretationRecorder": "X",
    "InterpretationTranscriber": "X", "InterpretationAuthor": "X", "InterpretationApproverSequence": "X",
    "PhysicianApprovingInterpretation": "X", "DistributionName": "X", "ReviewerName": "X",
    # series, equipment, operators
    "SeriesInstanceUID": "U", "SeriesDate": "X", "SeriesTime": "X", "SeriesDescription": "C",
    "ProtocolName": "C", "PerformingPhysicianName": "X", "PerformingPhysicianIdentificationSequence": "X",
    "OperatorsName": "X", "OperatorIdentificationSequence": "X", "InstitutionName": "X",
    "InstitutionAddress": "X", "InstitutionalDepartmentName": "X", "InstitutionCodeSequence": "X",
    "StationName": "X", "DeviceSerialNumber": "X", "DeviceUID": "U", "DetectorID": "X", "GantryID": "X",
    "PlateID": "X", "CassetteID": "X", "GeneratorID": "X", "ModifyingDeviceID": "X",
    "FrameOfReferenceUID": "U", "SynchronizationFrameOfReferenceUID": "U",
    # instance, content
    "SOPInstanceUID": "U", "MediaStorageSOPInstanceUID": "U", "InstanceCreatorUID": "U",
    "ReferencedSOPInstanceUID": "U", "ReferencedFrameOfReferenceUID": "U", "SourceFrameOfReferenceUID": "U",
    "StorageMediaFileSetUID": "U", "IrradiationEventUID": "U", "ConcatenationUID": "U",
    "DimensionOrganizationUID": "U", "UID": "U", "TargetUID": "U", "FiducialUID": "U",
    "ContextGroupExtensionCreatorUID": "U", "InstanceCreationDate": "X", "InstanceCreationTime": "X",
    "ContentDate": "Z", "ContentTime": "Z", "AcquisitionDate": "X", "AcquisitionTime": "X",
    "AcquisitionDateTime": "X", "OverlayDate": "X", "OverlayTime": "X", "CurveDate": "X", "CurveTime": "X",
    "InstanceCoercionDateTime": "X", "TimezoneOffsetFromUTC": "X", "ImageComments": "X",
    "FrameComments": "X", "AcquisitionComments": "X", "DerivationDescription": "C", "TextString": "X",
    "ContentCreatorName": "Z", "ContentCreatorIdentificationCodeSequence": "X", "VerifyingObserverName": "D",
    "VerifyingObserverIdentificationCodeSequence": "Z", "PersonName": "D", "PersonIdentificationCodeSequence": "X",
    "AuthorObserverSequence": "X", "SpecimenAccessionNumber": "X",
    "ModifiedAttributesSequence": "X", "OriginalAttributesSequence": "X", "EncryptedAttributesSequence": "X",
    "DigitalSignaturesSequence": "X", "MAC": "X",
}  # fmt: skip

DEID_METHOD = "PS3.15 Basic Profile, Clean Descriptors; keyed UIDs"  # LO: at most 64 characters
# DCM codes of the profile and option applied (PS3.16 CID 7050)
DEID_CODES = (("113100", "Basic Application Confidentiality Profile"), ("113105", "Clean Descriptors Option"))


def _uid_replaced(keyword: str) -> bool:
    """Catch-all for UIDs the table does not name: instance and frame-of-reference UIDs identify
    a study; class, syntax and coding-scheme UIDs are standard constants and are kept."""
    return keyword.endswith(("InstanceUID", "FrameOfReferenceUID")) or BASIC_PROFILE.get(keyword) == "U"


def profile_action(keyword: str, vr: str) -> str:
    """The action for one attribute: the table's, else the catch-all of its VR (K keep)."""
    if keyword in BASIC_PROFILE:
        return BASIC_PROFILE[keyword]
    if vr == "PN":
        return "Z"
    if vr in ("DA", "DT", "TM"):
        return "X"
    if vr == "UI" and _uid_replaced(keyword):
        return "U"
    return "K"


__all__ = ["BASIC_PROFILE", "DEID_CODES", "DEID_METHOD", "profile_action"]
