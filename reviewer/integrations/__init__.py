"""Integrations: everything that talks to a system outside the database. Orthanc (the REST and
DICOMweb clients, fetching studies for the model, ingest, the same-origin DICOMweb proxy and its
per-instance STOW), the DICOM documents we write into the archive (the AI SR as IHE AI Results,
key-object selection), and the outgoing messages of signed reports (report SR, FHIR R4, HL7 v2
ORU^R01), all sent through the outbox (``outbox.py``)."""
