"""The proxy's allow-list on its own, without the raw request line: servers such as
``runserver`` (wsgiref) keep no ``RAW_URI``, so the once-decoded path alone must still be refused
for every attack in the table. No services needed."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from reviewer.integrations.dicomweb_proxy import Kind, Refused, resolve, upstream_params, upstream_url
from tests.security.test_proxy_attacks import ATTACKS

ORTHANC_ID = "a1b2c3d4-e5f60718-293a4b5c-6d7e8f90-a1b2c3d4"
IDS = {"study": "1.2.3", "series": "1.2.3.4", "sop": "1.2.3.4.5"} | dict.fromkeys(("oid", "pid", "iid"), ORTHANC_ID)


def _refused(method: str, target: str, *, identities: bool = False) -> Refused | None:
    request = getattr(RequestFactory(), method.lower(), None)
    request = (request or (lambda p: RequestFactory().generic(method, p)))(target.format(**IDS))
    assert request.path_info.startswith("/dicom-web/")
    assert "RAW_URI" not in request.META
    assert "REQUEST_URI" not in request.META
    try:
        found = resolve(request.path_info[len("/dicom-web/") :], method)
        params = upstream_params(request, found.route.kind, identities=identities)
        upstream_url(found.segments, params)
    except Refused as exc:
        return exc
    return None


@pytest.mark.parametrize(("method", "target", "role"), ATTACKS, ids=[f"{m} {t}" for m, t, _ in ATTACKS])
def test_attack_is_refused_from_the_decoded_path_alone(method, target, role):  # type: ignore[no-untyped-def]
    refusal = _refused(method, target)
    assert refusal is not None, f"{method} {target} would be forwarded"
    assert refusal.status in {400, 403, 404, 405, 414}


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("studies", Kind.QIDO),
        ("studies/1.2.840.10008.5.1.4/series", Kind.QIDO),
        ("studies/1.2/series/1.3/instances", Kind.QIDO),
        ("studies/1.2/metadata", Kind.METADATA),
        ("studies/1.2/series/1.3/metadata", Kind.METADATA),
        ("studies/1.2/series/1.3/instances/1.4/frames/1,2,3", Kind.FRAMES),
        ("studies/1.2/series/1.3/instances/1.4/frames/1/rendered", Kind.RENDERED),
        ("studies/1.2/series/1.3/instances/1.4/bulk/7fe00010", Kind.BULK),
        ("studies/1.2/series/1.3/instances/1.4/bulk/00540016/0/00181072", Kind.BULK),
        ("studies/1.2/series/1.3/instances/1.4", Kind.RETRIEVE),
    ],
)
def test_the_viewers_routes_resolve(path, kind):  # type: ignore[no-untyped-def]
    assert resolve(path, "GET").route.kind is kind


@pytest.mark.parametrize(
    "path",
    ["studies/1..2/metadata", "studies/.1/metadata", "studies/1./metadata", "studies/1.2/frames/0",
     "studies/1.2/series/1.3/instances/1.4/frames/0", "studies/1.2/series/1.3/instances/1.4/frames/1,,2",
     "studies/1.2/series/1.3/instances/1.4/bulk/7fe0001", "studies/1.2/thumbnail", "Studies", "studies/"],
)  # fmt: skip
def test_malformed_uids_and_unknown_routes_are_refused(path):  # type: ignore[no-untyped-def]
    with pytest.raises(Refused):
        resolve(path, "GET")


def test_stow_only_on_studies():  # type: ignore[no-untyped-def]
    assert resolve("studies", "POST").route.kind is Kind.STOW
    assert resolve("studies/1.2", "POST").route.kind is Kind.STOW
    with pytest.raises(Refused) as refused:
        resolve("studies/1.2/series", "POST")
    assert refused.value.status == 405


def test_query_values_reach_orthanc_unencoded_where_it_needs_them():  # type: ignore[no-untyped-def]
    """Orthanc matches values as sent: ``^`` and ``*`` must not become ``%5E``/``%2A``."""
    request = RequestFactory().get("/dicom-web/studies", {"PatientName": "DOE^J*", "includefield": "a,b"})
    with pytest.raises(Refused):  # ``a`` is no DICOM keyword
        upstream_params(request, Kind.QIDO, identities=True)
    request = RequestFactory().get(
        "/dicom-web/studies", {"PatientName": "DOE^J*", "includefield": "00080021,StudyDate"}
    )
    params = upstream_params(request, Kind.QIDO, identities=True)
    url = upstream_url(("studies",), params)
    assert url.raw_path.endswith(b"/studies?PatientName=DOE^J*&includefield=00080021&includefield=StudyDate")
