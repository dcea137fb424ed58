"""FHIR bundles of de-identified datasets: content, validity (R5, R4B), references, no PHI, push."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests

from imagedepot.demo import DEMO_PHI, SUBJECT_A
from imagedepot.fhir import (
    BODY_PARTS,
    DICOM_UID_SYSTEM,
    RELEASES,
    BundleOptions,
    ClinicalSettings,
    EndpointSpec,
    FhirError,
    FhirPushError,
    ItemOutcome,
    build_bundle,
    bundle_dataset,
    check_references,
    endpoints_for,
    item_path,
    push_bundle,
    release,
    source_digest,
)
from imagedepot.leakcheck import leakcheck
from tests.servers.fhir_fixture import (
    REAL_TOKEN,
    REAL_URL,
    DemoResults,
    auth_headers,
    build_demo_results,
    fhir_base_url,
    running_fhir_server,
    search,
)

local_only = pytest.mark.skipif(bool(REAL_URL), reason="needs the local server (FHIR_TEST_URL set)")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResults:
    datasets = ("dcm-subj01", "dcm-subj02", "nii-subj01", "micro-cells")
    return build_demo_results(tmp_path_factory.mktemp("fhir-demo"), datasets=datasets)


def _bundle(demo: DemoResults, dataset: str, out: Path, **fhir: Any) -> tuple[dict, dict]:
    config = json.loads(demo.config_json(**fhir))
    status = bundle_dataset(
        dataset,
        manifest=demo.items_dir,
        deid_root=demo.deid_root,
        leak_root=demo.leak_root,
        convert_root=demo.convert_root,
        out=out,
        config=config,
    )
    bundle = json.loads(out.read_text()) if out.exists() else {}
    return status, bundle


@pytest.fixture(scope="module", params=["R5", "R4B"])
def bundles(request: pytest.FixtureRequest, demo: DemoResults, tmp_path_factory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp(f"bundles-{request.param}")
    result: dict[str, Any] = {"version": request.param}
    for ds in ("dcm-subj01", "dcm-subj02", "nii-subj01", "micro-cells"):
        result[ds] = _bundle(demo, ds, out / ds / "bundle.json", version=request.param)
        result[f"{ds}-path"] = out / ds / "bundle.json"
    return result


def _of(bundle: dict, rtype: str) -> list[dict]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def _model(version: str, rtype: str) -> Any:
    if version == "R4B":
        from fhir.resources.R4B import get_fhir_model_class
    else:
        from fhir.resources import get_fhir_model_class
    return get_fhir_model_class(rtype)


def test_bundles_validate_with_the_release_models(bundles: dict[str, Any]) -> None:
    version = bundles["version"]
    for ds in ("dcm-subj01", "dcm-subj02", "nii-subj01", "micro-cells"):
        status, bundle = bundles[ds]
        assert status["status"] == "clean", status["leakcheck"]
        assert status["fhir_version"] == version
        _model(version, "Bundle").model_validate(bundle)  # independent check of the whole bundle
        for entry in bundle["entry"]:
            _model(version, entry["resource"]["resourceType"]).model_validate(entry["resource"])
        assert bundle["type"] == "transaction"
        assert status["entries"] == len(bundle["entry"])


def test_references_resolve_inside_the_bundle(bundles: dict[str, Any]) -> None:
    for ds in ("dcm-subj01", "micro-cells"):
        _, bundle = bundles[ds]
        assert check_references(bundle) == []
        urls = {e["fullUrl"]: e["resource"]["resourceType"] for e in bundle["entry"]}
        (subject,) = [
            e for e in bundle["entry"] if e["resource"]["resourceType"] in ("Patient", "Group")
        ]
        for study in _of(bundle, "ImagingStudy"):
            assert study["resource"]["subject"]["reference"] == subject["fullUrl"]
        for prov in _of(bundle, "Provenance"):
            r = prov["resource"]
            assert all(urls[t["reference"]] == "ImagingStudy" for t in r["target"])
            assert urls[r["agent"][0]["who"]["reference"]] == "Device"


def test_every_entry_is_idempotent(bundles: dict[str, Any]) -> None:
    _, bundle = bundles["dcm-subj01"]
    for e in bundle["entry"]:
        req = e["request"]
        if req["method"] == "POST":
            ident = e["resource"]["identifier"][0]
            assert req["ifNoneExist"] == f"identifier={ident['system']}|{ident['value']}"
        else:
            assert req["method"] == "PUT"
            assert req["url"] == f"{e['resource']['resourceType']}/{e['resource']['id']}"
    assert len({e["fullUrl"] for e in bundle["entry"]}) == len(bundle["entry"])


def test_patient_carries_the_pseudonym_only(bundles: dict[str, Any], demo: DemoResults) -> None:
    _, bundle = bundles["dcm-subj01"]
    (patient,) = _of(bundle, "Patient")
    res = patient["resource"]
    assert set(res) == {"resourceType", "identifier"}  # no name, birth date, sex...
    prov = json.loads((demo.deid_root / "dcm-subj01-d001" / "provenance.json").read_text())
    assert res["identifier"] == [
        {
            "system": demo.config["fhir"]["identifier_system"],
            "value": prov["options"]["subject_pseudonym"],
        }
    ]


def test_imaging_study_matches_the_deidentified_dicom(
    bundles: dict[str, Any], demo: DemoResults
) -> None:
    version = bundles["version"]
    _, bundle = bundles["dcm-subj01"]
    studies = {
        e["resource"]["identifier"][0]["value"]: e["resource"] for e in _of(bundle, "ImagingStudy")
    }
    assert len(studies) == 2  # MR and CT studies of subject 01
    originals = {
        i["dicom"]["study_instance_uid"] for i in demo.items("dcm-subj01") if i.get("dicom")
    }
    for item_id in ("dcm-subj01-d001", "dcm-subj01-d002"):
        files = sorted((demo.deid_root / item_id / "dicom").iterdir())
        ds = pydicom.dcmread(files[0], stop_before_pixels=True)
        study = studies[f"urn:oid:{ds.StudyInstanceUID}"]
        assert ds.StudyInstanceUID not in originals  # remapped
        assert study["identifier"][0]["system"] == DICOM_UID_SYSTEM
        da = str(ds.StudyDate)
        assert study["started"].startswith(
            f"{da[:4]}-{da[4:6]}-{da[6:]}"
        )  # as shifted in the images
        (series,) = study["series"]
        assert series["uid"] == ds.SeriesInstanceUID
        assert series["numberOfInstances"] == len(files) == study["numberOfInstances"]
        assert {i["uid"] for i in series["instance"]} == {
            pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files
        }
        modality = series["modality"] if version == "R4B" else series["modality"]["coding"][0]
        assert modality["code"] == ds.Modality
        body = (
            series["bodySite"] if version == "R4B" else series["bodySite"]["concept"]["coding"][0]
        )
        assert body["code"] == BODY_PARTS["HEAD"][0]


def test_provenance_per_step_with_source_checksum_and_policy(
    bundles: dict[str, Any], demo: DemoResults
) -> None:
    _, bundle = bundles["dcm-subj01"]
    provs = [e["resource"] for e in _of(bundle, "Provenance")]
    activities = sorted(p["activity"]["coding"][0]["code"] for p in provs)
    assert activities == ["deidentify", "deidentify", "transform", "transform"]  # 2 items x 2 steps
    digests = {source_digest(i["files"]) for i in demo.items("dcm-subj01")}
    policy = json.loads((demo.deid_root / "dcm-subj01-d001" / "provenance.json").read_text())[
        "policy"
    ]
    for p in provs:
        assert p["entity"][0]["role"] == "source"
        assert p["entity"][0]["what"]["identifier"]["value"] in digests
        assert p["policy"] == [f"urn:imagedepot:policy:demo-cohort:sha256:{policy['sha256']}"]
    (device,) = _of(bundle, "Device")
    assert device["resource"]["version"][0]["value"]


def test_consent_carries_the_duo_codes(bundles: dict[str, Any]) -> None:
    version = bundles["version"]
    _, bundle = bundles["dcm-subj01"]
    (consent,) = [e["resource"] for e in _of(bundle, "Consent")]
    provision = consent["provision"] if version == "R4B" else consent["provision"][0]
    assert [p["code"] for p in provision["purpose"]] == ["DUO:0000042", "DUO:0000019"]
    # open-microscopy does not require consent: no Consent for its specimens
    _, micro = bundles["micro-cells"]
    assert _of(micro, "Consent") == []


def test_microscopy_study_points_to_its_specimen(bundles: dict[str, Any]) -> None:
    version = bundles["version"]
    _, bundle = bundles["micro-cells"]
    (study,) = _of(bundle, "ImagingStudy")
    (specimen,) = _of(bundle, "Specimen")
    series = study["resource"]["series"][0]
    modality = series["modality"] if version == "R4B" else series["modality"]["coding"][0]
    assert modality["code"] == "SM"
    assert series["specimen"] == [{"reference": specimen["fullUrl"]}]
    assert specimen["resource"]["type"]["text"] == "NIH/3T3 fibroblasts, fixed"
    (group,) = _of(bundle, "Group")  # a mouse is no Patient
    assert group["resource"]["type"] == "animal"
    assert specimen["resource"]["subject"]["reference"] == group["fullUrl"]


def test_nifti_volume_gets_a_study_dated_like_its_sidecar(
    bundles: dict[str, Any], demo: DemoResults
) -> None:
    _, bundle = bundles["nii-subj01"]
    (study,) = _of(bundle, "ImagingStudy")
    (sidecar,) = (demo.deid_root / "nii-subj01-n001" / "nifti").glob("*.json")
    side = json.loads(sidecar.read_text())
    assert study["resource"]["started"] == side["AcquisitionDateTime"][:10]
    assert [p["resource"]["target"] for p in _of(bundle, "Provenance")] == [
        [{"reference": study["fullUrl"]}]
    ] * 2
    _, dicom = bundles["dcm-subj01"]
    assert _of(bundle, "Patient") == _of(dicom, "Patient")  # the same subject, the same entry


def test_bundles_carry_no_phi(bundles: dict[str, Any], demo: DemoResults) -> None:
    for ds in ("dcm-subj01", "dcm-subj02", "nii-subj01", "micro-cells"):
        path = bundles[f"{ds}-path"]
        originals = [Path(f["path"]) for i in demo.items(ds) for f in i["files"]]
        report = leakcheck(originals, [path], extra=DEMO_PHI)
        assert report.status == "clean", report.to_dict()["hits"]
        text = path.read_text()
        assert "inbox" not in text and str(demo.root) not in text  # no original paths


def test_building_twice_gives_the_same_bundle(demo: DemoResults, tmp_path: Path) -> None:
    _, a = _bundle(demo, "dcm-subj01", tmp_path / "a" / "bundle.json")
    _, b = _bundle(demo, "dcm-subj01", tmp_path / "b" / "bundle.json")
    assert a == b


def test_leaking_bundle_is_not_written(demo: DemoResults, tmp_path: Path) -> None:
    items = tmp_path / "items"
    shutil.copytree(demo.items_dir, items)
    item = json.loads((items / "micro-cells-m001.json").read_text())
    item["metadata"]["title"] = "Cells imaged by Alice Smithee"  # the experimenter of the OME-XML
    (items / "micro-cells-m001.json").write_text(json.dumps(item))
    out = tmp_path / "fhir" / "bundle.json"
    status = bundle_dataset(
        "micro-cells",
        manifest=items,
        deid_root=demo.deid_root,
        leak_root=demo.leak_root,
        out=out,
        config=json.loads(demo.config_json()),
    )
    assert status["status"] == "leak"
    assert not out.exists()
    saved = json.loads((tmp_path / "fhir" / "bundle.status.json").read_text())
    assert saved["status"] == "leak"
    assert "Smithee" not in json.dumps(saved)


def test_dataset_without_processed_items_is_empty(demo: DemoResults, tmp_path: Path) -> None:
    out = tmp_path / "bundle.json"
    status = bundle_dataset(
        "dcm-subj03",  # no consent: excluded
        manifest=demo.items_dir,
        deid_root=demo.deid_root,
        leak_root=demo.leak_root,
        out=out,
        config=json.loads(demo.config_json()),
    )
    assert status["status"] == "empty"
    assert not out.exists()


def _outcomes(demo: DemoResults, dataset: str, deid_root: Path | None = None) -> list[ItemOutcome]:
    root = deid_root or demo.deid_root
    out = []
    for item in demo.items(dataset):
        if (root / item["id"] / "provenance.json").is_file():
            prov = json.loads((root / item["id"] / "provenance.json").read_text())
            if prov["status"] == "processed":
                out.append(ItemOutcome(item=item, deid_dir=root / item["id"], provenance=prov))
    return out


def test_endpoints_for_xnat_and_bia_destinations(demo: DemoResults) -> None:
    config = {
        "destinations": {
            "local": {"class": "internal", "type": "folder"},
            "xnat": {
                "class": "controlled_repository",
                "type": "xnat",
                "url": "https://xnat.example.org/",
                "project": "DEMO",
            },
            "bia": {
                "class": "public_archive",
                "type": "bia",
                "url": "https://bia.example.org/submit",
            },
            "bia-done": {"class": "public_archive", "type": "bia", "accession": "S-BIAD1234"},
            "xnat-unset": {"class": "controlled_repository", "type": "xnat"},
        }
    }
    specs = endpoints_for(["local", "xnat", "bia", "bia-done", "xnat-unset"], config)
    assert specs == [
        EndpointSpec("xnat", "xnat", "https://xnat.example.org/data/projects/DEMO"),
        EndpointSpec("bia", "bia", "https://bia.example.org/submit"),
        EndpointSpec(
            "bia-done", "bia", "https://www.ebi.ac.uk/biostudies/bioimages/studies/S-BIAD1234"
        ),
    ]
    outcomes = _outcomes(demo, "dcm-subj01")
    for version in RELEASES:
        bundle = build_bundle(
            "dcm-subj01",
            outcomes,
            pseudonym=outcomes[0].provenance["options"]["subject_pseudonym"],
            policy=outcomes[0].provenance["policy"],
            options=BundleOptions(release=version, endpoints=specs[:1]),
        )
        (endpoint,) = _of(bundle, "Endpoint")
        assert endpoint["resource"]["address"] == specs[0].address
        for study in _of(bundle, "ImagingStudy"):
            assert study["resource"]["endpoint"] == [{"reference": endpoint["fullUrl"]}]


@pytest.mark.parametrize("detail", ["age", "year"])
def test_patient_characteristics_only_when_the_policy_retains_them(
    demo: DemoResults, tmp_path: Path, detail: str
) -> None:
    from imagedepot.pipeline import DeidSettings, deidentify_item

    policy = tmp_path / "chars.yaml"
    policy.write_text(
        'policy_version: 1\nname: chars\ndata_use: {permission: "DUO:0000042"}\n'
        "consent: {required: false}\ndestinations: {allowed_classes: [internal]}\n"
        "deidentification:\n  options: [retain_longitudinal_modified_dates, retain_patient_characteristics]\n"
    )
    item = demo.items("dcm-subj01")[0]
    deid = tmp_path / "deid"
    deidentify_item(
        demo.items_dir / f"{item['id']}.json",
        demo.convert_root / item["id"],
        deid / item["id"],
        DeidSettings(policy_path=policy, key_env=None, key_file=demo.demo.key_file),
    )
    outcomes = [o for o in _outcomes(demo, "dcm-subj01", deid) if o.item["id"] == item["id"]]
    record = outcomes[0].provenance["policy"] | {"birth_date_detail": detail}
    bundle = build_bundle(
        "dcm-subj01",
        outcomes,
        pseudonym=outcomes[0].provenance["options"]["subject_pseudonym"],
        policy=record,
        options=BundleOptions(release="R5"),
    )
    (patient,) = [e["resource"] for e in _of(bundle, "Patient")]
    assert patient["gender"] == "male"
    assert "name" not in patient
    ds = pydicom.dcmread(next((deid / item["id"] / "dicom").iterdir()), stop_before_pixels=True)
    age = int(str(ds.PatientAge)[:3])
    ages = [e["resource"] for e in _of(bundle, "Observation")]
    if detail == "age":
        assert "birthDate" not in patient
        (obs,) = ages
        assert obs["code"]["coding"][0]["code"] == "30525-0"
        assert obs["valueQuantity"]["value"] == age
        assert obs["valueQuantity"]["code"] == "a"
    else:
        assert ages == []
        assert patient["birthDate"] == str(int(str(ds.StudyDate)[:4]) - age)  # year only
        assert patient["birthDate"] != SUBJECT_A.birth_date[:4]  # on the shifted time line


def test_invalid_resource_names_the_problem() -> None:
    with pytest.raises(FhirError, match=r"ImagingStudy is invalid: .*status"):
        release("R5").validate(
            {"resourceType": "ImagingStudy", "subject": {"reference": "Patient/1"}}
        )
    with pytest.raises(Exception, match="unknown FHIR release"):
        release("R3")
    with pytest.raises(FhirError, match="unknown resource type 'Nonsense'"):
        release("R4B").validate({"resourceType": "Nonsense"})


def test_item_path_prefers_the_batch_layout(tmp_path: Path) -> None:
    item = {"id": "ds-d001", "batch": 2}
    assert item_path(tmp_path, item) == tmp_path / "batch-0002" / "ds-d001"
    (tmp_path / "ds-d001").mkdir()
    assert item_path(tmp_path, item) == tmp_path / "ds-d001"
    assert item_path(tmp_path, item, ".json") == tmp_path / "batch-0002" / "ds-d001.json"


# --------------------------------------------------------------------------- push


@pytest.fixture(scope="module")
def server(demo: DemoResults) -> Iterator[tuple[str, str]]:
    with fhir_base_url("R5") as url_version:
        yield url_version


def _count_on_server(url: str, bundle: dict) -> dict[str, int]:
    counts = {}
    for e in bundle["entry"]:
        res = e["resource"]
        if e["request"]["method"] == "PUT":
            r = requests.get(f"{url}{e['request']['url']}", headers=auth_headers(), timeout=30)
            counts[e["fullUrl"]] = 1 if r.status_code == 200 else 0
        else:
            ident = res["identifier"][0]
            counts[e["fullUrl"]] = len(
                search(url, res["resourceType"], ident["system"], ident["value"])
            )
    return counts


def test_pushing_twice_leaves_one_copy_of_each_resource(
    server: tuple[str, str], demo: DemoResults, tmp_path: Path
) -> None:
    url, version = server
    for ds in ("dcm-subj01", "micro-cells"):
        path = tmp_path / ds / "bundle.json"
        _, bundle = _bundle(demo, ds, path, version=version)
        first = push_bundle(path, url, token=REAL_TOKEN)
        assert set(first.counts()) <= {"200", "201"}
        second = push_bundle(path, url, token=REAL_TOKEN)
        assert set(second.counts()) == {"200"}  # nothing created the second time
        assert [e["location"].split("/_history")[0] for e in first.entries] == [
            e["location"].split("/_history")[0] for e in second.entries
        ]
        assert set(_count_on_server(url, bundle).values()) == {1}


def test_bundles_of_one_subject_share_their_resources_on_the_server(
    server: tuple[str, str], demo: DemoResults, tmp_path: Path
) -> None:
    url, version = server
    config = {"clinical": str(demo.demo.clinical)}
    bundles = {}
    for ds in ("dcm-subj01", "nii-subj01"):
        path = tmp_path / ds / "bundle.json"
        status = bundle_dataset(
            ds,
            manifest=demo.items_dir,
            deid_root=demo.deid_root,
            leak_root=demo.leak_root,
            out=path,
            config=json.loads(demo.config_json(version=version, **config)),
            clinical=ClinicalSettings(
                Path(config["clinical"]), demo.demo.key_file.read_bytes().strip()
            ),
        )
        assert status["status"] == "clean"
        bundles[ds] = json.loads(path.read_text())
        push_bundle(path, url, token=REAL_TOKEN)
    shared = {e["fullUrl"] for e in bundles["dcm-subj01"]["entry"]} & {
        e["fullUrl"] for e in bundles["nii-subj01"]["entry"]
    }
    types = {
        e["resource"]["resourceType"]
        for e in bundles["nii-subj01"]["entry"]
        if e["fullUrl"] in shared
    }
    assert {"Patient", "Device", "Consent", "Encounter", "Condition", "Observation"} <= types
    for ds in ("dcm-subj01", "nii-subj01"):
        assert set(_count_on_server(url, bundles[ds]).values()) == {1}


def test_pushed_references_point_to_the_server_resources(
    server: tuple[str, str], demo: DemoResults, tmp_path: Path
) -> None:
    url, version = server
    path = tmp_path / "bundle.json"
    _, bundle = _bundle(demo, "dcm-subj02", path, version=version)
    result = push_bundle(path, url, token=REAL_TOKEN)
    where = {
        e["fullUrl"]: r["location"].split("/_history")[0]
        for e, r in zip(bundle["entry"], result.entries, strict=True)
    }
    for e in _of(bundle, "ImagingStudy"):
        stored = requests.get(url + where[e["fullUrl"]], headers=auth_headers(), timeout=30).json()
        assert stored["subject"]["reference"] == where[e["resource"]["subject"]["reference"]]


@local_only
def test_push_retries_transient_failures(demo: DemoResults, tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    _bundle(demo, "micro-cells", path)
    waits: list[float] = []
    with running_fhir_server("--fail-first", "2") as url:
        result = push_bundle(path, url, retries=3, sleep=waits.append)
    assert result.attempts == 3 and len(waits) == 2
    with running_fhir_server("--fail-first", "2", "--fail-status", "429") as url:
        assert push_bundle(path, url, retries=2, sleep=waits.append).attempts == 3
    with (
        running_fhir_server("--fail-first", "9") as url,
        pytest.raises(FhirPushError, match="after 3 attempt"),
    ):
        push_bundle(path, url, retries=2, sleep=waits.append)


@local_only
def test_retry_after_a_lost_response_creates_no_duplicate(
    demo: DemoResults, tmp_path: Path
) -> None:
    path = tmp_path / "bundle.json"
    _, bundle = _bundle(demo, "dcm-subj01", path)
    with running_fhir_server("--lose-responses", "1") as url:
        result = push_bundle(path, url, retries=2, sleep=lambda s: None)
        assert result.attempts == 2
        assert set(result.counts()) == {"200"}  # the first attempt had committed
        assert set(_count_on_server(url, bundle).values()) == {1}


def test_unreachable_server_fails_after_the_retries(tmp_path: Path, demo: DemoResults) -> None:
    import socket

    path = tmp_path / "bundle.json"
    _bundle(demo, "micro-cells", path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(FhirPushError, match="not reachable after 2 attempt"):
            push_bundle(path, f"http://127.0.0.1:{port}/", retries=1, sleep=lambda s: None)


@local_only
def test_refused_transaction_reports_the_outcome_and_changes_nothing(tmp_path: Path) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:t", "value": "ok"}],
                },
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": "identifier=urn:t|ok",
                },
            },
            {
                "fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000002",
                "resource": {"resourceType": "Patient", "birthDate": "yesterday"},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bundle))
    with running_fhir_server() as url:
        with pytest.raises(FhirPushError) as err:
            push_bundle(path, url)
        assert err.value.status == 400
        assert "Bundle.entry[1]" in str(err.value) and "error invalid" in str(err.value)
        assert search(url, "Patient", "urn:t", "ok") == []  # all or nothing
        # two resources with the same identifier: the conditional create is ambiguous (412)
        for _ in range(2):
            requests.post(
                url + "Patient",
                json={
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:t", "value": "ok"}],
                },
                headers={"Content-Type": "application/fhir+json"},
                timeout=10,
            ).raise_for_status()
        bundle["entry"] = bundle["entry"][:1]
        path.write_text(json.dumps(bundle))
        with pytest.raises(FhirPushError, match=r"HTTP 412.*multiple-matches"):
            push_bundle(path, url)


@local_only
def test_push_sends_the_bearer_token(tmp_path: Path, demo: DemoResults) -> None:
    path = tmp_path / "bundle.json"
    _bundle(demo, "micro-cells", path)
    with running_fhir_server("--token", "s3cret-token") as url:
        with pytest.raises(FhirPushError, match="HTTP 401") as err:
            push_bundle(path, url)
        assert "s3cret" not in str(err.value)
        assert push_bundle(path, url, token="s3cret-token").status == 200


def test_push_refuses_what_is_not_a_transaction(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection"}))
    with pytest.raises(FhirPushError, match="not a FHIR transaction"):
        push_bundle(path, "http://127.0.0.1:9/")


@local_only
def test_the_test_server_follows_the_protocol() -> None:
    headers = {"Content-Type": "application/fhir+json"}
    patient = {"resourceType": "Patient", "identifier": [{"system": "urn:s", "value": "v"}]}
    with running_fhir_server(version="R4B") as url:
        assert requests.get(url + "metadata", timeout=10).json()["fhirVersion"] == "4.3.0"
        cond = headers | {"If-None-Exist": "identifier=urn:s|v"}
        first = requests.post(url + "Patient", json=patient, headers=cond, timeout=10)
        again = requests.post(url + "Patient", json=patient, headers=cond, timeout=10)
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.headers["Location"] == "Patient/1/_history/1"
        totals = [
            requests.get(url + "Patient", params={"identifier": q}, timeout=10).json()["total"]
            for q in ("urn:s|v", "v", "urn:s|", "|v", "urn:other|v")
        ]
        assert totals == [1, 1, 1, 0, 0]
        assert requests.get(url + "Patient", params={"name": "x"}, timeout=10).status_code == 400
        assert requests.get(url + "Nonsense/1", timeout=10).status_code == 404
        assert (
            requests.post(
                url, data="x", headers={"Content-Type": "text/plain"}, timeout=10
            ).status_code
            == 415
        )
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
                    "resource": {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"text": "x"},
                        "subject": {"reference": "Patient?identifier=urn:s|v"},  # conditional
                        "hasMember": [
                            {"reference": "urn:uuid:22222222-2222-4222-8222-222222222222"}
                        ],
                    },
                    "request": {"method": "POST", "url": "Observation"},
                },
                {
                    "fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222",
                    "resource": {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"text": "y"},
                    },
                    "request": {"method": "POST", "url": "Observation"},
                },
                {"request": {"method": "GET", "url": "Patient?identifier=urn:s|v"}},
            ],
        }
        answer = requests.post(url, json=bundle, headers=headers, timeout=10).json()
        assert answer["type"] == "transaction-response"
        assert [e["response"]["status"] for e in answer["entry"]] == [
            "201 Created",
            "201 Created",
            "200 OK",
        ]
        obs = requests.get(
            url + answer["entry"][0]["response"]["location"].split("/_history")[0], timeout=10
        ).json()
        assert obs["subject"] == {"reference": "Patient/1"}
        assert obs["hasMember"] == [
            {"reference": answer["entry"][1]["response"]["location"].split("/_history")[0]}
        ]
        bundle["entry"] = bundle["entry"][:1]  # the placeholder no longer resolves
        refused = requests.post(url, json=bundle, headers=headers, timeout=10)
        assert refused.status_code == 400
        assert refused.json()["issue"][0]["expression"] == [
            "Bundle.entry[0].resource.hasMember[0].reference"
        ]


def test_provenance_time_is_the_data_time_not_the_step_clock(
    demo: DemoResults, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bundle is staged: a rerun of the steps (other wall-clock times) gives the same bytes."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    deid = tmp_path / "deid"
    shutil.copytree(demo.deid_root, deid)
    texts = []
    for clock in ("2026-05-01T10:00:00+00:00", "2026-05-02T11:30:00+00:00"):
        for prov_file in deid.rglob("provenance.json"):
            prov = json.loads(prov_file.read_text())
            prov["started"] = prov["ended"] = clock
            prov_file.write_text(json.dumps(prov))
        out = tmp_path / clock[:10] / "bundle.json"
        bundle_dataset(
            "dcm-subj01",
            manifest=demo.items_dir,
            deid_root=deid,
            leak_root=demo.leak_root,
            convert_root=demo.convert_root,
            out=out,
            config=json.loads(demo.config_json()),
        )
        texts.append(out.read_text())
    assert texts[0] == texts[1]
    provs = [
        e["resource"]
        for e in json.loads(texts[0])["entry"]
        if e["resource"]["resourceType"] == "Provenance"
    ]
    times = {i["data_time"].replace("+00:00", "Z") for i in demo.items("dcm-subj01")}
    assert provs and {p["recorded"] for p in provs} <= times
    assert not any("occurredPeriod" in p for p in provs)
