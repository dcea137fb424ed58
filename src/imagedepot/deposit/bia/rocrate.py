"""RO-Crate 1.1 metadata of a package's payload (crate root = ``data/``).

Files with their checksums, authors, licence, and the workflow run with the software versions the
staged provenance records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from imagedepot import __version__
from imagedepot.deposit.bia.study import StudyMetadata, _metadata_value
from imagedepot.io import file_record, iter_files

#: Accepted licences (what the BioImage Archive offers) and their URLs for the RO-Crate.
LICENSES = {
    "CC0": "https://creativecommons.org/publicdomain/zero/1.0/",
    "CC BY 4.0": "https://creativecommons.org/licenses/by/4.0/",
}


ROCRATE_CONTEXT = "https://w3id.org/ro/crate/1.1/context"


ROCRATE_SPEC = "https://w3id.org/ro/crate/1.1"


def _rocrate(
    dataset: str,
    meta: Mapping[str, str],
    study: StudyMetadata,
    bag_data: Path,
    provenances: Sequence[dict[str, Any]],
    versions: Mapping[str, str],
) -> dict[str, Any]:
    """RO-Crate 1.1 metadata for the bag's payload (crate root = ``data/``)."""
    files = [file_record(p, bag_data) for p in iter_files(bag_data)]
    file_ids = [f["path"] for f in files if f["path"] != "ro-crate-metadata.json"]
    license_ = _metadata_value(meta, study, "license") or ""
    people = [
        {
            "@id": (f"https://orcid.org/{a.orcid}" if a.orcid else f"#author-{i}"),
            "@type": "Person",
            "name": a.name,
            "affiliation": {"@id": f"#org-{a.affiliation}"},
        }
        for i, a in enumerate(study.authors, 1)
    ]
    orgs = [
        {"@id": f"#org-{name}", "@type": "Organization", "name": name}
        for name in dict.fromkeys(a.affiliation for a in study.authors)
    ]
    # Staged provenance carries one reproducible data_time, not the steps' wall clock.
    started = sorted(
        p.get("started") or p["data_time"]
        for p in provenances
        if p.get("started") or p.get("data_time")
    )
    ended = sorted(
        p.get("ended") or p["data_time"]
        for p in provenances
        if p.get("ended") or p.get("data_time")
    )
    software = {
        "@id": "#imagedepot",
        "@type": "SoftwareApplication",
        "name": "imagedepot",
        "version": versions.get("imagedepot", __version__),
        "softwareRequirements": [
            {"@id": f"#software-{k}"} for k in sorted(versions) if k != "imagedepot"
        ],
    }
    requirements = [
        {"@id": f"#software-{k}", "@type": "SoftwareApplication", "name": k, "version": v}
        for k, v in sorted(versions.items())
        if k != "imagedepot"
    ]
    action: dict[str, Any] = {
        "@id": "#workflow-run",
        "@type": "CreateAction",
        "name": f"imagedepot run: convert, de-identify, leak-check and stage {dataset}",
        "instrument": {"@id": "#imagedepot"},
        "result": [{"@id": fid} for fid in file_ids],
    }
    if started:
        action["startTime"] = started[0]
    if ended:
        action["endTime"] = ended[-1]
    graph: list[dict[str, Any]] = [
        {
            "@id": "ro-crate-metadata.json",
            "@type": "CreativeWork",
            "conformsTo": {"@id": ROCRATE_SPEC},
            "about": {"@id": "./"},
        },
        {
            "@id": "./",
            "@type": "Dataset",
            "identifier": dataset,
            "name": meta.get("title") or dataset,
            "description": meta.get("description") or "",
            "datePublished": _metadata_value(meta, study, "release_date") or "",
            "license": {"@id": LICENSES.get(license_, license_)} if license_ else "",
            "author": [{"@id": p["@id"]} for p in people],
            "hasPart": [{"@id": fid} for fid in file_ids],
            "mentions": {"@id": "#workflow-run"},
        },
        *(
            {
                "@id": f["path"],
                "@type": "File",
                "name": f["path"].rsplit("/", 1)[-1],
                "contentSize": str(f["size"]),
                "sha256": f["sha256"],
            }
            for f in files
            if f["path"] != "ro-crate-metadata.json"
        ),
        action,
        software,
        *requirements,
        *people,
        *orgs,
    ]
    return {"@context": [ROCRATE_CONTEXT, {"sha256": "http://schema.org/sha256"}], "@graph": graph}
