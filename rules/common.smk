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
# The effective configuration (after --config overrides), handed to the CLI as JSON.
CONFIG_JSON = json.dumps(config, sort_keys=True)
MANIFEST = "results/ingest/manifest.json"
ITEMS_DIR = "results/ingest/items"
ENV = "../envs/imagedepot.yaml"


wildcard_constraints:
    item=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    destination=r"[A-Za-z0-9_-]+",


def _manifest():
    """The scan's manifest (waits for the scan checkpoint)."""
    path = checkpoints.scan_inputs.get().output.manifest
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _pending_items():
    return [i for i in _manifest()["items"] if i["status"] == "pending"]


def _item(wildcards):
    for item in _pending_items():
        if item["id"] == wildcards.item:
            return item
    raise ValueError(
        f"item {wildcards.item!r} is not in {MANIFEST}; re-run the scan (delete the manifest)"
    )


def get_item_json(wildcards):
    """The item's JSON written by the scan."""
    _item(wildcards)
    return f"{ITEMS_DIR}/{wildcards.item}.json"


def get_item_originals(wildcards):
    """The item's original files (tracked so that a changed original re-runs the item)."""
    return [f["path"] for f in _item(wildcards)["files"]]


def get_item_policy(wildcards):
    """The policy file of the item's dataset."""
    return config["policies"][_item(wildcards)["policy"]]


def get_convert_mem_mb(wildcards, attempt):
    """Memory of the conversion job, from the item's kind, format and size (imagedepot.resources)."""
    heap = config.get("convert", {}).get("microscopy", {}).get("java_heap", "2g")
    return convert_mem_mb(_item(wildcards), java_heap=heap, attempt=attempt)


def get_item_runtime(wildcards, attempt):
    """Wall-time limit (minutes) of a per-item job, from its file count and size."""
    return runtime_min(_item(wildcards), attempt=attempt)


def get_leak_reports(wildcards):
    """Leak reports of every item to process."""
    return [f"results/leakcheck/{i['id']}.json" for i in _pending_items()]


def get_deid_dirs(wildcards):
    """De-identified folders of every item to process."""
    return [f"results/deid/{i['id']}" for i in _pending_items()]


def get_dataset_leak_reports(wildcards):
    """Leak reports of one dataset's items."""
    return [
        f"results/leakcheck/{i['id']}.json"
        for i in _pending_items()
        if i["dataset"] == wildcards.dataset
    ]


def get_dataset_deid_dirs(wildcards):
    """De-identified folders of one dataset's items."""
    return [
        f"results/deid/{i['id']}" for i in _pending_items() if i["dataset"] == wildcards.dataset
    ]


def get_fhir_dirs(wildcards):
    """FHIR bundle folders of every dataset with items to process."""
    datasets = sorted({i["dataset"] for i in _pending_items()})
    return [f"results/fhir/{d}" for d in datasets]


def get_folder_destinations():
    """Destinations of type `folder` used by at least one dataset."""
    used = {d for s in SAMPLES for d in s.destinations}
    return sorted(
        d for d, spec in config["destinations"].items() if spec["type"] == "folder" and d in used
    )


def get_stage_dirs(wildcards):
    """Staged folders of the local (folder) destinations."""
    return [f"results/stage/{d}" for d in get_folder_destinations()]


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
    if not conv.get("nifti", {}).get("compress", True):
        flags.append("--no-compress")
    return " ".join(flags)


def get_key_flags(wildcards):
    """Where the pseudonymisation key and linkage table are (never the key itself)."""
    ps = config["pseudonymisation"]
    flags = [f"--key-env {ps.get('key_env', 'IMAGEDEPOT_PSEUDONYM_KEY')}"]
    if ps.get("key_file"):
        flags.append(f"--key-file {ps['key_file']}")
    return " ".join(flags)


def get_final_output(wildcards):
    """What `snakemake` builds by default: the run summary (which needs every stage)."""
    return ["results/summary.json"]
