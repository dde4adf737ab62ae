"""Fetching series from Orthanc (or any PACS) over DICOMweb, for manifest series without a path.

Thin on purpose: ``dicomweb-client`` does the protocol; we only turn a series into pydicom
datasets and give a clear error when the server is unreachable.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset


@dataclass
class DicomWebConfig:
    url: str = "http://localhost:8042/dicom-web"
    username: str | None = None
    password: str | None = None
    timeout_s: float = 60.0


class DicomWebSource:
    """Retrieve whole series (instances with pixel data) from a DICOMweb server."""

    def __init__(self, cfg: DicomWebConfig | None = None, client=None) -> None:
        self.cfg = cfg or DicomWebConfig()
        self._client = client  # injectable for tests

    @property
    def client(self):
        if self._client is None:
            import requests
            from dicomweb_client.api import DICOMwebClient
            from dicomweb_client.session_utils import create_session_from_user_pass

            session = None
            if self.cfg.username:
                session = create_session_from_user_pass(self.cfg.username, self.cfg.password or "")
            session = session or requests.Session()
            self._client = DICOMwebClient(url=self.cfg.url, session=session)
        return self._client

    def load_series(self, study_uid: str, series_uid: str) -> list[Dataset]:
        try:
            # as stored (no server-side transcoding); decoded here by pydicom + pylibjpeg
            return list(self.client.retrieve_series(study_uid, series_uid, media_types=(("application/dicom", "*"),)))
        except Exception as exc:  # network, HTTP 404, auth: name the series and the server
            raise RuntimeError(
                f"DICOMweb retrieve of series {series_uid} (study {study_uid}) from {self.cfg.url} failed: {exc}"
            ) from exc

    def sop_uids(self, study_uid: str, series_uid: str) -> list[str]:
        """SOP Instance UIDs without pixel transfer (QIDO-RS), for cache lookups."""
        found = self.client.search_for_instances(study_uid, series_uid, fields=["00080018"])
        return [inst["00080018"]["Value"][0] for inst in found]
