# Sample sheet, config validation and the input functions of the workflow.
# All logic lives in the imagedepot package; this file only wires it in.

import json
import os
import shlex

from snakemake.utils import validate

from imagedepot.config import check_workflow_config, config_view, schema_path
from imagedepot.ingest import files_fingerprint
from imagedepot.io import write_text
from imagedepot.report import REPORT_FILES
from imagedepot.resources import convert_mem_mb, runtime_min
from imagedepot.samplesheet import file_lists, load_samples
from imagedepot.storage import ENV_PREFIX as STORAGE_ENV_PREFIX
from imagedepot.storage import ENV_ROOT as STORAGE_ENV_ROOT
from imagedepot.storage import Storage

# The package's checks first: Snakemake has read the config files with a loader that accepts YAML
# aliases, so they are read again without (size cap, no aliases: a "YAML bomb" stops here, before
# anything walks it); then no credentials or secrets in values (the rules read the config from
# files under results/config/, and Snakemake keeps it in its metadata), the schema, and the
# linkage table and key kept out of results/.
check_workflow_config(config, workflow.configfiles)
validate(config, schema=str(schema_path("config")))

# Validated at parse time: errors name the row, the column and the fix.
SAMPLES = load_samples(
    config["samples"],
    policies=config["policies"],
    destinations=config["destinations"],
)
# The sheet's `file_list` files (datasets named file by file): scan inputs, like the sheet.
SAMPLE_FILE_LISTS = file_lists(SAMPLES, config["samples"])
# The effective configuration (after --config overrides) reaches the CLI as a file (--config),
# written by write_config (rules/config.smk). A job reads one view of it, the required sections
# plus the section it uses, so that changing, say, `fhir` re-runs the FHIR bundles but not the scan
# and everything after it ("core" is the required sections only).
CONFIG_VIEWS = {"core": (), "scan": ("scan",), "fhir": ("fhir",), "schedule": ("schedule",)}


def config_file(view):
    """The config file of one view (an input of the rules that read it)."""
    if view not in CONFIG_VIEWS:
        raise ValueError(
            f"unknown config view {view!r}: add it to CONFIG_VIEWS in rules/common.smk"
        )
    return f"results/config/{view}.json"


def get_config_view(wildcards):
    """The text of a view's config file (a tracked parameter: a change rewrites the file)."""
    return config_view(config, CONFIG_VIEWS[wildcards.view])


MANIFEST = "results/ingest/manifest.json"
ENV = "../envs/imagedepot.yaml"


def _object_storage_env():
    """With a default storage provider (profiles/kubernetes, --default-storage-provider s3), every
    input and output is an object under the storage prefix and a job sees Snakemake's local copy.
    The package learns from the environment where those copies live and where the bucket is
    (imagedepot.storage): it maps the manifest's logical paths to the copies and uploads folder
    outputs (trees) itself. It talks to S3 with boto3: hand it the plugin's endpoint and keys when
    the standard AWS variables do not set them already."""
    provider = workflow.storage_registry.default_storage_provider
    if provider is None:
        return {}
    prefix = (workflow.storage_settings.default_storage_prefix or "").rstrip("/")
    if not prefix.startswith("s3://"):
        raise ValueError(
            "imagedepot on object storage: use --default-storage-provider s3 with "
            "--default-storage-prefix s3://<bucket>/<prefix>"
        )
    env = {
        STORAGE_ENV_PREFIX: prefix,
        STORAGE_ENV_ROOT: str(provider.object(f"{prefix}/x").local_path().parent),
    }
    for attr, var in (
        ("endpoint_url", "AWS_ENDPOINT_URL_S3"),
        ("access_key", "AWS_ACCESS_KEY_ID"),
        ("secret_key", "AWS_SECRET_ACCESS_KEY"),
    ):
        value = getattr(provider.settings, attr, None)
        if value and var not in os.environ:
            env[var] = str(value)
    return env


os.environ.update(_object_storage_env())


def tree(path):
    """A folder output or input, tracked by its marker (imagedepot.storage): Snakemake's
    directory() outputs are unreliable on object storage, markers are plain files."""
    return f"{path}.tree.json"


def cohort_file(path):
    """A cohort-definition file (sample sheet, policy): read where the workflow runs (it ships
    with the workflow's sources on Kubernetes), never from object storage."""
    return local(path)


wildcard_constraints:
    batch=r"\d{4}",
    view="|".join(CONFIG_VIEWS),
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    destination=r"[A-Za-z0-9_-]+",


def _manifest():
    """The scan's manifest (waits for the scan checkpoint)."""
    path = checkpoints.scan_inputs.get().output.manifest
    if not os.path.exists(path):
        # Object storage: the scan ran in an earlier invocation; fetch this process's copy.
        Storage.from_env().fetch(path)
    # Input functions ask for it hundreds of times per DAG build: parse it once per version.
    st = os.stat(path)
    key = (str(path), st.st_mtime_ns, st.st_size)
    if _MANIFEST_CACHE.get("key") != key:
        with open(path, encoding="utf-8") as fh:
            manifest = json.load(fh)
        pending = [i for i in manifest["items"] if i["status"] == "pending"]
        batches = {}
        for i in pending:
            batches.setdefault(f"{int(i['batch']):04d}", []).append(i)
        _MANIFEST_CACHE.update(key=key, pending=pending, batches=batches)
    return _MANIFEST_CACHE


_MANIFEST_CACHE = {}


def _pending_items():
    return _manifest()["pending"]


def _batch_ids(items):
    return sorted({f"{int(i['batch']):04d}" for i in items})


def _batch_items(wildcards):
    items = _manifest()["batches"].get(wildcards.batch, [])
    if not items:
        raise ValueError(
            f"batch {wildcards.batch} has no items in {MANIFEST}; re-run the scan (delete the manifest)"
        )
    return items


# Originals as inputs: on object storage Snakemake must retrieve them for the job, so they are
# declared. On a shared file system they are not: Snakemake re-checks every input of every ready job
# on each scheduling pass, and for 10,000 originals that cost more CPU than the work itself
# (benchmarks/scale). There a fingerprint parameter (path, size, mtime of each original) tracks
# them instead: a changed original still re-runs exactly its batch (rerun trigger "params").
ON_OBJECT_STORAGE = workflow.storage_registry.default_storage_provider is not None


def _originals(items):
    return [f["path"] for i in items for f in i["files"]]


def get_batch_originals(wildcards):
    """The original files of a batch's items, when Snakemake must retrieve them (object storage)."""
    return _originals(_batch_items(wildcards)) if ON_OBJECT_STORAGE else []


def get_batch_fingerprint(wildcards):
    """Fingerprint of a batch's originals on a shared file system (see above)."""
    return "" if ON_OBJECT_STORAGE else files_fingerprint(_originals(_batch_items(wildcards)))


def get_batch_policies(wildcards):
    """The policy files used by a batch's items."""
    return [
        cohort_file(p)
        for p in sorted({config["policies"][i["policy"]] for i in _batch_items(wildcards)})
    ]


def get_all_originals(wildcards):
    """The original files of every item to process (the FHIR leak gate reads them), when
    Snakemake must retrieve them (object storage)."""
    return _originals(_pending_items()) if ON_OBJECT_STORAGE else []


def get_all_fingerprint(wildcards):
    """Fingerprint of every original on a shared file system."""
    return "" if ON_OBJECT_STORAGE else files_fingerprint(_originals(_pending_items()))


def get_convert_mem_mb(wildcards, attempt):
    """Memory of a conversion job: the largest item of the batch (imagedepot.resources), per worker."""
    heap = config.get("convert", {}).get("microscopy", {}).get("java_heap", "2g")
    per_item = [convert_mem_mb(i, java_heap=heap, attempt=attempt) for i in _batch_items(wildcards)]
    return 2 * max(per_item)


def get_batch_runtime(wildcards, attempt):
    """Wall-time limit (minutes) of a batch job: the sum over its items."""
    return sum(runtime_min(i, attempt=attempt) for i in _batch_items(wildcards))


def get_batch_trees(stage):
    """Input function: the tree markers of every batch of one stage (convert, deid, leakcheck)."""

    def get(wildcards):
        return [tree(f"results/{stage}/batch-{b}") for b in _batch_ids(_pending_items())]

    return get


def get_fhir_clinical(wildcards):
    """The clinical records file, when the config names one."""
    clinical = config.get("fhir", {}).get("clinical")
    return [clinical] if clinical else []


def get_clinical_flag(wildcards, input):
    """`--clinical FILE` (the job's copy of the clinical records) when the config names one."""
    return f"--clinical {shlex.quote(input.clinical[0])}" if input.clinical else ""


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


def get_stage_trees(wildcards):
    """Staged folders (tree markers) of the destinations."""
    return [tree(f"results/stage/{d}") for d in get_staged_destinations()]


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


def _benchmarks(step, *jobs):
    """Benchmark files of a step's jobs: benchmarks/<step>/<job>.tsv (the scheme of every
    benchmark directive). Plain paths: the benchmark of rules.<name> is already mapped to
    storage on storage runs, and would be mapped twice."""
    return [f"benchmarks/{step}/{job}.tsv" for job in jobs]


def get_benchmark_files(wildcards):
    """Benchmark files of every job of the default run before the report, in pipeline order:
    the report's time and memory per step."""
    batches = _batch_ids(_pending_items())
    files = _benchmarks("scan_inputs", "scan")
    for step in ("convert_batch", "deidentify_batch", "check_leaks_batch"):
        files += _benchmarks(step, *batches)
    files += _benchmarks("build_fhir_bundles", "fhir") + _benchmarks("build_bids_tree", "bids")
    files += _benchmarks("stage_destination", *get_staged_destinations())
    files += _benchmarks("stage_xnat", *get_destinations_of_type("xnat"))
    files += _benchmarks("stage_bia", *get_destinations_of_type("bia"))
    files += _benchmarks("summarize_run", "summary")
    return files


def get_output_dir(wildcards, output):
    """The folder of a rule's (first) output, as the job sees it (a local copy on storage runs)."""
    return os.path.dirname(output[0])


def get_final_output(wildcards):
    """What `snakemake` builds by default: the run summary (which needs every stage), the
    local staging of the repository destinations (XNAT plans, BioImage Archive packages) and
    the run report's pieces (results/report/, for `snakemake --report report.html`)."""
    out = ["results/summary.json", tree("results/bids")]
    out += [f"results/stage/{d}.xnat-plan.json" for d in get_destinations_of_type("xnat")]
    out += [tree(f"results/bia/{d}") for d in get_destinations_of_type("bia")]
    out += [f"results/report/{name}" for name in REPORT_FILES.values()]
    return out
