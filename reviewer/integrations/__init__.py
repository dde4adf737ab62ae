"""Outgoing messages of signed reports: the report as DICOM SR (into Orthanc, forwarded by
C-STORE), FHIR R4 and HL7 v2 ORU^R01, all sent through the outbox (``outbox.py``)."""
