# Sample sheet, config validation and the input functions of the workflow.
# All logic lives in the imagedepot package; this file only wires it in.

import json

from snakemake.utils import validate

from imagedepot.config import schema_path
from imagedepot.resources import convert_mem_mb, runtime_min
from imagedepot.samplesheet import load_samples

validate(config, schema=str(schema_path("config")))

# Validated at parse time: errors name the row, the column and the fix.
SAMPLES = load_samples(
    config["samples"],
    policies=config["policies"],
    destinations=config["destinations"],
)
# The effective configuration (after --config overrides), handed to the CLI as JSON. Each rule gets
# the sections it uses only (plus the required ones), so that changing, say, `fhir` re-runs the FHIR
# bundles but not the scan and everything after it.
_REQUIRED_SECTIONS = ("samples", "inbox", "policies", "pseudonymisation", "destinations")


def config_json(*sections):
    """The config as JSON, restricted to the required sections and ``sections``."""
    keys = _REQUIRED_SECTIONS + sections
    return json.dumps({k: v for k, v in config.items() if k in keys}, sort_keys=True)


MANIFEST = "results/ingest/manifest.json"
ITEMS_DIR = "results/ingest/items"
ENV = "../envs/imagedepot.yaml"


wildcard_constraints:
    batch=r"\d{4}",
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    destination=r"[A-Za-z0-9_-]+",


def _manifest():
    """The scan's manifest (waits for the scan checkpoint)."""
    path = checkpoints.scan_inputs.get().output.manifest
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _pending_items():
    return [i for i in _manifest()["items"] if i["status"] == "pending"]


def _batch_ids(items):
    return sorted({f"{int(i['batch']):04d}" for i in items})


def _batch_items(wildcards):
    items = [i for i in _pending_items() if f"{int(i['batch']):04d}" == wildcards.batch]
    if not items:
        raise ValueError(
            f"batch {wildcards.batch} has no items in {MANIFEST}; re-run the scan (delete the manifest)"
        )
    return items


def get_batch_originals(wildcards):
    """The original files of a batch's items (tracked, so a changed original re-runs its batch)."""
    return [f["path"] for i in _batch_items(wildcards) for f in i["files"]]


def get_batch_policies(wildcards):
    """The policy files used by a batch's items."""
    return sorted({config["policies"][i["policy"]] for i in _batch_items(wildcards)})


def get_convert_mem_mb(wildcards, attempt):
    """Memory of a conversion job: the largest item of the batch (imagedepot.resources), per worker."""
    heap = config.get("convert", {}).get("microscopy", {}).get("java_heap", "2g")
    per_item = [convert_mem_mb(i, java_heap=heap, attempt=attempt) for i in _batch_items(wildcards)]
    return 2 * max(per_item)


def get_batch_runtime(wildcards, attempt):
    """Wall-time limit (minutes) of a batch job: the sum over its items."""
    return sum(runtime_min(i, attempt=attempt) for i in _batch_items(wildcards))


def get_batch_dirs(stage):
    """Input function: every batch folder of one stage (convert, deid, leakcheck)."""

    def get(wildcards):
        return [f"results/{stage}/batch-{b}" for b in _batch_ids(_pending_items())]

    return get


def get_dataset_batch_dirs(stage):
    """Input function: the batch folders of one stage that hold a dataset's items."""

    def get(wildcards):
        items = [i for i in _pending_items() if i["dataset"] == wildcards.dataset]
        return [f"results/{stage}/batch-{b}" for b in _batch_ids(items)]

    return get


def get_fhir_dirs(wildcards):
    """FHIR bundle folders of every dataset with items to process."""
    datasets = sorted({i["dataset"] for i in _pending_items()})
    return [f"results/fhir/{d}" for d in datasets]


def get_fhir_clinical(wildcards):
    """The clinical records file, when the config names one."""
    clinical = config.get("fhir", {}).get("clinical")
    return [clinical] if clinical else []


def get_fhir_server_url(wildcards):
    """The FHIR server of the push target; an error that says what to set when there is none."""
    url = config.get("fhir", {}).get("server_url", "")
    if not url:
        raise ValueError("set fhir.server_url in the config to push FHIR bundles")
    return url


def get_fhir_push_reports(wildcards):
    """Push receipts of every dataset with items to process."""
    datasets = sorted({i["dataset"] for i in _pending_items()})
    return [f"results/fhir_push/{d}.json" for d in datasets]


def get_staged_destinations():
    """Destinations used by at least one dataset (all are staged locally in the default run)."""
    used = {d for s in SAMPLES for d in s.destinations}
    return sorted(d for d in config["destinations"] if d in used)


def get_stage_dirs(wildcards):
    """Staged folders of the destinations."""
    return [f"results/stage/{d}" for d in get_staged_destinations()]


def get_convert_flags(wildcards):
    """CLI flags of the conversion step, from the `convert` section of the config."""
    conv = config.get("convert", {})
    mic = conv.get("microscopy", {})
    flags = [
        f"--ngff-version {mic.get('ngff_version', '0.4')}",
        f"--levels {mic.get('pyramid_levels', 3)}",
        f"--reader {mic.get('reader', 'auto')}",
        f"--java-heap {mic.get('java_heap', '2g')}",
    ]
    if mic.get("ome_tiff", False):
        flags.append("--ome-tiff")
    if mic.get("chunks"):
        flags.append("--chunks " + ",".join(str(n) for n in mic["chunks"]))
    if mic.get("shard"):
        flags.append("--shard " + ",".join(str(n) for n in mic["shard"]))
    flags.append(f"--tile {mic.get('tiff_tile', 512)}")
    flags.append(f"--compression {mic.get('tiff_compression', 'zlib')}")
    if not conv.get("nifti", {}).get("compress", True):
        flags.append("--no-compress")
    flags.append(
        f"--irregular-slices {conv.get('nifti', {}).get('irregular_slices', 'quarantine')}"
    )
    return " ".join(flags)


def get_destinations_of_type(kind):
    """Used destinations of one type (folder, xnat, bia)."""
    return [d for d in get_staged_destinations() if config["destinations"][d]["type"] == kind]


def get_deposit_targets(kind):
    """Input function of the deposit_<kind>_all targets: one receipt per destination."""
    suffix = {"xnat": "xnat-receipt.json", "bia": "bia.json"}[kind]

    def get(wildcards):
        return [f"results/deposit/{d}.{suffix}" for d in get_destinations_of_type(kind)]

    return get


def get_bids_rules_flag(wildcards):
    """`--rules FILE` when the config names a BIDS mapping file (else the package default)."""
    path = config.get("convert", {}).get("nifti", {}).get("bids_rules")
    return f"--rules {path}" if path else ""


def get_final_output(wildcards):
    """What `snakemake` builds by default: the run summary (which needs every stage), and the
    local staging of the repository destinations (XNAT plans, BioImage Archive packages)."""
    out = ["results/summary.json", "results/bids"]
    out += [f"results/stage/{d}.xnat-plan.json" for d in get_destinations_of_type("xnat")]
    out += [f"results/bia/{d}" for d in get_destinations_of_type("bia")]
    return out
